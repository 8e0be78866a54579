"""Sign a model folder, a single file or a repository as an OMS v1.0 bundle.

The use case is backend-neutral: it builds the manifest, turns it into an
in-toto statement with the OMS predicate (:mod:`ml_integrity.core.oms`) and asks a
:class:`Signer` to wrap it in a DSSE envelope inside a Sigstore bundle.
Backends: ``_keys.KeySigner`` (EC P-256/P-384, Ed25519, optionally with a
certificate chain) and ``_sigstore.SigstoreSigner`` (keyless).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ml_integrity.core import fileio, hashing, hashing_shards, manifest, oms
from ml_integrity.core.hashing_algorithms import oms_name
from ml_integrity.core.manifest import Manifest
from ml_integrity.errors import ManifestError, UsageError


class Signer(Protocol):
    """Signs an in-toto statement; returns the Sigstore bundle as JSON text.

    ``statement`` is the exact payload (``application/vnd.in-toto+json``) to
    sign; implementations must not re-serialise it.
    """

    def sign_statement(self, statement: bytes) -> str: ...

    def describe(self) -> str:
        """Who signs, for messages (a key fingerprint, an identity)."""
        ...


@dataclass(frozen=True)
class SignResult:
    bundle_path: Path
    signer: str
    single_file: bool
    files: int
    total_size: int
    hashing: str
    """What was signed how, for messages (``sha256 files``, ``blake3 files``, ...)."""
    sha256_manifest: Manifest | None = None

    @property
    def manifest(self) -> Manifest:
        """The manifest of a SHA-256 file signature (the default)."""
        if self.sha256_manifest is None:
            raise ValueError(f"signed with {self.hashing}: there is no SHA-256 manifest")
        return self.sha256_manifest


def bundle_ignores(target: Path, bundle_out: Path) -> list[str]:
    """The bundle's own path relative to ``target`` when it lies inside it."""
    if target.is_dir():
        try:
            rel = bundle_out.resolve().relative_to(target.resolve())
        except ValueError:
            return []
        return [rel.as_posix()]
    return []


_BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle"
_MAX_BUNDLE_PROBE = 16 << 20


def _is_bundle_file(path: Path) -> bool:
    """Does ``path`` hold a Sigstore bundle (an earlier signature), as opposed to model data?"""
    import json

    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_BUNDLE_PROBE + 1)
    except OSError:
        return False
    if len(data) > _MAX_BUNDLE_PROBE:
        return False
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return False
    media = doc.get("mediaType") if isinstance(doc, dict) else None
    return isinstance(media, str) and media.startswith(_BUNDLE_MEDIA_TYPE)


def _ignored(rel: str, ignores: Sequence[str]) -> bool:
    return any(rel == i or rel.startswith(i.rstrip("/") + "/") for i in ignores)


def check_bundle_path(
    target: Path,
    bundle_out: Path,
    *,
    overwrite: bool = False,
    ignore_paths: Sequence[str] = (),
    ignore_git_paths: bool = True,
) -> None:
    """Refuse a bundle path that would replace a file of the model, or any file unasked.

    The bundle never replaces a file of the model it signs (``--overwrite``
    or not): a file given as the model, or a file inside the model folder
    that is not left out of the signature. An earlier bundle inside the folder
    is not model data. Any other existing file is replaced only with
    ``overwrite``. ``ignore_paths`` are clean relative paths (see
    :func:`resolve_ignore_paths`).
    """
    # the bundle replaces the directory entry (a link is replaced, not followed)
    place = Path(os.path.realpath(bundle_out.parent)) / bundle_out.name
    model_real = Path(os.path.realpath(target))
    model_place = Path(os.path.realpath(target.parent)) / target.name
    exists = os.path.lexists(place)
    if exists and place.is_dir() and not place.is_symlink():
        raise UsageError(
            "cannot write: the bundle path is a folder",
            path=bundle_out,
            hint="--bundle names the bundle file to write, for example "
            f"--bundle {bundle_out / (target.name + '.sig')}",
        )
    of_model = False
    if target.is_dir():
        try:
            rel = place.relative_to(model_real).as_posix()
        except ValueError:
            rel = None
        if rel is not None and exists:
            defaults = manifest.DEFAULT_IGNORES if ignore_git_paths else ()
            left_out = _ignored(rel, [*ignore_paths, *defaults])
            of_model = not left_out and not _is_bundle_file(place)
    elif place in (model_real, model_place):
        of_model = True
    if of_model:
        raise UsageError(
            "the bundle would overwrite a file of the model it signs",
            path=bundle_out,
            hint=f"write the bundle outside the model, for example --bundle {target.name}.sig",
        )
    if exists and not overwrite:
        raise UsageError(
            "the bundle file already exists",
            path=bundle_out,
            hint="pass --overwrite to replace it, or choose another --bundle path",
        )


