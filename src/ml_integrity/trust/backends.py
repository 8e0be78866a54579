"""The verification backends a trust value implies (a :class:`verdict.VerifierFactory`).

A policy names signers; verifying a bundle needs a backend per kind of
signer: the Sigstore verifier (with a trusted root), a key verifier, a
certificate-chain verifier. :class:`Backends` makes them from the policy's
rules and the entry point's Sigstore root options (:class:`SigstoreRoots`).
Key and certificate material is used from memory; files named on the command
line are read where they are.

sigstore and cryptography are imported only when a backend is made.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ml_integrity.errors import UsageError

if TYPE_CHECKING:
    from ml_integrity.core.verifying import BundleVerifier
    from ml_integrity.trust.policy import ChainRule, IdentityRule, KeyRule, Policy
    from ml_integrity.trust.sigstore_roots import SigstoreTrust

__all__ = ["Backends", "SigstoreRoots"]


@dataclass(frozen=True)
class SigstoreRoots:
    """Which Sigstore trusted root keyless signatures are checked against.

    In order: a trusted root given by the entry point (``trusted_root_file``,
    read when a keyless bundle is verified, as ``--trusted-root`` does; or
    ``trusted_root``, bytes already read, with a label, as the Action's input),
    else the policy's ``sigstore.trusted-root`` unless ``instance`` is given,
    else the public-good ``instance`` (or the policy's), refreshed over TUF
    unless ``offline``.
    """

    instance: Literal["", "production", "staging"] = ""
    """The instance the entry point asks for ('' = the policy's)."""
    offline: bool = False
    trusted_root_file: Path | None = None
    trusted_root: tuple[bytes, str] | None = None
    cacheable: bool = True
    """Whether verification results under this trust may be cached (keyed by its fingerprint)."""

    @property
    def staging(self) -> bool:
        return self.instance == "staging"

    def fingerprint(self) -> str | None:
        """A digest of these options (it keys the verification cache); None: do not cache."""
        if not self.cacheable:
            return None
        h = hashlib.sha256(b"ml-integrity cli backends v1\0")
        h.update(f"staging={self.staging} offline={self.offline}\0".encode())
        if self.trusted_root_file is not None:
            try:
                h.update(hashlib.sha256(Path(self.trusted_root_file).read_bytes()).digest())
            except OSError:
                return None
        if self.trusted_root is not None:
            h.update(hashlib.sha256(self.trusted_root[0]).digest())
        return h.hexdigest()

    def sigstore_trust(self, policy: Policy) -> SigstoreTrust:
        from ml_integrity.trust.sigstore_roots import SigstoreTrust

        if self.trusted_root_file is not None:
            if self.staging:
                raise UsageError("give either --trusted-root or --staging")
            return SigstoreTrust.from_file(self.trusted_root_file)
        if self.trusted_root is not None:
            data, label = self.trusted_root
            return SigstoreTrust(trusted_root=data, trusted_root_label=label)
        if policy.sigstore.trusted_root is not None and not self.instance:
            return SigstoreTrust(
                trusted_root=policy.sigstore.trusted_root,
                trusted_root_label=policy.sigstore.trusted_root_label,
            )
        instance = self.instance or policy.sigstore.instance
        return SigstoreTrust(
            instance="staging" if instance == "staging" else "production", offline=self.offline
        )


class Backends:
    """Makes the verification backends a policy needs (:class:`verdict.VerifierFactory`)."""

    def __init__(self, roots: SigstoreRoots) -> None:
        self.roots = roots

    def trust_fingerprint(self) -> str | None:
        """What the backends add to a policy: the Sigstore root options."""
        return self.roots.fingerprint()

    def keyless(
        self,
        signers: Sequence[tuple[str, IdentityRule]],
        deny: Sequence[IdentityRule],
        policy: Policy,
    ) -> BundleVerifier:
        from ml_integrity.trust.sigstore import SigstoreVerifier

        return SigstoreVerifier(signers, trust=self.roots.sigstore_trust(policy), deny=deny)

    def key(self, rule: KeyRule) -> BundleVerifier:
        from ml_integrity.trust.keys import KeyVerifier

        if rule.path is not None:
            return KeyVerifier(Path(rule.path))
        return KeyVerifier.from_pem(rule.pem, rule.label)

    def chain(self, rule: ChainRule) -> BundleVerifier:
        from ml_integrity.trust.keys import CertificateVerifier

        if rule.paths:
            return CertificateVerifier([Path(p) for p in rule.paths])
        return CertificateVerifier.from_pem(rule.pem, rule.label)
