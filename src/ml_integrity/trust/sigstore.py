"""Sigstore keyless signing and verification (adapter over sigstore-python).

Signing (:class:`SigstoreSigner`): an OIDC identity token (given explicitly,
else the ambient credential of the CI system, else the browser sign-in on a
terminal) buys a short-lived Fulcio certificate for an ephemeral key; the
exact statement bytes are signed as a DSSE envelope and logged in Rekor; the
result is a Sigstore bundle (v0.3), which is an OMS v1.0 bundle.

Verification (:class:`SigstoreVerifier`): sigstore-python checks the
certificate chain against the trusted root at the time the transparency log
vouches for, the SCT, the log entry (inclusion proof, checkpoint, promise),
the DSSE signature and the entry's consistency; we check that the
certificate's identity is one the caller trusts (exact identity and issuer,
a regular expression, or GitHub Actions repository / ref / workflow).

Every sigstore-python exception is turned into an :mod:`ml_integrity.errors`
error with a hint. sigstore is imported lazily (it is slow to import).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ml_integrity.core import oms
from ml_integrity.core.verifying import VerifiedPayload
from ml_integrity.errors import (
    BundleError,
    ConfigError,
    Error,
    NetworkError,
    OperationalError,
    PolicyError,
    SignatureError,
    UsageError,
)
from ml_integrity.trust.policy import IdentityRule

if TYPE_CHECKING:
    from cryptography.x509 import Certificate
    from sigstore.models import ClientTrustConfig, TrustedRoot
    from sigstore.oidc import IdentityToken
    from sigstore.verify.policy import VerificationPolicy

__all__ = [
    "CertificateFacts",
    "SigstoreSigner",
    "SigstoreTrust",
    "SigstoreVerifier",
    "certificate_facts",
]

_logger = logging.getLogger(__name__)

_TUF_URLS = {
    "production": "https://tuf-repo-cdn.sigstore.dev",
    "staging": "https://tuf-repo-cdn.sigstage.dev",
}
"""TUF repositories of the public-good instances (tests point them at loopback)."""

_OID = {
    "issuer": "1.3.6.1.4.1.57264.1.1",
    "trigger": "1.3.6.1.4.1.57264.1.2",
    "sha": "1.3.6.1.4.1.57264.1.3",
    "workflow_name": "1.3.6.1.4.1.57264.1.4",
    "repository": "1.3.6.1.4.1.57264.1.5",
    "ref": "1.3.6.1.4.1.57264.1.6",
    "othername": "1.3.6.1.4.1.57264.1.7",
    "issuer_v2": "1.3.6.1.4.1.57264.1.8",
    "build_signer_uri": "1.3.6.1.4.1.57264.1.9",
    "source_repository_uri": "1.3.6.1.4.1.57264.1.12",
    "source_repository_ref": "1.3.6.1.4.1.57264.1.14",
}

_WORKFLOW_SAN = re.compile(r"https://github\.com/([^/]+/[^/]+)/(.+)@(.+)")

_PERMISSION_HINT = (
    "give the job 'permissions: id-token: write' in the workflow; pull requests from "
    "forks never get an OIDC token, so sign in a workflow that runs on push, release "
    "or workflow_dispatch instead"
)


def _quiet_sigstore_logs() -> None:
    """sigstore logs routine warnings (e.g. TUF offline mode); our messages say it better."""
    logger = logging.getLogger("sigstore")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())


# --- certificates -----------------------------------------------------------------


def _der_utf8(value: bytes) -> str:
    """Decode a DER UTF8String (Fulcio's v2 extensions); raw text otherwise (v1)."""
    if len(value) >= 2 and value[0] == 0x0C:
        length = value[1]
        start = 2
        if length & 0x80:
            n = length & 0x7F
            length = int.from_bytes(value[2 : 2 + n], "big")
            start = 2 + n
        return value[start : start + length].decode("utf-8", "replace")
    return value.decode("utf-8", "replace")


@dataclass(frozen=True)
class CertificateFacts:
    """What a Fulcio certificate says about its holder."""

    identities: tuple[str, ...]
    issuer: str | None
    github_repository: str | None = None
    github_ref: str | None = None
    github_workflow_name: str | None = None
    github_trigger: str | None = None
    github_sha: str | None = None

    @property
    def identity(self) -> str:
        return self.identities[0] if self.identities else "(no identity)"

    def describe(self) -> str:
        who = ", ".join(self.identities) or "(none)"
        out = f"identity {who} issued by {self.issuer or '(no issuer)'}"
        extra = [
            f"{label} {value}"
            for label, value in (
                ("repository", self.github_repository),
                ("ref", self.github_ref),
                ("workflow name", self.github_workflow_name),
                ("trigger", self.github_trigger),
            )
            if value
        ]
        return out + (f" ({', '.join(extra)})" if extra else "")

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"identity": self.identity, "issuer": self.issuer}
        github = {
            k: v
            for k, v in (
                ("repository", self.github_repository),
                ("ref", self.github_ref),
                ("workflow_name", self.github_workflow_name),
                ("trigger", self.github_trigger),
                ("sha", self.github_sha),
            )
            if v
        }
        if github:
            out["github"] = github
        return out