def resolve_ignore_paths(
    target: Path, values: Sequence[str], *, option: str = "--ignore-path"
) -> list[str]:
    """``values`` as clean paths relative to the model ``target``; usage errors otherwise.

    A relative value is relative to the model folder. An absolute value is
    accepted when it lies inside the model (as model_signing does) and turned
    into a relative one; outside the model, or naming the model itself, it is
    refused. So is anything that is not a clean relative path (``..``, a NUL,
    a backslash, not UTF-8).
    """
    root = os.path.realpath(target)
    out: list[str] = []
    for raw in values:
        value = raw
        if os.path.isabs(raw):
            resolved = os.path.realpath(raw)
            if resolved == root:
                raise UsageError(
                    f"{option} {raw!r} names the model itself",
                    hint=f"{option} leaves out a file or folder inside the model",
                )
            if not resolved.startswith(root.rstrip(os.sep) + os.sep):
                raise UsageError(
                    f"{option} {raw!r} is outside the model ({target})",
                    hint=f"give {option} a path inside the model, relative to it or absolute",
                )
            value = Path(os.path.relpath(resolved, root)).as_posix()
        try:
            out.append(manifest.normalize_path(value))
        except ManifestError as exc:
            raise UsageError(
                f"{option} {raw!r}: {exc.message}",
                hint=f"give {option} a path inside the model, relative to it or absolute",
            ) from None
    return out


def sign(
    target: Path,
    signer: Signer,
    bundle_out: Path,
    *,
    allow_symlinks: bool = False,
    ignore_paths: Sequence[str] = (),
    ignore_git_paths: bool = True,
    hash_type: str = "sha256",
    shard_size: int | None = None,
    workers: int | None = None,
    rehash: bool = False,
    progress: Callable[[int, int], None] | None = None,
    repository: str | None = None,
    version: int | None = None,
    overwrite: bool = False,
    shard_hasher: hashing_shards.ShardHasher | None = None,
) -> SignResult:
    """Sign ``target`` (a folder or one file); write the bundle atomically.

    ``hash_type`` is ``sha256`` (the default), ``blake2``/``blake2b`` or
    ``blake3``; ``shard_size`` switches to shard serialization (SHA-256 or
    BLAKE2b). ``ignore_git_paths`` leaves out the top-level ``.git``,
    ``.gitattributes``, ``.github`` and ``.gitignore``, as model_signing does.
    ``allow_symlinks`` follows symbolic links inside the model (a link out of
    it, or a cycle, is still refused) and records ``allow_symlinks: true``,
    as model_signing does, so that verifiers follow them too. The bundle
    never replaces a file of the model, and replaces another existing file
    only with ``overwrite`` (:func:`check_bundle_path`). ``shard_hasher``
    hashes the shards instead of this process's threads (``--engine dask``);
    the statement is the same, byte for byte.
    """
    algorithm = oms_name(hash_type)
    if shard_size is not None:
        if algorithm == "blake3":
            raise UsageError(
                "BLAKE3 is not hashed in shards: it already uses every core within a file",
                hint="drop --shard-size, or use it with --hash sha256 or blake2",
            )
        if shard_size < hashing_shards.MIN_SHARD_SIZE:
            raise UsageError(
                f"shard size {shard_size} is below {hashing_shards.MIN_SHARD_SIZE} bytes",
                hint="shards of 100 MB to 1 GB are the useful range",
            )
    user_ignores = resolve_ignore_paths(target, ignore_paths)
    check_bundle_path(
        target,
        bundle_out,
        overwrite=overwrite,
        ignore_paths=user_ignores,
        ignore_git_paths=ignore_git_paths,
    )
    ignores = [*user_ignores, *bundle_ignores(target, bundle_out)]
    defaults = manifest.DEFAULT_IGNORES if ignore_git_paths else ()
    single = target.is_file()
    recorded = sorted({*defaults, *ignores}) if not single else []
    model_name = target.resolve().name
    if algorithm == "sha256" and shard_size is None:
        m = manifest.build_from_directory(
            target,
            ignore=ignores,
            default_ignores=defaults,
            allow_symlinks=allow_symlinks,
            workers=workers,
            rehash=rehash,
            progress=progress,
        )
        if repository is not None or version is not None:
            m = Manifest(m.entries, repository=repository, version=version)
        statement = oms.build_statement(
            m,
            model_name=model_name,
            single_file=single,
            ignore_paths=recorded,
            allow_symlinks=allow_symlinks,
        )
        files, total, hashing_name, sha256_manifest = (
            len(m.entries),
            m.total_size,
            "sha256 files",
            m,
        )
    else:
        serialization = oms.Serialization(
            method="files" if shard_size is None else "shards",
            hash_type=algorithm,
            shard_size=shard_size,
            ignore_paths=tuple(recorded),
            allow_symlinks=allow_symlinks,
        )
        resources, files, total = _hash_resources(
            target, serialization, ignores, defaults, workers, progress, shard_hasher
        )
        statement = oms.statement_bytes(
            resources,
            serialization,
            model_name=model_name,
            repository=repository,
            version=version,
        )
        hashing_name = (
            f"{algorithm} files" if shard_size is None else f"{algorithm} shards of {shard_size}"
        )
        sha256_manifest = None
    bundle = signer.sign_statement(statement)
    write_atomic(bundle_out, bundle.encode("utf-8"))
    # described after signing: a keyless signer knows its identity only then
    return SignResult(
        bundle_out, signer.describe(), single, files, total, hashing_name, sha256_manifest
    )


