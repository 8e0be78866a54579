"""Sigstore keyless verification (adapter over sigstore-python).

:class:`SigstoreVerifier`: sigstore-python checks the certificate chain
against the trusted root (:mod:`.sigstore_roots`) at the time the
transparency log vouches for, the SCT, the log entry (inclusion proof,
checkpoint, promise), the DSSE signature and the entry's consistency; we
check that the certificate's identity is one the caller trusts
(:mod:`.sigstore_identity`: exact identity and issuer, a regular expression,
or GitHub Actions repository / ref / workflow). Signing is
:mod:`.sigstore_sign`; its signer and the trust-root type are re-exported here.

Every sigstore-python exception is turned into an :mod:`ml_integrity.errors`
error with a hint. sigstore is imported lazily (it is slow to import).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ml_integrity.core import oms
from ml_integrity.core.verifying import VerifiedPayload
from ml_integrity.errors import BundleError, ConfigError, PolicyError, SignatureError, UsageError
from ml_integrity.trust.policy import IdentityRule
from ml_integrity.trust.sigstore_identity import (
    CertificateFacts,
    TrustedIdentities,
    certificate_facts,
)
from ml_integrity.trust.sigstore_roots import (
    SigstoreTrust,
    first_line,
    quiet_sigstore_logs,
    tlog_details,
    trusted_root,
)
from ml_integrity.trust.sigstore_sign import SigstoreSigner

__all__ = [
    "CertificateFacts",
    "SigstoreSigner",
    "SigstoreTrust",
    "SigstoreVerifier",
    "certificate_facts",
]


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

            quiet_sigstore_logs()
            root = trusted_root(self.trust)
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
                f"not a valid Sigstore bundle: {first_line(exc)}",
                path=source,
                hint="the bundle is corrupt or was altered; fetch it again or re-sign",
            ) from None
        except Exception as exc:  # pydantic / JSON / DER errors: fail closed
            raise BundleError(
                f"not a valid Sigstore bundle: {first_line(exc)}",
                path=source,
                hint="the bundle is corrupt or was altered; fetch it again or re-sign",
            ) from None
        verifier = self._get_verifier()
        policy = TrustedIdentities(self.signers, self.deny)
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
                    f"{self.trust.describe()} ({first_line(exc)})",
                    path=source,
                    hint="was it signed with another Sigstore instance? use --staging, or "
                    "--trusted-root FILE for a private instance",
                ) from None
            raise SignatureError(
                f"Sigstore verification failed: {first_line(exc)}",
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
        details.update(tlog_details(parsed.raw))
        return VerifiedPayload(
            payload_type=payload_type,
            payload=payload,
            signer=f"{facts.identity} (issuer {facts.issuer})",
            details=details,
        )