def certificate_facts(cert: Certificate) -> CertificateFacts:
    from cryptography import x509

    def ext(key: str) -> bytes | None:
        try:
            value = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(_OID[key])).value
        except x509.ExtensionNotFound:
            return None
        return value.value if isinstance(value, x509.UnrecognizedExtension) else None

    def text(*keys: str) -> str | None:
        for key in keys:
            raw = ext(key)
            if raw is not None:
                return _der_utf8(raw)
        return None

    identities: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        identities.extend(san.get_values_for_type(x509.RFC822Name))
        identities.extend(san.get_values_for_type(x509.UniformResourceIdentifier))
        identities.extend(
            _der_utf8(o.value)
            for o in san.get_values_for_type(x509.OtherName)
            if o.type_id.dotted_string == _OID["othername"]
        )
    except x509.ExtensionNotFound:
        pass
    repo = text("repository")
    if repo is None:
        uri = text("source_repository_uri")
        if uri and uri.startswith("https://github.com/"):
            repo = uri.removeprefix("https://github.com/")
    return CertificateFacts(
        identities=tuple(identities),
        issuer=text("issuer", "issuer_v2"),
        github_repository=repo,
        github_ref=text("ref", "source_repository_ref"),
        github_workflow_name=text("workflow_name"),
        github_trigger=text("trigger"),
        github_sha=text("sha"),
    )


# --- identity policies ----------------------------------------------------------------


def _verification_error() -> type[Exception]:
    from sigstore.errors import VerificationError

    return VerificationError


class _IdentityRegex:
    """A sigstore verification policy: some SAN fully matches a regular expression."""

    def __init__(self, pattern: str) -> None:
        self._pattern = pattern
        self._rx = re.compile(pattern)

    def verify(self, cert: Certificate) -> None:
        facts = certificate_facts(cert)
        if not any(self._rx.fullmatch(i) for i in facts.identities):
            raise _verification_error()(
                f"no identity matches /{self._pattern}/ (the certificate holds "
                f"{', '.join(facts.identities) or 'none'})"
            )


class _WorkflowFile:
    """A sigstore verification policy: the SAN names this GitHub workflow file."""

    def __init__(self, repository: str | None, path: str) -> None:
        self._repository = repository
        self._path = path

    def verify(self, cert: Certificate) -> None:
        facts = certificate_facts(cert)
        repository = self._repository or facts.github_repository
        for identity in facts.identities:
            m = _WORKFLOW_SAN.fullmatch(identity)
            if m and m.group(1) == repository and m.group(2) == self._path:
                return
        raise _verification_error()(
            f"the signing workflow is not {repository}/{self._path} (the certificate holds "
            f"{', '.join(facts.identities) or 'no identity'})"
        )