def _hash_resources(
    target: Path,
    serialization: oms.Serialization,
    ignores: Sequence[str],
    defaults: Sequence[str],
    workers: int | None,
    progress: Callable[[int, int], None] | None,
    shard_hasher: hashing_shards.ShardHasher | None = None,
) -> tuple[list[oms.Resource], int, int]:
    """The resources of ``target`` hashed as ``serialization`` says, in model_signing's order."""
    if not target.exists():
        raise UsageError("no such file or directory", path=target)
    if target.is_file():
        root, paths, names = target.parent, [target.name], {target.name: oms.SINGLE_FILE_NAME}
    else:
        root = target
        paths = manifest.list_files(
            target,
            ignore=ignores,
            default_ignores=defaults,
            allow_symlinks=serialization.allow_symlinks,
        )
        names = {p: p for p in paths}
        if not paths:
            raise UsageError(
                "the folder holds no files to sign",
                path=target,
                hint="point at the model folder or file itself; empty models are refused",
            )
    algorithm = serialization.hash_type
    follow = target.is_file() or serialization.allow_symlinks  # the user named this path
    if serialization.method == "files":
        digests = hashing.hash_files(
            root,
            paths,
            workers=workers,
            progress=progress,
            algorithm=algorithm,
            follow_symlinks=follow,
        )
        resources = [
            oms.Resource(names[p], algorithm, digests[p].hexdigest, {"size": digests[p].size})
            for p in paths
        ]
        return resources, len(paths), sum(d.size for d in digests.values())
    assert serialization.shard_size is not None
    hasher = shard_hasher or hashing_shards.ThreadShardHasher(workers)
    sharded = hasher.hash_shards(
        root,
        paths,
        shard_size=serialization.shard_size,
        algorithm=algorithm,
        follow_symlinks=follow,
        progress=progress,
    )
    empty = [p for p in paths if sharded[p].size == 0]
    if empty:
        raise UsageError(
            f"{len(empty)} empty file(s) cannot be signed in shards (an empty file has no "
            f"shard, so its presence would not be signed): {', '.join(empty[:5])}",
            path=target,
            hint="sign without --shard-size, or leave the files out with --ignore-path",
        )
    kind = serialization.resource_algorithm()
    resources = [
        oms.Resource(oms.shard_name(names[p], start, end), kind, digest)
        for p in paths  # path-component order, then by offset: model_signing's order
        for start, end, digest in sharded[p].shards
    ]
    return resources, len(paths), sum(d.size for d in sharded.values())


def write_atomic(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Write a file the user named atomically (see ``_fileio``); failures are usage errors.

    ``mode`` (e.g. 0o600 for a private key) is set before any byte is written.
    """
    try:
        fileio.write_atomic(path, data, mode=mode)
    except OSError as exc:
        raise UsageError(f"cannot write: {exc.strerror}", path=path) from None
