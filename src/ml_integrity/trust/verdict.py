"""Verify a model against a trust policy: one or several bundles, thresholds, lists, rollback.

Order, for every bundle: the signature and the signer (the backend named by
the bundle's material: Sigstore identity, public key, certificate chain),
then the policy: deny lists, the any-of / all-of / k-of-n requirement across
the bundles (one actual signer counts once), rollback (repository binding
and version), denied digests; then the content on disk, against what was
signed, with the policy's must-sign patterns and allowed digests. Every
verdict, good or bad, names the policy that was applied.

Backends come from a :class:`VerifierFactory` (the entry point wires the
adapters in), so this module needs neither sigstore nor git.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ml_integrity.core import hashing, oms, verifying
from ml_integrity.core.oms import SignedModel
from ml_integrity.core.verifying import BundleVerifier, VerifiedPayload
from ml_integrity.errors import Error, IntegrityError, ManifestDiff, PolicyError, SignatureError
from ml_integrity.trust.policy import (
    ChainRule,
    IdentityRule,
    KeyRule,
    Policy,
    TrustedSigner,
    satisfy,
)

__all__ = [
    "BundleCheck",
    "PolicyVerifier",
    "SignatureVerdict",
    "Verdict",
    "VerifierFactory",
    "denied_resources",
    "verify",
    "verify_signatures",
]


class VerifierFactory(Protocol):
    """Makes the verification backends a policy needs."""

    def keyless(
        self,
        signers: Sequence[tuple[str, IdentityRule]],
        deny: Sequence[IdentityRule],
        policy: Policy,
    ) -> BundleVerifier: ...

    def key(self, rule: KeyRule) -> BundleVerifier: ...

    def chain(self, rule: ChainRule) -> BundleVerifier: ...


_KIND_OF_MATERIAL = {"sigstore": "sigstore", "key": "key", "certificate": "certificate-chain"}
_MATERIAL_WORDS = {
    "sigstore": "Sigstore keyless signing",
    "key": "a public key",
    "certificate": "a certificate chain",
}


def _with_context(exc: Error, policy: Policy) -> Error:
    """Add the policy's name to an error's hint (every verdict names its policy)."""
    note = f"policy: {policy.source.describe()}"
    exc.hint = f"{exc.hint}; {note}" if exc.hint else note
    return exc


class PolicyVerifier:
    """A :class:`BundleVerifier` that trusts the signers of a policy.

    It dispatches on how the bundle was signed and reports, in
    ``details["matched_signers"]``, every policy signer that the bundle's
    signer matches. Deny rules refuse a signer even when it matches.
    """

    def __init__(self, policy: Policy, factory: VerifierFactory) -> None:
        self.policy = policy
        self.factory = factory
        self._keyless: BundleVerifier | None = None

    def trust_fingerprint(self) -> str | None:
        """The policy's digest plus the backends' (None when the backends cannot say)."""
        import hashlib

        backends = verifying.trust_fingerprint(self.factory)
        if backends is None:
            return None
        text = f"ml-integrity policy verifier v1\0{self.policy.fingerprint()}\0{backends}"
        return hashlib.sha256(text.encode()).hexdigest()

    def _of_kind(self, kind: str, signers: Sequence[TrustedSigner]) -> list[TrustedSigner]:
        return [s for s in signers if s.rule.kind == kind]

    def verify_bundle(self, bundle: bytes, source: str) -> VerifiedPayload:
        parsed = oms.parse_bundle(bundle, source)
        kind = _KIND_OF_MATERIAL[parsed.material]
        trusted = self._of_kind(kind, self.policy.signers)
        denied = self._of_kind(kind, self.policy.deny_signers)
        if not trusted:
            if len(self.policy.signers) == 1 and not denied:
                # One signer of another kind: its backend explains the mismatch.
                return self._verifier(self.policy.signers[0]).verify_bundle(bundle, source)
            kinds = sorted({s.rule.kind for s in self.policy.signers}) or ["nothing"]
            raise SignatureError(
                f"bundle was signed with {_MATERIAL_WORDS[parsed.material]}, but the policy "
                f"trusts only {', '.join(kinds)} signers",
                path=source,
                hint="ask for a signature by one of the policy's signers",
            )
        if kind == "sigstore":
            return self._keyless_verifier(trusted, denied).verify_bundle(bundle, source)
        for rule in denied:
            try:
                self._verifier(rule).verify_bundle(bundle, source)
            except SignatureError:
                continue
            raise PolicyError(
                f"signer is denied by the policy ({rule.rule.describe()})",
                path=source,
                hint="a denied signer is never trusted; ask for a signature by another signer",
            )
        candidates = trusted
        if kind == "key" and parsed.key_hint is not None:
            by_hint = [
                s
                for s in trusted
                if isinstance(s.rule, KeyRule) and s.rule.fingerprint == parsed.key_hint
            ]
            if not by_hint:
                trusted_keys = [s.rule.describe() for s in trusted if isinstance(s.rule, KeyRule)]
                src = self.policy.source
                options = src.kind == "command line" and src.path is None
                raise SignatureError(
                    f"bundle was signed by another key ({parsed.key_hint[:16]}), "
                    + (
                        "which is not a trusted signer"
                        if options
                        else "which the policy does not trust"
                    )
                    + f" (trusted: {'; '.join(trusted_keys) or 'no key'})",
                    path=source,
                    hint="check which key signed; to trust it, "
                    + (
                        "give its public key (--key; in the Action, the public-key input)"
                        if options
                        else "add it to the policy's signers"
                    ),
                )
            candidates = by_hint
        result: VerifiedPayload | None = None
        matched: list[str] = []
        errors: list[SignatureError] = []
        for signer in candidates:
            try:
                verified = self._verifier(signer).verify_bundle(bundle, source)
            except SignatureError as exc:
                errors.append(exc)
                continue
            result = result or verified
            matched.append(signer.name)
        if result is None:
            if len(errors) == 1:
                raise errors[0]
            raise SignatureError(
                f"bundle was not signed by any trusted {kind} signer ("
                + "; ".join(e.message for e in errors)
                + ")",
                path=source,
                hint="check which key or certificate signed, and the policy's signers",
            )
        return VerifiedPayload(
            payload_type=result.payload_type,
            payload=result.payload,
            signer=result.signer,
            details={**result.details, "matched_signers": matched},
        )

    def _keyless_verifier(
        self, trusted: Sequence[TrustedSigner], denied: Sequence[TrustedSigner]
    ) -> BundleVerifier:
        if self._keyless is None:
            self._keyless = self.factory.keyless(
                [(s.name, s.rule) for s in trusted if isinstance(s.rule, IdentityRule)],
                [s.rule for s in denied if isinstance(s.rule, IdentityRule)],
                self.policy,
            )
        return self._keyless

    def _verifier(self, signer: TrustedSigner) -> BundleVerifier:
        rule = signer.rule
        if isinstance(rule, KeyRule):
            return self.factory.key(rule)
        if isinstance(rule, ChainRule):
            return self.factory.chain(rule)
        return self.factory.keyless([(signer.name, rule)], [], self.policy)


@dataclass(frozen=True)
class BundleCheck:
    """One verified bundle: who signed it and which policy signers that is."""

    bundle: Path
    signer: str
    matched: tuple[str, ...]
    details: dict[str, object]

    def to_json(self) -> dict[str, object]:
        return {
            "bundle": str(self.bundle),
            "signer": self.signer,
            "matched_signers": list(self.matched),
            "details": self.details,
        }


@dataclass(frozen=True)
class Verdict:
    """A successful verification under a policy."""

    target: Path
    policy: Policy
    bundles: tuple[BundleCheck, ...]
    counted: dict[str, str]
    """Policy signer name -> the actual signer that counted for it."""
    signed: SignedModel
    files: int
    unsigned: tuple[str, ...] = ()
    """Files present but not signed, accepted by must-sign or allowed digests."""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def signer(self) -> str:
        return ", ".join(dict.fromkeys(b.signer for b in self.bundles))

    def lines(self) -> list[str]:
        plural = "s" if self.files != 1 else ""
        out = [f"OK: {self.target} verified ({self.files} file{plural}, signed by {self.signer})"]
        out.append(f"policy: {self.policy.source.describe()}")
        requirement = self.policy.effective_requirement
        if len(self.bundles) > 1 or requirement.mode != "any-of":
            counted = ", ".join(f"{name} = {who}" for name, who in sorted(self.counted.items()))
            out.append(f"requirement met: {requirement.describe()} ({counted})")
        if self.signed.version is not None or self.signed.repository is not None:
            out.append(
                f"signed version: {self.signed.version if self.signed.version is not None else '-'}"
                f", repository: {self.signed.repository or '-'}"
            )
        if self.unsigned:
            out.append(
                f"unsigned files accepted by the policy ({len(self.unsigned)}): "
                + ", ".join(self.unsigned[:10])
                + (" ..." if len(self.unsigned) > 10 else "")
            )
        if self.signed.legacy:
            out.append(
                f"format: {self.signed.format_name} (predicate Digests/v0.1; verified for "
                "compatibility, re-sign to upgrade to OMS v1.0)"
            )
        elif not self.signed.is_sha256_files:
            out.append(f"hashing: {self.signed.hashing}")
        out.extend(f"note: {n}" for n in self.notes)
        return out

    def to_json(self) -> dict[str, object]:
        return {
            "ok": True,
            "target": str(self.target),
            "bundle": str(self.bundles[0].bundle),
            "bundles": [b.to_json() for b in self.bundles],
            "signer": self.signer,
            "files": self.files,
            "model_name": self.signed.name,
            "repository": self.signed.repository,
            "version": self.signed.version,
            "format": self.signed.format_name,
            "hashing": self.signed.hashing,
            "details": self.bundles[0].details,
            "policy": self.policy.source.to_json(),
            "requirement": self.policy.effective_requirement.to_json(),
            "counted": dict(sorted(self.counted.items())),
            "unsigned": list(self.unsigned),
            "notes": list(self.notes),
        }


def verify(
    target: Path,
    bundles: Sequence[Path],
    policy: Policy,
    factory: VerifierFactory,
    *,
    ignore_paths: Sequence[str] = (),
    allow_symlinks: bool = False,
    ignore_unsigned: bool = False,
    workers: int | None = None,
    rehash: bool = False,
    progress: Callable[[int, int], None] | None = None,
    notes: Sequence[str] = (),
    ignore_git_paths: bool = True,
    paths: Sequence[str] | None = None,
) -> Verdict:
    """Verify ``target`` against ``bundles`` under ``policy``; raise on any failure.

    With ``paths`` (manifest paths), only those files are checked (``verify --paths``).
    """
    try:
        return _verify(
            target,
            bundles,
            policy,
            factory,
            ignore_paths=ignore_paths,
            allow_symlinks=allow_symlinks,
            ignore_unsigned=ignore_unsigned,
            workers=workers,
            rehash=rehash,
            progress=progress,
            notes=notes,
            ignore_git_paths=ignore_git_paths,
            paths=paths,
        )
    except IntegrityError as exc:
        raise _with_context(exc, policy) from None


def _verify(
    target: Path,
    bundles: Sequence[Path],
    policy: Policy,
    factory: VerifierFactory,
    *,
    ignore_paths: Sequence[str],
    allow_symlinks: bool,
    ignore_unsigned: bool,
    workers: int | None,
    rehash: bool,
    progress: Callable[[int, int], None] | None,
    notes: Sequence[str],
    ignore_git_paths: bool = True,
    paths: Sequence[str] | None = None,
) -> Verdict:
    signatures = _verify_signatures(bundles, policy, factory, target=target, paths=paths)
    checks, counted, first = list(signatures.bundles), signatures.counted, signatures.signed

    # 5. the content on disk: signed files, then files nobody signed
    def refuse_unsigned(extra: Sequence[str]) -> list[str]:
        return _refused_unsigned(
            target, extra, policy, ignore_unsigned=ignore_unsigned, workers=workers
        )

    content = verifying.check_content(
        target,
        first,
        bundles,
        signer=checks[0].signer,
        ignore_paths=ignore_paths,
        ignore_git_paths=ignore_git_paths,
        allow_symlinks=allow_symlinks,
        refuse_unsigned=refuse_unsigned,
        unsigned_hint="--ignore-unsigned-files accepts extra files"
        if policy.source.path is None
        else "exempt extra files with the policy's artifacts.must-sign or allow.digests, "
        "or --ignore-unsigned-files",
        workers=workers,
        rehash=rehash,
        progress=progress,
        paths=paths,
    )
    return Verdict(
        target=target,
        policy=policy,
        bundles=tuple(checks),
        counted=counted,
        signed=first,
        files=content.files,
        unsigned=content.unsigned,
        notes=tuple(notes),
    )


@dataclass(frozen=True)
class SignatureVerdict:
    """Bundles whose signatures, signers, requirement and rollback hold (no content check)."""

    policy: Policy
    bundles: tuple[BundleCheck, ...]
    counted: dict[str, str]
    signed: SignedModel

    @property
    def signer(self) -> str:
        return ", ".join(dict.fromkeys(b.signer for b in self.bundles))


def denied_resources(signed: SignedModel, policy: Policy) -> dict[str, str]:
    """Signed paths the policy refuses, with the reason (``deny: digests`` or ``deny: paths``).

    The policy's digests are SHA-256: a bundle that signs other digests (BLAKE3,
    shards) cannot be checked against them, so a policy with denied digests
    refuses it; denied paths apply to the signed files whatever the hashing.
    """
    if policy.deny_digests and not signed.is_sha256_files:
        raise PolicyError(
            f"the policy denies SHA-256 digests, but the bundle signs {signed.hashing}",
            hint="re-sign with --hash sha256 and no --shard-size, so that the denied "
            "digests can be checked",
        )
    out: dict[str, str] = {}
    digests = signed.resources if signed.is_sha256_files else {}
    for path in sorted(signed.files):
        reason = policy.denies(path, digests.get(path))
        if reason:
            out[path] = reason
    return out


def verify_signatures(
    bundles: Sequence[Path],
    policy: Policy,
    factory: VerifierFactory,
    *,
    target: Path | None = None,
    check_denied: bool = True,
) -> SignatureVerdict:
    """Steps 1 to 4 of :func:`verify` (signatures, requirement, rollback, denied
    digests and paths), without reading the content; raise on any failure.

    For callers that check the content themselves, item by item (the
    verifying data loader). ``check_denied=False`` leaves the denied digests
    and paths to the caller (see :func:`denied_resources`).
    """
    try:
        return _verify_signatures(
            bundles, policy, factory, target=target, check_denied=check_denied
        )
    except IntegrityError as exc:
        raise _with_context(exc, policy) from None


def _verify_signatures(
    bundles: Sequence[Path],
    policy: Policy,
    factory: VerifierFactory,
    *,
    target: Path | None,
    check_denied: bool = True,
    paths: Sequence[str] | None = None,
) -> SignatureVerdict:
    from ml_integrity.errors import UsageError

    if not bundles:
        raise UsageError("no bundle given", hint="pass --bundle FILE (repeat it for several)")
    if len(set(map(Path.resolve, bundles))) != len(bundles):
        raise UsageError("the same bundle is given twice", hint="each --bundle must differ")
    if target is not None and not target.exists():
        raise UsageError("no such file or directory", path=target)
    if not policy.signers:
        raise PolicyError(
            "the policy trusts no signer, so no signature can be accepted",
            path=policy.source.path,
            hint="add signers to the policy (ml-integrity policy check FILE explains it)",
        )
    verifier = PolicyVerifier(policy, factory)

    # 1. every bundle: signature and signer
    checks: list[BundleCheck] = []
    signed_models: list[SignedModel] = []
    for path in bundles:
        verified, signed = verifying.verify_signed_payload(path, verifier, paths=paths)
        matched = tuple(str(m) for m in _as_list(verified.details.get("matched_signers")))
        checks.append(BundleCheck(path, verified.signer, matched, dict(verified.details)))
        signed_models.append(signed)
    first = signed_models[0]
    for path, other in zip(bundles[1:], signed_models[1:], strict=True):
        if (other.resources, other.repository, other.version) != (
            first.resources,
            first.repository,
            first.version,
        ):
            raise IntegrityError(
                f"{path} and {bundles[0]} sign different content",
                path=path,
                hint="every bundle of a multi-signature verification must sign the same "
                "model version",
            )

    # 2. the requirement across bundles (one actual signer counts once)
    requirement = policy.effective_requirement
    by_actual: dict[str, set[str]] = {}
    for check in checks:
        by_actual.setdefault(check.signer, set()).update(check.matched)
    ok, counted = satisfy(requirement, by_actual)
    if not ok:
        have = "; ".join(
            f"{c.bundle.name}: {c.signer} = {', '.join(c.matched) or 'no required signer'}"
            for c in checks
        )
        missing = [n for n in requirement.signers if n not in counted]
        raise PolicyError(
            f"the policy's requirement is not met: {requirement.describe()}; "
            f"got {len(counted)} ({have})",
            path=policy.source.path,
            hint="missing signature(s) from: "
            + ", ".join(missing)
            + " (pass each signer's bundle with another --bundle; one signer counts once)",
        )

    # 3. rollback
    rollback = policy.rollback
    if rollback.repository is not None and first.repository != rollback.repository:
        raise PolicyError(
            f"the signature is bound to repository {first.repository or '(none)'}, "
            f"the policy requires {rollback.repository}",
            path=bundles[0],
            hint="this signature was made for another repository (or without a binding); "
            "re-sign with the repository identity",
        )
    if rollback.not_older_than is not None and (
        first.version is None or first.version < rollback.not_older_than
    ):
        got = "no version" if first.version is None else f"version {first.version}"
        raise PolicyError(
            f"rollback refused: the signature carries {got}, at least version "
            f"{rollback.not_older_than} is required",
            path=bundles[0],
            hint="an older signed state was presented; fetch the current signature",
        )

    # 4. denied digests and paths among what was signed
    denied = denied_resources(first, policy) if check_denied else {}
    if denied:
        what = (
            "have a digest the policy denies"
            if set(denied.values()) == {"denied digest"}
            else "are denied by the policy"
        )
        raise PolicyError(
            f"{len(denied)} signed file(s) {what}",
            path=target if target is not None else bundles[0],
            diff=ManifestDiff(changed=tuple(sorted(denied)), notes=denied),
            hint="a denied digest or path is refused even when a trusted signer signed it",
        )
    return SignatureVerdict(policy, tuple(checks), counted, first)


def _as_list(value: object) -> list[object]:
    return list(value) if isinstance(value, list | tuple) else []


def _refused_unsigned(
    target: Path,
    extra: Sequence[str],
    policy: Policy,
    *,
    ignore_unsigned: bool,
    workers: int | None,
) -> list[str]:
    """Unsigned files to refuse: those must-sign covers, unless their digest is allowed.

    A denied digest is refused outright, even with ``ignore_unsigned``.
    """
    digests: dict[str, str] = {}
    if policy.allow_digests or policy.deny_digests:
        hashed = hashing.hash_files(target, list(extra), workers=workers)
        digests = {p: d.sha256 for p, d in hashed.items()}
    denied = sorted(p for p in extra if digests.get(p) in policy.deny_digests)
    if denied:
        raise PolicyError(
            f"{len(denied)} file(s) have a digest the policy denies",
            path=target,
            diff=ManifestDiff(extra=tuple(denied), notes=dict.fromkeys(denied, "denied digest")),
            hint="remove the listed files",
        )
    return [
        p
        for p in extra
        if not ignore_unsigned
        and policy.must_be_signed(p)
        and digests.get(p) not in policy.allow_digests
    ]