def rule_policy(rule: IdentityRule) -> VerificationPolicy:
    """The sigstore verification policy for one identity rule (all constraints must hold)."""
    from sigstore.verify import policy as sp

    parts: list[VerificationPolicy] = [sp.OIDCIssuer(rule.issuer)]
    if rule.identity:
        parts.append(sp.Identity(identity=rule.identity))
    if rule.identity_regex:
        parts.append(_IdentityRegex(rule.identity_regex))
    if rule.github_repository:
        parts.append(sp.GitHubWorkflowRepository(rule.github_repository))
    if rule.github_ref:
        parts.append(sp.GitHubWorkflowRef(rule.github_ref))
    wf = rule.workflow_path()
    if wf is not None:
        parts.append(_WorkflowFile(*wf))
    return sp.AllOf(parts)


class _TrustedIdentities:
    """The policy handed to sigstore: not denied, and matching at least one trusted rule.

    Records which named rules matched (``matched``) and the certificate's facts.
    """

    def __init__(
        self,
        signers: Sequence[tuple[str, IdentityRule]],
        deny: Sequence[IdentityRule],
    ) -> None:
        self._signers = [(name, rule, rule_policy(rule)) for name, rule in signers]
        self._deny = [(rule, rule_policy(rule)) for rule in deny]
        self.matched: list[str] = []
        self.facts: CertificateFacts | None = None
        self.denied: IdentityRule | None = None
        self.refused = False
        self.reasons: list[str] = []

    def verify(self, cert: Certificate) -> None:
        verification_error = _verification_error()
        self.facts = certificate_facts(cert)
        self.matched, self.reasons, self.denied, self.refused = [], [], None, False
        for rule, pol in self._deny:
            try:
                pol.verify(cert)
            except verification_error:
                continue
            self.denied, self.refused = rule, True
            raise verification_error("the signer is denied by the policy")
        for name, rule, pol in self._signers:
            try:
                pol.verify(cert)
            except verification_error as exc:
                self.reasons.append(f"{name}: {rule.describe()}: {exc}")
                continue
            self.matched.append(name)
        if not self.matched:
            self.refused = True
            raise verification_error("the signer is not trusted")


# --- trust roots ----------------------------------------------------------------------


@dataclass(frozen=True)
class SigstoreTrust:
    """Where the trusted root for verification comes from.

    ``trusted_root``: the bytes of a ``trusted_root.json`` or of a
    ``ClientTrustConfig`` (its root is used); else the public-good
    ``instance``, refreshed over TUF unless ``offline`` (then the root cached
    by an earlier refresh, or the one shipped with sigstore-python).
    """

    instance: Literal["production", "staging"] = "production"
    offline: bool = False
    trusted_root: bytes | None = None
    trusted_root_label: str | None = None

    def describe(self) -> str:
        if self.trusted_root is not None:
            return f"trusted root {self.trusted_root_label}"
        return f"Sigstore {self.instance}" + (" (offline)" if self.offline else "")

    @classmethod
    def from_file(cls, path: Path) -> SigstoreTrust:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise UsageError("trusted root not found", path=path) from None
        except OSError as exc:
            raise UsageError(f"cannot read the trusted root: {exc.strerror}", path=path) from None
        return cls(trusted_root=data, trusted_root_label=str(path))


def _tuf_config(instance: str, *, offline: bool) -> ClientTrustConfig:
    from sigstore.errors import Error as SigstoreError
    from sigstore.errors import TUFError
    from sigstore.models import ClientTrustConfig

    _quiet_sigstore_logs()
    try:
        return ClientTrustConfig.from_tuf(_TUF_URLS[instance], offline=offline)
    except TUFError as exc:
        raise NetworkError(
            f"cannot refresh the Sigstore {instance} trust root over TUF "
            f"({_TUF_URLS[instance]}): {exc.message}",
            hint="check the network; to verify without network, pass --offline (the trust "
            "root cached or shipped with sigstore-python) or --trusted-root FILE",
        ) from None
    except SigstoreError as exc:
        raise OperationalError(
            f"cannot load the Sigstore {instance} trust root: {exc}",
            hint="clear the cache (~/.cache/sigstore-python, ~/.local/share/sigstore-python) "
            "and retry",
        ) from None


