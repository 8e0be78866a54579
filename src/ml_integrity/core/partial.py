"""Partial verification: the named files against what was signed, nothing else hashed.

``verify --paths P...`` (and the loader, which opens one item at a time) need
no full walk: each named file must be listed in the signed statement (for a
sharded dataset, only the shards whose range holds the names are read), and
must hash to the signed digest now. Files not named are neither listed nor
hashed, so unsigned extra files elsewhere in the folder are not reported:
that is what a whole-folder verification is for.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from ml_integrity.core import hashing
from ml_integrity.core.manifest import diff_digests, normalize_path, path_sort_key
from ml_integrity.core.oms import SignedModel
from ml_integrity.errors import IntegrityError, ManifestDiff, ManifestError, UsageError

__all__ = ["check_paths", "normalize_paths"]


def normalize_paths(target: Path, raw: Sequence[str]) -> list[str]:
    """The ``--paths`` values as manifest paths: relative to ``target`` (or absolute
    inside it), NFC; a path outside the folder is a usage error."""
    out: dict[str, None] = {}
    root = target.resolve()
    for value in raw:
        p = Path(value)
        if p.is_absolute():
            try:
                p = p.resolve().relative_to(root)
            except ValueError:
                raise UsageError(
                    f"--paths {value}: not inside {target}",
                    hint="name files of the verified folder, relative to it",
                ) from None
            value = p.as_posix()
        try:
            out[normalize_path(value)] = None
        except ManifestError as exc:
            raise UsageError(f"--paths {value}: {exc.message}", hint=exc.hint) from None
    if not out:
        raise UsageError("--paths needs at least one path")
    return sorted(out, key=path_sort_key)


def check_paths(
    target: Path,
    signed: SignedModel,
    paths: Sequence[str],
    *,
    signer: str,
    bundle: Path,
    workers: int | None = None,
    rehash: bool = False,
    allow_symlinks: bool = False,
) -> int:
    """Hash ``paths`` under ``target`` and compare with ``signed``; returns the count.

    A named path that was not signed, is missing on disk, or differs raises one
    :class:`IntegrityError` with the diff.
    """
    if not target.is_dir():
        raise UsageError("--paths needs a folder", path=target)
    follow = allow_symlinks or signed.allow_symlinks
    unsigned = [p for p in paths if p not in signed.resources]
    present: list[str] = []
    missing: list[str] = []
    odd: dict[str, str] = {}  # signed paths that hold no regular file now
    for p in paths:
        if p not in signed.resources:
            continue
        try:
            mode = (os.stat if follow else os.lstat)(target / p).st_mode
        except FileNotFoundError:
            missing.append(p)
            continue
        except OSError:
            present.append(p)  # hash_files reports it with its hint
            continue
        if stat.S_ISREG(mode):
            present.append(p)
        else:
            odd[p] = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
    cache = hashing.StatCache.load(hashing.default_cache_path(target))
    digests = hashing.hash_files(
        target,
        present,
        workers=workers,
        rehash=rehash,
        cache=cache,
        follow_symlinks=follow,
    )
    cache.save()
    expected = {p: signed.resources[p] for p in (*present, *missing, *odd)}
    actual = {p: digests[p].sha256 for p in present}
    actual.update(dict.fromkeys(odd, ""))
    actual.update(dict.fromkeys(unsigned, ""))
    diff = diff_digests(expected, actual)
    if diff:
        raise IntegrityError(
            f"{len(diff.changed) + len(diff.missing) + len(diff.extra)} of the "
            f"{len(paths)} named file(s) do not match what {signer} signed "
            f"({len(diff.changed)} changed, {len(diff.missing)} missing, "
            f"{len(diff.extra)} not signed)",
            path=bundle,
            diff=ManifestDiff(
                missing=diff.missing,
                extra=diff.extra,
                changed=diff.changed,
                notes={**dict.fromkeys(diff.extra, "not signed"), **odd},
            ),
            hint="restore the listed files, or re-sign if the change is intended",
        )
    return len(present)
