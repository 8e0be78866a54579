"""What every path of a tree (or of the index) holds: the repository's listing.

:func:`list_files` reads a tree (``git ls-tree -r -z -l``) or the index
(``git ls-files -s -z``, honouring ``GIT_INDEX_FILE``) and says, for every
path, what it holds *now*, whatever ``.gitattributes`` says:

- ``lfs``: a blob that is a Git LFS pointer; its digest is the pointer's oid
  (no download, no re-hash: the oid *is* the sha256 of the content);
- ``blob``: any other blob; its digest is the sha256 of its content, read
  through one ``git cat-file --batch`` (large blobs are streamed);
- ``symlink``: its digest is the sha256 of the link's target text;
- ``submodule``: a commit of another repository; its digest is the sha256 of
  ``commit <id>\n`` (the pin; its content is checked in its own repository).

A blob never changes, so what was learned about it is remembered by blob id
in ``.git/ml-integrity/blobs.json``: a commit in a large repository reads only
the blobs it has not seen before.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ml_integrity.core.fileio import write_atomic
from ml_integrity.core.lfs import MAX_POINTER_SIZE, Pointer, parse_pointer

if TYPE_CHECKING:
    from ml_integrity.git.runner import CatFileBatch, Git

__all__ = ["BLOB", "LFS", "LINK", "SUBMODULE", "BlobCache", "TreeFile", "list_files"]

LFS = "lfs"
BLOB = "blob"
LINK = "symlink"
SUBMODULE = "submodule"

_STREAM_ABOVE = 16 << 20
"""Blobs larger than this are hashed as a stream (``git cat-file blob``), not in memory."""
_CACHE_FILE = "blobs.json"
_CACHE_VERSION = 2


class TreeFile(NamedTuple):
    """One path of a tree or of the index and what it holds (a tuple: cheap in bulk)."""

    path: str
    """As git has it (may be NFD; the manifest's name is :attr:`name`)."""
    mode: str
    blob: str
    """The git object id (a commit for a submodule)."""
    kind: str
    digest: str
    """sha256 hex of what the path stands for (see the module docstring)."""
    size: int

    @property
    def name(self) -> str:
        """The path in NFC: how manifests name it."""
        path = self.path
        return path if path.isascii() else unicodedata.normalize("NFC", path)

    @property
    def pointer(self) -> Pointer | None:
        return Pointer(self.digest, self.size) if self.kind == LFS else None


class BlobCache:
    """blob id -> ``[is_pointer, sha256, size]``, loaded once, saved when it grew."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / _CACHE_FILE
        self._blobs: dict[str, Any] | None = None
        self._added: dict[str, list[Any]] = {}

    @property
    def blobs(self) -> dict[str, Any]:
        if self._blobs is None:
            self._blobs = {}
            try:
                doc = json.loads(self.path.read_bytes())
                blobs = doc["blobs"] if doc.get("v") == _CACHE_VERSION else {}
            except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
                return self._blobs
            if type(blobs) is dict:
                self._blobs = blobs  # each value is checked where it is used (is_valid)
        return self._blobs

    def add(self, blob: str, is_pointer: bool, digest: str, size: int) -> None:
        value = [1 if is_pointer else 0, digest, size]
        self.blobs[blob] = value
        self._added[blob] = value

    def save(self, in_use: int) -> None:
        """Add what was learned; start afresh when the cache outgrows the listing by far."""
        if not self._added:
            return
        try:
            try:
                doc = json.loads(self.path.read_bytes())
                blobs = doc["blobs"] if doc.get("v") == _CACHE_VERSION else {}
                if type(blobs) is not dict or len(blobs) > 4 * in_use + 1000:
                    blobs = {}  # keep the cache about the size of what is in use
            except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
                blobs = {}
            blobs.update(self._added)
            write_atomic(
                self.path,
                json.dumps({"v": _CACHE_VERSION, "blobs": blobs}, separators=(",", ":")).encode(),
                durable=False,  # a cache: losing it costs speed only
            )
            self._added = {}
        except OSError:
            pass  # a cache that cannot be written is only slower


def is_valid(v: object) -> bool:
    """A cache value as written: ``[0 or 1, sha256 hex, size]`` (a damaged one is ignored)."""
    return (
        type(v) is list
        and len(v) == 3
        and (v[0] == 0 or v[0] == 1)
        and type(v[1]) is str
        and len(v[1]) == 64
        and type(v[2]) is int
    )


def list_files(
    git: Git,
    cat: CatFileBatch,
    cache: BlobCache,
    rows: Iterable[tuple[str, str, str]],
    sizes: Mapping[str, int] | None = None,
) -> list[TreeFile]:
    """What each ``(mode, object id, path)`` row holds (rows from ls-tree or ls-files).

    ``sizes`` (blob id -> size, from ``ls-tree -l``) saves a ``--batch-check``.
    A blob git cannot read (a partial clone) is left out: it cannot be checked.
    """
    rows = list(rows)
    known = cache.blobs
    get = known.get
    unknown = sorted(
        {
            oid
            for mode, oid, _ in rows
            if mode not in ("160000", "120000") and not is_valid(get(oid))
        }
    )
    links = sorted({oid for mode, oid, _ in rows if mode == "120000"})
    if unknown:
        if sizes is None or any(o not in sizes for o in unknown):
            sizes = {**(sizes or {}), **blob_sizes(git, unknown)}
        small = [o for o in unknown if sizes.get(o, _STREAM_ABOVE + 1) <= _STREAM_ABOVE]
        for oid, data in cat.read_many(small):
            if data is not None:
                _learn(cache, oid, data)
        for oid in unknown:
            if oid not in known and oid in sizes and sizes[oid] > _STREAM_ABOVE:
                digest, size = git.sha256_blob(oid)
                cache.add(oid, False, digest, size)
    link_digests: dict[str, tuple[str, int]] = {}
    for oid, data in cat.read_many(links):
        if data is not None:
            link_digests[oid] = (hashlib.sha256(data).hexdigest(), len(data))
    cache.save(len(rows))
    make = tuple.__new__  # no Python-level __new__ per entry: fast on 10,000s of files
    out: list[TreeFile] = []
    for mode, oid, path in rows:
        if mode == "160000":
            pin = hashlib.sha256(f"commit {oid}\n".encode()).hexdigest()
            out.append(make(TreeFile, (path, mode, oid, SUBMODULE, pin, 0)))
        elif mode == "120000":
            got = link_digests.get(oid)
            if got is not None:
                out.append(make(TreeFile, (path, mode, oid, LINK, got[0], got[1])))
        elif (value := get(oid)) is not None:
            kind = LFS if value[0] else BLOB
            out.append(make(TreeFile, (path, mode, oid, kind, value[1], value[2])))
    return out


def _learn(cache: BlobCache, oid: str, data: bytes) -> None:
    pointer = parse_pointer(data) if len(data) < MAX_POINTER_SIZE else None
    if pointer is not None:
        cache.add(oid, True, pointer.oid, pointer.size)
    else:
        cache.add(oid, False, hashlib.sha256(data).hexdigest(), len(data))


def blob_sizes(git: Git, oids: Iterable[str]) -> dict[str, int]:
    """oid -> size of the objects that exist (one ``git cat-file --batch-check``)."""
    oids = list(oids)
    if not oids:
        return {}
    raw = git.run(["cat-file", "--batch-check"], input="\n".join(set(oids)).encode() + b"\n")
    out = {}
    for line in raw.stdout.decode().splitlines():
        parts = line.split()
        if len(parts) == 3:
            out[parts[0]] = int(parts[2])
    return out