def _parse_trust_document(data: bytes, label: str) -> tuple[str, Any]:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"not valid JSON: {exc}", path=label) from None
    media = doc.get("mediaType", "") if isinstance(doc, dict) else ""
    if "clienttrustconfig" in media:
        return "clienttrustconfig", doc
    if "trustedroot" in media:
        return "trustedroot", doc
    raise ConfigError(
        f"not a Sigstore trusted root or client trust config (mediaType {media!r})",
        path=label,
        hint="expected trusted_root.json (application/vnd.dev.sigstore.trustedroot+json) or "
        "a ClientTrustConfig (application/vnd.dev.sigstore.clienttrustconfig.v0.1+json)",
    )


def load_client_trust_config(data: bytes, label: str) -> ClientTrustConfig:
    from sigstore.models import ClientTrustConfig

    kind, _ = _parse_trust_document(data, label)
    if kind != "clienttrustconfig":
        raise ConfigError(
            "signing needs a ClientTrustConfig (trusted root + signing config), "
            "not just a trusted root",
            path=label,
        )
    try:
        return ClientTrustConfig.from_json(data.decode("utf-8"))
    except Exception as exc:  # pydantic validation errors and the like
        raise ConfigError(f"invalid client trust config: {_first_line(exc)}", path=label) from None


def _trusted_root(trust: SigstoreTrust) -> TrustedRoot:
    from sigstore.models import TrustedRoot

    if trust.trusted_root is None:
        return _tuf_config(trust.instance, offline=trust.offline).trusted_root
    label = trust.trusted_root_label or "trusted root"
    kind, _ = _parse_trust_document(trust.trusted_root, label)
    try:
        if kind == "clienttrustconfig":
            return load_client_trust_config(trust.trusted_root, label).trusted_root
        from sigstore_models.trustroot import v1 as trustroot_v1

        return TrustedRoot(trustroot_v1.TrustedRoot.from_json(trust.trusted_root))
    except Error:
        raise
    except Exception as exc:
        raise ConfigError(f"invalid trusted root: {_first_line(exc)}", path=label) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --- verification -----------------------------------------------------------------------


def _wrong_material(material: str, source: str) -> SignatureError:
    how = {
        "key": "a public key",
        "certificate": "a certificate chain",
    }.get(material, material)
    return SignatureError(
        f"bundle was signed with {how}, but a Sigstore (keyless) identity was required",
        path=source,
        hint="verify it with the trust that matches how it was signed (--key or --cert-chain), "
        "or ask for a keyless signature",
    )


