"""Sigstore keyless signing (adapter over sigstore-python).

An OIDC identity token (given explicitly, else the ambient credential of the
CI system, else the browser sign-in on a terminal) buys a short-lived Fulcio
certificate for an ephemeral key; the exact statement bytes are signed as a
DSSE envelope and logged in Rekor; the result is a Sigstore bundle (v0.3),
which is an OMS v1.0 bundle. Every sigstore-python exception becomes an
:mod:`ml_integrity.errors` error with a hint; sigstore is imported lazily.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ml_integrity.errors import ConfigError, Error, NetworkError, OperationalError, UsageError
from ml_integrity.trust.sigstore_identity import CertificateFacts, certificate_facts
from ml_integrity.trust.sigstore_roots import (
    first_line,
    load_client_trust_config,
    quiet_sigstore_logs,
    tlog_details,
    tuf_config,
)

if TYPE_CHECKING:
    from sigstore.oidc import IdentityToken

__all__ = ["SigstoreSigner"]

_PERMISSION_HINT = (
    "give the job 'permissions: id-token: write' in the workflow; pull requests from "
    "forks never get an OIDC token, so sign in a workflow that runs on push, release "
    "or workflow_dispatch instead"
)


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
        quiet_sigstore_logs()
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
            self._trust = tuf_config(instance, offline=False)
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
            raise UsageError(f"not an in-toto statement: {first_line(exc)}") from None
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
                f"Fulcio's certificate failed verification: {first_line(exc)}",
                hint="the trust config's CT log keys do not match this Fulcio; check "
                "--trust-config",
            ) from None
        except SigstoreError as exc:
            raise OperationalError(f"Sigstore signing failed: {first_line(exc)}") from None
        self._facts = certificate_facts(bundle.signing_certificate)
        text: str = bundle.to_json()
        self.details = {
            "method": "sigstore",
            **self._facts.to_json(),
            "instance": self.instance,
            **tlog_details(json.loads(text)),
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
