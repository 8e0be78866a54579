"""The trust of the library API: keyword arguments in, a policy and its backends out.

:class:`~ml_integrity.data.VerifiedDataset` and the journal functions take
``key=``, ``cert_chain=``, ``identity=`` or ``policy=`` the way the command
line takes ``--key``, ``--cert-chain``, ``--identity``/``--issuer`` and
``--policy``. :func:`resolve_trust` turns them into one
:class:`~ml_integrity.trust.policy.Policy` (inline signers, or the policy file)
and :class:`Backends`, the verifier factory the verdict asks for key,
certificate and Sigstore verifiers. Every verification then goes through
:mod:`ml_integrity.trust.verdict`, as ``ml-integrity verify`` does.

Everything heavy (cryptography, sigstore, yaml) is imported inside the functions.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ml_integrity.errors import UsageError

if TYPE_CHECKING:
    from ml_integrity.core.verifying import BundleVerifier
    from ml_integrity.trust.policy import ChainRule, IdentityRule, KeyRule, Policy


@dataclass(frozen=True)
class TrustOptions:
    """What the caller trusts, as given (picklable, so that worker processes re-verify)."""

    key: Path | None = None
    cert_chain: tuple[Path, ...] = ()
    policy: Policy | Path | None = None
    identity: IdentityRule | Mapping[str, str] | None = None
    trusted_root: Path | None = None
    offline: bool = False
    staging: bool = False

    @classmethod
    def of(
        cls,
        *,
        key: str | Path | None = None,
        cert_chain: str | Path | Sequence[str | Path] | None = None,
        policy: Policy | str | Path | None = None,
        identity: IdentityRule | Mapping[str, str] | None = None,
        trusted_root: str | Path | None = None,
        offline: bool = False,
        staging: bool = False,
    ) -> TrustOptions:
        chain: tuple[Path, ...]
        if cert_chain is None:
            chain = ()
        elif isinstance(cert_chain, str | Path):
            chain = (Path(cert_chain),)
        else:
            chain = tuple(Path(p) for p in cert_chain)
        pol: Policy | Path | None
        pol = Path(policy) if isinstance(policy, str | Path) else policy
        return cls(
            key=None if key is None else Path(key),
            cert_chain=chain,
            policy=pol,
            identity=identity,
            trusted_root=None if trusted_root is None else Path(trusted_root),
            offline=offline,
            staging=staging,
        )


def _identity(value: IdentityRule | Mapping[str, str] | None) -> IdentityRule | None:
    from ml_integrity.trust.policy import IDENTITY_FIELDS, IdentityRule, identity_rule

    if value is None or isinstance(value, IdentityRule):
        return value
    unknown = sorted(set(value) - set(IDENTITY_FIELDS))
    if unknown:
        raise UsageError(
            f"unknown identity field(s): {', '.join(unknown)}",
            hint="identity= takes " + ", ".join(IDENTITY_FIELDS),
        )
    return identity_rule(**dict(value), names={f: f for f in IDENTITY_FIELDS})


def resolve_trust(options: TrustOptions) -> Policy:
    """The one policy that ``options`` describe (UsageError when there is none)."""
    from ml_integrity.trust.keys import chain_rule, key_hint, load_public_key, public_pem
    from ml_integrity.trust.policy import KeyRule, TrustedSigner, inline
    from ml_integrity.trust.policy_source import load_policy

    signers: list[TrustedSigner] = []
    rule = _identity(options.identity)
    if rule is not None:
        signers.append(TrustedSigner("identity", rule, "identity="))
    if options.key is not None:
        pub = load_public_key(options.key)
        signers.append(
            TrustedSigner(
                "key",
                KeyRule(
                    pem=public_pem(pub),
                    label=str(options.key),
                    fingerprint=key_hint(pub),
                    path=str(options.key),
                ),
                "key=",
            )
        )
    if options.cert_chain:
        parts = []
        for p in options.cert_chain:
            try:
                parts.append((p.read_bytes(), str(p)))
            except FileNotFoundError:
                raise UsageError("certificate file not found", path=p) from None
            except OSError as exc:
                raise UsageError(f"cannot read: {exc.strerror}", path=p) from None
        signers.append(
            TrustedSigner(
                "cert-chain", chain_rule(parts, paths=[str(p) for p in options.cert_chain]), ""
            )
        )
    if options.policy is not None:
        if signers:
            raise UsageError(
                "give either policy= or key=/cert_chain=/identity=, not both",
                hint="put the signers into the policy",
            )
        if isinstance(options.policy, Path):
            return load_policy(options.policy, "command line")
        return options.policy
    if not signers:
        raise UsageError(
            "no trust material given",
            hint="pass key= (the signer's public key), cert_chain= (root CA), "
            "identity= (a Sigstore identity and issuer) or policy= (a trust policy)",
        )
    return inline(signers)


class Backends:
    """The verifier factory (``trust.verdict.VerifierFactory``) of the library API."""

    def __init__(self, options: TrustOptions) -> None:
        self.options = options
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def trust_fingerprint(self) -> str | None:
        h = hashlib.sha256(b"ml-integrity data backends v1\0")
        h.update(f"staging={self.options.staging} offline={self.options.offline}\0".encode())
        if self.options.trusted_root is not None:
            try:
                h.update(hashlib.sha256(self.options.trusted_root.read_bytes()).digest())
            except OSError:
                return None
        return h.hexdigest()

    def _material_file(self, pem: bytes, name: str) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="ml-integrity-data-")
        p = Path(self._tmp.name) / name
        p.write_bytes(pem)
        return p

    def keyless(
        self,
        signers: Sequence[tuple[str, IdentityRule]],
        deny: Sequence[IdentityRule],
        policy: Policy,
    ) -> BundleVerifier:
        from ml_integrity.trust.sigstore import SigstoreTrust, SigstoreVerifier

        opts = self.options
        if opts.trusted_root is not None:
            trust = SigstoreTrust.from_file(opts.trusted_root)
        elif policy.sigstore.trusted_root is not None and not opts.staging:
            trust = SigstoreTrust(
                trusted_root=policy.sigstore.trusted_root,
                trusted_root_label=policy.sigstore.trusted_root_label,
            )
        else:
            instance = "staging" if opts.staging else policy.sigstore.instance
            trust = SigstoreTrust(instance=instance, offline=opts.offline)
        return SigstoreVerifier(signers, trust=trust, deny=deny)

    def key(self, rule: KeyRule) -> BundleVerifier:
        from ml_integrity.trust.keys import KeyVerifier

        if rule.path is not None:
            return KeyVerifier(Path(rule.path))
        verifier = KeyVerifier(self._material_file(rule.pem, f"key-{rule.fingerprint[:16]}.pem"))
        verifier.key_path = Path(rule.label)
        return verifier

    def chain(self, rule: ChainRule) -> BundleVerifier:
        from ml_integrity.trust.keys import CertificateVerifier

        if rule.paths:
            return CertificateVerifier([Path(p) for p in rule.paths])
        name = f"chain-{hashlib.sha256(rule.pem).hexdigest()[:16]}.pem"
        verifier = CertificateVerifier([self._material_file(rule.pem, name)])
        verifier.anchor_paths = [Path(rule.label)]
        return verifier