class SigstoreVerifier:
    """Verifies keyless bundles whose certificate matches one of the named rules.

    ``signers`` pairs a name (for thresholds and messages) with an identity
    rule; ``deny`` rules refuse a certificate even when a signer rule matches.
    The returned payload's ``details`` hold the certificate's facts, the
    matched names (``matched_signers``) and the log entry.
    """

    def __init__(
        self,
        signers: Sequence[tuple[str, IdentityRule]],
        *,
        trust: SigstoreTrust,
        deny: Sequence[IdentityRule] = (),
    ) -> None:
        if not signers:
            raise UsageError("no Sigstore identity to verify against")
        self.signers = list(signers)
        self.deny = list(deny)
        self.trust = trust
        self._verifier: Any = None

    def _get_verifier(self) -> Any:
        if self._verifier is None:
            from sigstore.errors import Error as SigstoreError
            from sigstore.verify import Verifier

            _quiet_sigstore_logs()
            root = _trusted_root(self.trust)
            try:
                self._verifier = Verifier(trusted_root=root)
            except SigstoreError as exc:
                raise ConfigError(
                    f"unusable trusted root: {exc}", path=self.trust.trusted_root_label
                ) from None
        return self._verifier

    def _expected(self) -> str:
        return "; or ".join(rule.describe() for _, rule in self.signers)

    def verify_bundle(self, bundle: bytes, source: str) -> VerifiedPayload:
        parsed = oms.parse_bundle(bundle, source)
        if parsed.material != "sigstore":
            raise _wrong_material(parsed.material, source)
        from sigstore.errors import CertValidationError, VerificationError
        from sigstore.models import Bundle, InvalidBundle

        try:
            sbundle = Bundle.from_json(bundle)
        except InvalidBundle as exc:
            raise BundleError(
                f"not a valid Sigstore bundle: {_first_line(exc)}",
                path=source,
                hint="the bundle is corrupt or was altered; fetch it again or re-sign",
            ) from None
        except Exception as exc:  # pydantic / JSON / DER errors: fail closed
            raise BundleError(
                f"not a valid Sigstore bundle: {_first_line(exc)}",
                path=source,
                hint="the bundle is corrupt or was altered; fetch it again or re-sign",
            ) from None
        verifier = self._get_verifier()
        policy = _TrustedIdentities(self.signers, self.deny)
        try:
            payload_type, payload = verifier.verify_dsse(sbundle, policy)
        except VerificationError as exc:
            facts = policy.facts or certificate_facts(sbundle.signing_certificate)
            if policy.refused:
                if policy.denied is not None:
                    raise PolicyError(
                        "signer is denied by the policy: the certificate holds "
                        f"{facts.describe()}, which matches the deny rule "
                        f"'{policy.denied.describe()}'",
                        path=source,
                        hint="a denied signer is never trusted; ask for a signature by another "
                        "signer",
                    ) from None
                raise SignatureError(
                    f"signer is not trusted: expected {self._expected()}; "
                    f"the certificate holds {facts.describe()}",
                    path=source,
                    hint="check --identity/--issuer (or the policy's signers) against who "
                    "actually signed; a GitHub workflow's identity is its workflow file URL",
                ) from None
            if isinstance(exc, CertValidationError):
                raise SignatureError(
                    "the signing certificate does not chain to the "
                    f"{self.trust.describe()} ({_first_line(exc)})",
                    path=source,
                    hint="was it signed with another Sigstore instance? use --staging, or "
                    "--trusted-root FILE for a private instance",
                ) from None
            raise SignatureError(
                f"Sigstore verification failed: {_first_line(exc)}",
                path=source,
                hint="the bundle, its payload or its transparency-log entry was altered, "
                f"or it does not belong to the {self.trust.describe()}",
            ) from None
        facts = policy.facts or certificate_facts(sbundle.signing_certificate)
        details: dict[str, object] = {
            "method": "sigstore",
            **facts.to_json(),
            "matched_signers": list(policy.matched),
            "trusted_root": self.trust.describe(),
        }
        details.update(_tlog_details(parsed.raw))
        return VerifiedPayload(
            payload_type=payload_type,
            payload=payload,
            signer=f"{facts.identity} (issuer {facts.issuer})",
            details=details,
        )


def _tlog_details(raw: Any) -> dict[str, object]:
    try:
        entry = raw["verificationMaterial"]["tlogEntries"][0]
        out: dict[str, object] = {"log_index": int(entry["logIndex"])}
        when = int(entry["integratedTime"])
        out["integrated_time"] = datetime.datetime.fromtimestamp(
            when, datetime.timezone.utc
        ).isoformat()
        return out
    except (KeyError, IndexError, TypeError, ValueError):
        return {}


# --- signing ----------------------------------------------------------------------------


def _is_interactive() -> bool:
    if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
        return False
    return sys.stdin.isatty() and sys.stderr.isatty()


def _identity_error(exc: Exception, source: str) -> Error:
    """Map a sigstore/id identity error to ours."""
    import id as id_pkg

    cause = exc.__cause__ or exc.__context__
    text = str(cause or exc)
    if isinstance(cause, id_pkg.GitHubOidcPermissionCredentialError):
        event = os.environ.get("GITHUB_EVENT_NAME", "")
        fork = (
            " (this run is a pull request: runs for pull requests from forks never get one)"
            if event.startswith("pull_request")
            else ""
        )
        return ConfigError(
            "GitHub Actions did not provide an OIDC identity token: the job lacks the "
            f"'id-token: write' permission{fork}",
            hint=_PERMISSION_HINT,
        )
    if isinstance(cause, id_pkg.AmbientCredentialError):
        if "timed out" in text:
            return NetworkError(
                f"cannot reach the CI system's OIDC token endpoint ({text})",
                hint="retry the job; or pass --identity-token TOKEN",
            )
        return OperationalError(
            f"the CI system's OIDC token endpoint failed: {text}",
            hint="retry the job; check that the workflow grants 'id-token: write'",
        )
    if "validity period" in text:
        return UsageError(
            f"the identity token ({source}) has expired",
            hint="get a fresh token right before signing (OIDC tokens live minutes); "
            "check the machine's clock",
        )
    return UsageError(
        f"the identity token ({source}) is not usable for Sigstore: {text}",
        hint="Sigstore needs an OIDC ID token (a JWT) with audience 'sigstore' and "
        "iss, sub, iat and exp claims",
    )


