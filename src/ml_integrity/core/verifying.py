"""Verify an OMS bundle over a model folder, a single file or a repository.

Order, always: the signature (DSSE over the payload), then trust (the key,
the certificate chain or the Sigstore identity given by the caller), then the
digests (the signed resources against the content on disk). A failure at any
step raises an :class:`~ml_integrity.errors.IntegrityError` subclass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ml_integrity.core import manifest, oms

# content, hashing, sharded, signing...: imported where models are verified (a bundle's
# signature alone, as the checkout filter checks it, needs none of them)
from ml_integrity.core.oms import SignedModel
from ml_integrity.errors import BundleError, IntegrityError, ManifestDiff, UsageError


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


def trust_fingerprint(verifier: object) -> str | None:
    """A digest of the trust ``verifier`` applies, or None when it cannot say.

    Verifiers (and verifier factories) may define ``trust_fingerprint() -> str |
    None``: a digest of everything that decides what they accept (keys, roots,
    identities, the policy). It keys caches of verification results; without
    one, results must not be cached, since nothing would tell another trust apart.
    """
    method = getattr(verifier, "trust_fingerprint", None)
    if not callable(method):
        return None
    value = method()
    return value if isinstance(value, str) and value else None


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
            "format": self.signed.format_name,
            "hashing": self.signed.hashing,
            "details": self.details,
        }


def read_bundle(path: Path) -> bytes:
    from ml_integrity.core import content

    reader = content.current()
    try:
        return path.read_bytes() if reader is None else reader.read_bytes(path)
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
    bundle_path: Path, verifier: BundleVerifier, *, paths: Sequence[str] | None = None
) -> tuple[VerifiedPayload, SignedModel]:
    """Steps 1 and 2: the signature and the signer; then parse the statement.

    A sharded dataset's top-level statement gives the resources of its shards
    (:mod:`~ml_integrity.core.sharded`): every shard, or with ``paths`` only
    the shards whose range holds them.
    """
    from ml_integrity.core import sharded

    data = read_bundle(bundle_path)
    verified = verifier.verify_bundle(data, str(bundle_path))
    if verified.payload_type != oms.PAYLOAD_TYPE:
        raise BundleError(
            f"signed payload type is {verified.payload_type!r}, expected {oms.PAYLOAD_TYPE!r}",
            path=bundle_path,
        )
    if sharded.is_sharded(verified.payload):
        top = sharded.parse_top(verified.payload, str(bundle_path))
        return verified, sharded.resolve(top, bundle_path, paths=paths)
    return verified, oms.parse_statement(verified.payload, str(bundle_path))


def verify_model(
    target: Path,
    bundle_path: Path,
    verifier: BundleVerifier,
    *,
    ignore_paths: Sequence[str] = (),
    ignore_git_paths: bool = True,
    allow_symlinks: bool = False,
    ignore_unsigned: bool = False,
    workers: int | None = None,
    rehash: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> VerificationResult:
    """Verify ``target`` (folder or file) against one bundle: signature, trust, digests.

    The simple library API: ``verifier`` decides whom to trust (for example
    ``_keys.KeyVerifier``). For policies (several bundles, thresholds,
    allow/deny lists, rollback), use :func:`ml_integrity.trust.verdict.verify`;
    both check the content with :func:`check_content`.
    """
    if not target.exists():
        raise UsageError("no such file or directory", path=target)
    verified, signed = verify_signed_payload(bundle_path, verifier)
    content = check_content(
        target,
        signed,
        [bundle_path],
        signer=verified.signer,
        ignore_paths=ignore_paths,
        ignore_git_paths=ignore_git_paths,
        allow_symlinks=allow_symlinks,
        refuse_unsigned=_accept_all if ignore_unsigned else None,
        workers=workers,
        rehash=rehash,
        progress=progress,
    )
    return VerificationResult(
        target, bundle_path, verified.signer, signed, content.files, verified.details
    )


def _accept_all(_extra: Sequence[str]) -> Sequence[str]:
    return ()


@dataclass(frozen=True)
class ContentCheck:
    """The content on disk matched what was signed."""

    files: int
    """Signed files that were hashed and matched."""
    unsigned: tuple[str, ...] = ()
    """Files present but not signed, which ``refuse_unsigned`` accepted."""


def check_content(
    target: Path,
    signed: SignedModel,
    bundles: Sequence[Path],
    *,
    signer: str,
    ignore_paths: Sequence[str] = (),
    ignore_git_paths: bool = True,
    allow_symlinks: bool = False,
    refuse_unsigned: Callable[[Sequence[str]], Sequence[str]] | None = None,
    unsigned_hint: str = "--ignore-unsigned-files accepts extra files",
    workers: int | None = None,
    rehash: bool = False,
    progress: Callable[[int, int], None] | None = None,
    paths: Sequence[str] | None = None,
) -> ContentCheck:
    """Step 3: the content of ``target`` against the resources ``signer`` signed.

    A single file must be what a single-file bundle signed; a folder is
    enumerated with the signed serialization settings (the signed ignore
    paths and symlink setting, plus ``ignore_paths`` and the ``bundles``
    themselves when they lie inside it), hashed as the bundle says (its
    algorithm; a shard bundle shard by shard) and compared. The top-level git
    paths are left out unless the bundle signs them (or ``ignore_git_paths``
    is false). Files present but not signed go to ``refuse_unsigned``, which
    returns those to refuse (it may raise instead); by default every one is
    refused. Changed, missing and refused files raise one
    :class:`IntegrityError` with the whole diff; ``unsigned_hint`` tells how
    extra files can be accepted.
    With ``paths``, only those files are hashed and compared
    (:func:`~ml_integrity.core.partial.check_paths`).
    """
    from ml_integrity.core import partial, signing

    if paths is not None:
        count = partial.check_paths(
            target,
            signed,
            paths,
            signer=signer,
            bundle=bundles[0] if bundles else target,
            workers=workers,
            rehash=rehash,
            allow_symlinks=allow_symlinks,
        )
        return ContentCheck(count)
    user_ignores = signing.resolve_ignore_paths(target, ignore_paths)
    if target.is_file():
        return _check_single_file(target, signed)
    if signed.is_single_file:
        raise IntegrityError(
            "bundle signs a single file, but a folder was given",
            path=target,
            hint="pass the file that was signed, not its folder",
        )
    ignores = [
        *user_ignores,
        *signed.ignore_paths,
        *(i for b in bundles for i in signing.bundle_ignores(target, b)),
    ]
    signed_files = signed.files
    defaults = (
        [n for n in manifest.DEFAULT_IGNORES if not _covers(n, signed_files)]
        if ignore_git_paths
        else []
    )
    follow = allow_symlinks or signed.allow_symlinks
    on_disk = manifest.list_files_on_disk(
        target, allow_symlinks=follow, ignore=ignores, default_ignores=defaults
    )
    paths = list(on_disk)
    present = [p for p in paths if p in signed_files]
    extra = [p for p in paths if p not in signed_files]
    # In a shard bundle an empty file has no shard: it is not signed, so it is extra.
    expected, actual = _hash_as_signed(
        target, signed, present, on_disk, workers, rehash, progress, follow
    )
    refused = set(extra if refuse_unsigned is None else refuse_unsigned(extra)) if extra else set()
    actual.update(dict.fromkeys(refused, ""))
    diff = manifest.diff_digests(expected, actual)
    if diff:
        raise IntegrityError(
            f"{target} does not match what {signer} signed "
            f"({len(diff.changed)} changed, {len(diff.missing)} missing, {len(diff.extra)} extra)",
            path=bundles[0] if bundles else target,
            diff=diff,
            hint="restore the listed files, or re-sign if the change is intended"
            + (f"; {unsigned_hint}" if diff.extra else ""),
        )
    return ContentCheck(len(present), tuple(sorted(p for p in extra if p not in refused)))


def _covers(name: str, files: set[str]) -> bool:
    """True when ``name`` (a top-level git path) is, or holds, a signed file."""
    return name in files or any(f.startswith(name + "/") for f in files)


def _hash_as_signed(
    target: Path,
    signed: SignedModel,
    present: list[str],
    on_disk: Mapping[str, str],
    workers: int | None,
    rehash: bool,
    progress: Callable[[int, int], None] | None,
    follow: bool,
) -> tuple[dict[str, str], dict[str, str]]:
    """``({file: expected}, {file: actual})`` digests of the signed files on disk.

    ``present`` are signed (NFC) names; ``on_disk`` maps each to the name the
    file system spells (a folder made on macOS has NFD names).

    For a shard bundle a file's "digest" is its list of shards: a file whose
    size differs from the signed one is changed without being read, so a
    bundle cannot make us hash more shards than it lists.
    """
    from ml_integrity.core import content, hashing

    reader = content.current()
    if reader is not None:  # stored in another form (encrypted): the reader gives digests
        _require_sha256_files(signed, target)
        plain = reader.sha256_files(
            target, [on_disk[p] for p in present], workers=workers, progress=progress
        )
        return dict(signed.resources), {p: plain[on_disk[p]] for p in present}
    if signed.method == "files":
        cache = None
        if signed.hash_type == "sha256":
            cache = hashing.StatCache.load(hashing.default_cache_path(target))
        digests = hashing.hash_files(
            target,
            [on_disk[p] for p in present],
            workers=workers,
            rehash=rehash,
            progress=progress,
            cache=cache,
            follow_symlinks=follow,
            algorithm=signed.hash_type,
        )
        if cache is not None:
            cache.save()
        return dict(signed.resources), {p: digests[on_disk[p]].hexdigest for p in present}
    assert signed.shard_size is not None
    expected = {p: _shard_key(s) for p, s in signed.shards.items()}
    sizes = {p: _size(target / on_disk[p], follow) for p in present}
    same_size = [p for p in present if sizes[p] == signed.shards[p][-1][1]]
    sharded = hashing.hash_shards(
        target,
        [on_disk[p] for p in same_size],
        shard_size=signed.shard_size,
        algorithm=signed.hash_type,
        workers=workers,
        progress=progress,
        follow_symlinks=follow,
    )
    actual = {p: _shard_key(sharded[on_disk[p]].shards) for p in same_size}
    actual.update({p: f"size {sizes[p]}" for p in present if on_disk[p] not in sharded})
    return expected, actual


def _require_sha256_files(signed: SignedModel, target: Path) -> None:
    if signed.method != "files" or signed.hash_type != "sha256":
        raise UsageError(
            f"encrypted content verifies against sha256-over-files bundles, "
            f"not {signed.hash_type} {signed.method}",
            path=target,
            hint="sign the plaintext with the default hashing (sign without --hash/--shard-size)",
        )


def _size(path: Path, follow: bool) -> int:
    from ml_integrity.core import hashing_read

    try:
        return (path.stat() if follow else path.lstat()).st_size
    except OSError as exc:
        raise hashing_read.error_for(exc, path) from exc


def _shard_key(shards: Sequence[tuple[int, int, str]]) -> str:
    return ";".join(f"{a}:{b}:{d}" for a, b, d in shards)


def _check_single_file(target: Path, signed: SignedModel) -> ContentCheck:
    from ml_integrity.core import content, hashing

    files = signed.files
    name = next(iter(files)) if len(files) == 1 else ""
    if name not in (oms.SINGLE_FILE_NAME, target.name):
        raise IntegrityError(
            f"bundle signs a folder of {len(files)} file(s), but a single file was given",
            path=target,
            hint="pass the model folder that was signed",
        )
    reader = content.current()
    if reader is not None:  # stored in another form (encrypted): the reader gives digests
        _require_sha256_files(signed, target)
        sha256 = reader.sha256_files(target.parent, [target.name])[target.name]
        ok = sha256 == signed.resources[name]
    else:
        # the user named this path: a link is followed
        if signed.method == "shards":
            assert signed.shard_size is not None
            want = signed.shards[name]
            ok = _size(target, True) == want[-1][1] and (
                hashing.hash_shards(
                    target.parent,
                    [target.name],
                    shard_size=signed.shard_size,
                    algorithm=signed.hash_type,
                    follow_symlinks=True,
                )[target.name].shards
                == want
            )
        else:
            digest = hashing.hash_file(target, follow_symlinks=True, algorithm=signed.hash_type)
            ok = digest.hexdigest == signed.resources[name]
    if not ok:
        raise IntegrityError(
            "content differs from what was signed",
            path=target,
            diff=ManifestDiff(changed=(target.name,)),
            hint="the file was modified after signing; restore it or re-sign",
        )
    return ContentCheck(1)
