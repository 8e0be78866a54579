"""Sign a folder from a stream of hashed files: one OMS bundle, or shards above a threshold.

The entry point chooses the engine (:mod:`ml_integrity.engines`); this module
only sees the records it yields, in canonical order, and holds at most
``shard_entries`` of them. Up to that many files the result is the OMS bundle
:func:`ml_integrity.core.signing.sign` writes, byte for byte; above it, the
shards and the signed top-level statement of :mod:`ml_integrity.core.sharded`.
The signer is called once, here in the client, whichever engine hashed.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ml_integrity.core import oms, sharded, streaming
from ml_integrity.core.hashing_algorithms import oms_name
from ml_integrity.core.manifest import DEFAULT_IGNORES, Manifest
from ml_integrity.core.signing import Signer, bundle_ignores, check_bundle_path, write_atomic
from ml_integrity.errors import UsageError

__all__ = ["StreamSignResult", "sign_folder"]


@dataclass(frozen=True)
class StreamSignResult:
    bundle_path: Path
    files: int
    bytes: int
    signer: str
    shards: int
    """0 for a single OMS bundle."""


def _inside(target: Path, path: Path) -> str | None:
    with contextlib.suppress(ValueError):
        return path.resolve().relative_to(target.resolve()).as_posix()
    return None


def sign_folder(
    target: Path,
    signer: Signer,
    bundle_out: Path,
    engine: streaming.Engine,
    *,
    ignore_paths: Sequence[str] = (),
    shard_entries: int = sharded.DEFAULT_SHARD_ENTRIES,
    repository: str | None = None,
    version: int | None = None,
    overwrite: bool = False,
    allow_symlinks: bool = False,
    hash_type: str = "sha256",
) -> StreamSignResult:
    """Hash ``target`` with ``engine`` and sign it; write the bundle (and shards) atomically.

    The bundle never replaces a file of the model; an existing bundle or shard
    folder is replaced only with ``overwrite`` (see ``signing.check_bundle_path``).
    ``allow_symlinks`` follows links inside the model and records it, as
    ``signing.sign`` does; sharded manifests do not follow links.
    ``hash_type`` other than ``sha256`` (``blake2``/``blake2b``, ``blake3``)
    signs one OMS bundle of that algorithm over files whatever the number of
    files (sharded manifests are SHA-256), the bytes ``signing.sign`` writes.
    """
    algorithm = oms_name(hash_type)
    if not target.is_dir():
        raise UsageError("not a directory", path=target)
    if shard_entries < 1:
        raise UsageError("--shard-entries must be at least 1")
    check_bundle_path(target, bundle_out, overwrite=overwrite, ignore_paths=ignore_paths)
    ignores = [*ignore_paths, *bundle_ignores(target, bundle_out)]
    final_dir = sharded.shard_dir_for(bundle_out)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.", dir=final_dir.parent))
    try:
        walk_ignores = list(ignores)
        for p in (final_dir, staging):
            rel = _inside(target, p)
            if rel is not None:
                walk_ignores.append(rel)
        files = streaming.walk(target, allow_symlinks=allow_symlinks, ignore=walk_ignores)
        records = engine.hash_stream(
            target, files, follow_symlinks=allow_symlinks, algorithm=algorithm
        )
        if algorithm != "sha256":
            shard_entries = sys.maxsize - 1  # one bundle: sharded manifests are SHA-256
        head = list(itertools.islice(records, shard_entries + 1))
        if not head:
            raise UsageError(
                "the folder holds no files to sign",
                path=target,
                hint="point at the model folder itself; empty models are refused (OMS v1.0)",
            )
        name = target.resolve().name
        if len(head) <= shard_entries:
            recorded = {*DEFAULT_IGNORES, *ignores}
            rel_dir = _inside(target, final_dir)
            if rel_dir is not None and final_dir.exists():
                recorded.add(rel_dir)  # an older sharded signature's folder, left alone
            if algorithm == "sha256":
                m = streaming.records_to_manifest(head)
                m = Manifest(m.entries, repository=repository, version=version)
                statement = oms.build_statement(
                    m, model_name=name, ignore_paths=sorted(recorded), allow_symlinks=allow_symlinks
                )
            else:
                statement = _statement(
                    head,
                    algorithm,
                    name=name,
                    ignore_paths=sorted(recorded),
                    allow_symlinks=allow_symlinks,
                    repository=repository,
                    version=version,
                )
            write_atomic(bundle_out, signer.sign_statement(statement).encode("utf-8"))
            size = sum(r.size for r in head)
            return StreamSignResult(bundle_out, len(head), size, signer.describe(), 0)
        if allow_symlinks:
            raise UsageError(
                f"a folder of more than {shard_entries:,} files is signed as shards, and "
                "sharded manifests do not follow symbolic links",
                path=target,
                hint="replace the links with the files, or raise --shard-entries to sign "
                "one OMS bundle",
            )
        if os.path.lexists(final_dir) and not overwrite:
            raise UsageError(
                "the shard folder already exists",
                path=final_dir,
                hint="pass --overwrite to replace it, or choose another --bundle path",
            )
        rel_dir = _inside(target, final_dir)
        in_order = sorted({*DEFAULT_IGNORES, *ignores, *([rel_dir] if rel_dir else [])})
        shards = sharded.write_shards(
            itertools.chain(head, records),
            staging,
            model_name=name,
            ignore_paths=in_order,
            shard_entries=shard_entries,
        )
        top = sharded.build_top(
            shards,
            model_name=name,
            shard_dir=final_dir.name,
            ignore_paths=in_order,
            repository=repository,
            version=version,
        )
        bundle = signer.sign_statement(top).encode("utf-8")
        _replace_dir(staging, final_dir)
        write_atomic(bundle_out, bundle)
        return StreamSignResult(
            bundle_out,
            sum(s.files for s in shards),
            sum(s.bytes for s in shards),
            signer.describe(),
            len(shards),
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _statement(
    records: Sequence[streaming.FileRecord],
    algorithm: str,
    *,
    name: str,
    ignore_paths: Sequence[str],
    allow_symlinks: bool,
    repository: str | None,
    version: int | None,
) -> bytes:
    """The statement of files hashed with ``algorithm`` (not SHA-256), as
    ``signing.sign`` makes it: a resource per file with its size, no format."""
    resources = [oms.Resource(r.path, algorithm, r.sha256, {"size": r.size}) for r in records]
    serialization = oms.Serialization(
        method="files",
        hash_type=algorithm,
        ignore_paths=tuple(ignore_paths),
        allow_symlinks=allow_symlinks,
    )
    return oms.statement_bytes(
        resources, serialization, model_name=name, repository=repository, version=version
    )


def _replace_dir(new: Path, final: Path) -> None:
    """Put the folder ``new`` at ``final`` (an older one there is removed)."""
    if final.is_symlink() or final.is_file():
        raise UsageError(
            "the shard folder's place is taken by a file or link",
            path=final,
            hint="remove it, or choose another --bundle path",
        )
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old.", dir=final.parent))
        final.rename(old / "d")
        new.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        new.rename(final)