def _service_of(exc: BaseException, fulcio: str, rekor: str) -> str:
    url = ""
    request = getattr(exc, "request", None)
    if request is not None:
        url = str(getattr(request, "url", "") or "")
    if url.startswith(fulcio):
        return f"Fulcio ({fulcio})"
    if url.startswith(rekor):
        return f"Rekor ({rekor})"
    return f"Sigstore ({url or fulcio})"


class SigstoreSigner:
    """Signs statements keylessly with Sigstore.

    The identity token is resolved when the signer is made (so that a missing
    ``id-token: write`` permission fails before hours of hashing): the
    ``identity_token`` given, else the ambient credential of the CI system,
    else, on a terminal, the browser sign-in of the instance's OIDC provider.
    An ambient token that expired meanwhile is fetched again before signing.

    ``trust_config`` (a ClientTrustConfig file) selects a private instance;
    otherwise ``staging`` or production, from their TUF repositories.
    """

    def __init__(
        self,
        *,
        identity_token: str | None = None,
        staging: bool = False,
        trust_config: Path | None = None,
        interactive: bool | None = None,
    ) -> None:
        _quiet_sigstore_logs()
        if trust_config is not None:
            try:
                data = trust_config.read_bytes()
            except FileNotFoundError:
                raise UsageError("trust config not found", path=trust_config) from None
            except OSError as exc:
                raise UsageError(
                    f"cannot read the trust config: {exc.strerror}", path=trust_config
                ) from None
            self._trust = load_client_trust_config(data, str(trust_config))
            self.instance = f"trust config {trust_config}"
        else:
            instance = "staging" if staging else "production"
            self._trust = _tuf_config(instance, offline=False)
            self.instance = f"Sigstore {instance}"
        self._interactive = _is_interactive() if interactive is None else interactive
        self._explicit = identity_token
        self._token, self.token_source = self._acquire()
        self._facts: CertificateFacts | None = None
        self.details: dict[str, object] = {}

    def _acquire(self) -> tuple[IdentityToken, str]:
        from sigstore.oidc import IdentityError, IdentityToken, detect_credential

        if self._explicit is not None:
            raw = self._explicit.strip()
            if not raw:
                raise UsageError("the identity token is empty")
            try:
                return IdentityToken(raw), "explicit"
            except IdentityError as exc:
                raise _identity_error(exc, "given with --identity-token") from None
        try:
            ambient = detect_credential()
        except IdentityError as exc:
            raise _identity_error(exc, "ambient") from None
        if ambient is not None:
            try:
                return IdentityToken(ambient), "ambient"
            except IdentityError as exc:
                raise _identity_error(exc, "from the CI system") from None
        if self._interactive:
            return self._browser_token(), "interactive"
        raise UsageError(
            "no identity for keyless signing: no --identity-token, no ambient CI credential, "
            "and not on a terminal for the browser sign-in",
            hint="in GitHub Actions grant 'permissions: id-token: write'; elsewhere pass "
            "--identity-token TOKEN (or set ML_INTEGRITY_IDENTITY_TOKEN), or use a key (--key)",
        )

    def _browser_token(self) -> IdentityToken:
        from sigstore.errors import Error as SigstoreError
        from sigstore.oidc import IdentityError, Issuer, IssuerError

        try:
            url = self._trust.signing_config.get_oidc_url()
            return Issuer(url).identity_token()
        except (IdentityError, IssuerError) as exc:
            raise UsageError(
                f"browser sign-in failed: {exc}",
                hint="retry, or pass --identity-token TOKEN",
            ) from None
        except SigstoreError as exc:
            raise NetworkError(
                f"cannot reach the OIDC provider for the browser sign-in: {exc}",
                hint="check the network, or pass --identity-token TOKEN",
            ) from None

    def describe(self) -> str:
        if self._facts is not None:
            return f"Sigstore identity {self._facts.identity} (issuer {self._facts.issuer})"
        return f"Sigstore identity {self._token.identity} (issuer {self._token.issuer})"

    def _fresh_token(self) -> IdentityToken:
        if self._token.in_validity_period():
            return self._token
        if self.token_source == "ambient":
            self._token, _ = self._acquire()
            if self._token.in_validity_period():
                return self._token
        raise UsageError(
            "the identity token expired before signing",
            hint="get a fresh token right before signing (OIDC tokens live minutes), or "
            "sign from CI where the token is fetched again",
        )

    def sign_statement(self, statement: bytes) -> str:
        import requests
        from sigstore import dsse
        from sigstore._internal.fulcio.client import FulcioClientError
        from sigstore._internal.rekor import RekorClientError
        from sigstore.errors import Error as SigstoreError
        from sigstore.errors import VerificationError
        from sigstore.oidc import ExpiredIdentity
        from sigstore.sign import SigningContext

        try:
            stmt = dsse.Statement(statement)
        except SigstoreError as exc:
            raise UsageError(f"not an in-toto statement: {_first_line(exc)}") from None
        token = self._fresh_token()
        try:
            ctx = SigningContext.from_trust_config(self._trust)
        except (SigstoreError, ValueError) as exc:
            raise ConfigError(
                f"the signing config of {self.instance} is unusable: {exc}",
                hint="it must list a Fulcio CA and a Rekor log that are valid now",
            ) from None
        fulcio_base = _base_url(str(getattr(ctx._fulcio, "url", "")))
        rekor_base = _base_url(str(getattr(ctx._rekor, "url", "")))
        try:
            with ctx.signer(token, cache=True) as signer:
                bundle = signer.sign_dsse(stmt)
        except ExpiredIdentity:
            raise UsageError(
                "the identity token expired before signing",
                hint="get a fresh token right before signing",
            ) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            service = _service_of(exc, fulcio_base, rekor_base)
            raise NetworkError(
                f"cannot reach {service}",
                hint="check the network or proxy settings and retry; nothing was signed",
            ) from None
        except FulcioClientError as exc:
            raise _http_error("Fulcio", fulcio_base, exc) from None
        except RekorClientError as exc:
            raise _http_error("Rekor", rekor_base, exc) from None
        except VerificationError as exc:
            raise OperationalError(
                f"Fulcio's certificate failed verification: {_first_line(exc)}",
                hint="the trust config's CT log keys do not match this Fulcio; check "
                "--trust-config",
            ) from None
        except SigstoreError as exc:
            raise OperationalError(f"Sigstore signing failed: {_first_line(exc)}") from None
        self._facts = certificate_facts(bundle.signing_certificate)
        text: str = bundle.to_json()
        self.details = {
            "method": "sigstore",
            **self._facts.to_json(),
            "instance": self.instance,
            **_tlog_details(json.loads(text)),
        }
        return text


def _base_url(url: str) -> str:
    m = re.match(r"^(https?://[^/]+)", url)
    return m.group(1) if m else url


def _http_error(service: str, url: str, exc: Exception) -> Error:
    import requests

    cause = exc.__cause__ or exc.__context__
    status = None
    body = ""
    if isinstance(cause, requests.HTTPError) and cause.response is not None:
        status = cause.response.status_code
        body = cause.response.text.strip()[:300]
    detail = str(exc) or body or "no details"
    where = f"{service} ({url})"
    if status in (401, 403):
        return UsageError(
            f"{where} refused the identity token (HTTP {status}): {detail}",
            hint="the token is expired, has the wrong audience or comes from an issuer this "
            "instance does not accept; get a fresh token",
        )
    if status is not None and 400 <= status < 500:
        return OperationalError(
            f"{where} rejected the request (HTTP {status}): {detail}",
            hint="nothing was signed; check the trust config and retry",
        )
    return NetworkError(
        f"{where} failed" + (f" (HTTP {status})" if status else "") + f": {detail}",
        hint="the service is unavailable; retry later, nothing was signed",
    )
