"""Verify an OMS bundle over a model folder, a single file or a repository.

Order, always: the signature (DSSE over the payload), then trust (the key,
the certificate chain or the Sigstore identity given by the caller), then the
digests (the signed resources against the content on disk). A failure at any
step raises an :class:`~ml_integrity.errors.IntegrityError` subclass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from . import hashing, manifest, oms
from .errors import BundleError, IntegrityError, ManifestDiff, UsageError
from .oms import SignedModel


@dataclass(frozen=True)
class VerifiedPayload:
    """The payload of a bundle whose signature and signer were verified."""

    payload_type: str
    payload: bytes
    signer: str
    """Who signed, for the verdict (key fingerprint, certificate subject, identity)."""
    details: dict[str, object]
    """Backend facts for JSON output (e.g. transparency-log index, issuer)."""


class BundleVerifier(Protocol):
    """Checks a bundle's signature and that its signer is trusted.

    ``bundle`` is the raw bundle file content and ``source`` its file name,
    for messages. Raises ``BundleError`` when the bundle cannot be parsed and
    ``SignatureError`` when the signature or signer is wrong. Returns the
    verified payload; the caller checks the payload type and the digests.
    """

    def verify_bundle(self, bundle: bytes, source: str) -> VerifiedPayload: ...


@dataclass(frozen=True)
class VerificationResult:
    """A successful verification: who signed what."""

    target: Path
    bundle: Path
    signer: str
    signed: SignedModel
    files: int
    details: dict[str, object]

    def to_json(self) -> dict[str, object]:
        return {
            "ok": True,
            "target": str(self.target),
            "bundle": str(self.bundle),
            "signer": self.signer,
            "files": self.files,
            "model_name": self.signed.name,
            "repository": self.signed.repository,
            "version": self.signed.version,
            "details": self.details,
        }


def read_bundle(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UsageError(
            "bundle not found",
            path=path,
            hint="pass the signature file made by 'ml-integrity sign'",
        ) from None
    except IsADirectoryError:
        raise UsageError("bundle is a directory, expected a file", path=path) from None
    except OSError as exc:
        raise UsageError(f"cannot read bundle: {exc.strerror}", path=path) from None


def verify_signed_payload(
    bundle_path: Path, verifier: BundleVerifier
) -> tuple[VerifiedPayload, SignedModel]:
    """Steps 1 and 2: the signature and the signer; then parse the statement."""
    data = read_bundle(bundle_path)
    verified = verifier.verify_bundle(data, str(bundle_path))
    if verified.payload_type != oms.PAYLOAD_TYPE:
        raise BundleError(
            f"signed payload type is {verified.payload_type!r}, expected {oms.PAYLOAD_TYPE!r}",
            path=bundle_path,
        )
    return verified, oms.parse_statement(verified.payload, str(bundle_path))


def verify_model(
    target: Path,
    bundle_path: Path,
    verifier: BundleVerifier,
    *,
    ignore_paths: Sequence[str] = (),
    allow_symlinks: bool = False,
    ignore_unsigned: bool = False,
    workers: int | None = None,
    rehash: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> VerificationResult:
    """Verify ``target`` (folder or file) against the bundle: signature, trust, digests."""
    if not target.exists():
        raise UsageError("no such file or directory", path=target)
    verified, signed = verify_signed_payload(bundle_path, verifier)
    single_names = {oms.SINGLE_FILE_NAME, target.name}
    if target.is_file():
        if len(signed.resources) != 1 or not (set(signed.resources) & single_names):
            raise IntegrityError(
                f"bundle signs a folder of {len(signed.resources)} file(s), "
                "but a single file was given",
                path=target,
                hint="pass the model folder that was signed",
            )
        digest = hashing.hash_file(target)
        ((_name, expected),) = signed.resources.items()
        if digest.sha256 != expected:
            raise IntegrityError(
                "content differs from what was signed",
                path=target,
                diff=ManifestDiff(changed=(target.name,)),
                hint="the file was modified after signing; restore it or re-sign",
            )
        return VerificationResult(target, bundle_path, verified.signer, signed, 1, verified.details)
    if signed.is_single_file:
        raise IntegrityError(
            "bundle signs a single file, but a folder was given",
            path=target,
            hint="pass the file that was signed, not its folder",
        )
    ignores = [*ignore_paths, *signed.ignore_paths, *signing_bundle_ignores(target, bundle_path)]
    paths = manifest.list_files(
        target, allow_symlinks=allow_symlinks or signed.allow_symlinks, ignore=ignores
    )
    if ignore_unsigned:
        paths = [p for p in paths if p in signed.resources]
    present = [p for p in paths if p in signed.resources]
    digests = hashing.hash_files(
        target,
        present,
        workers=workers,
        rehash=rehash,
        progress=progress,
        cache=hashing.StatCache.load(hashing.default_cache_path(target)),
    )
    actual = {p: digests[p].sha256 for p in present}
    actual.update({p: "" for p in paths if p not in signed.resources})
    diff = manifest.diff_digests(signed.resources, actual)
    if diff:
        raise IntegrityError(
            f"{target} does not match what {verified.signer} signed "
            f"({len(diff.changed)} changed, {len(diff.missing)} missing, {len(diff.extra)} extra)",
            path=bundle_path,
            diff=diff,
            hint="restore the listed files, or re-sign if the change is intended"
            + ("; --ignore-unsigned-files accepts extra files" if diff.extra else ""),
        )
    return VerificationResult(
        target, bundle_path, verified.signer, signed, len(present), verified.details
    )


def signing_bundle_ignores(target: Path, bundle_path: Path) -> list[str]:
    try:
        rel = bundle_path.resolve().relative_to(target.resolve())
    except ValueError:
        return []
    return [rel.as_posix()]
