"""How a dataset's items are checked: the bundle's own algorithm and serialization.

A bundle signs each file either whole (``files``: one digest per file, with
SHA-256, BLAKE2b or BLAKE3) or in shards (``shards``: the file cut into
``shard_size`` byte ranges, one SHA-256 or BLAKE2b digest each). An
:class:`ItemCheck` holds, per signed path, what its content must hash to, in
those terms: :meth:`ItemCheck.matches` checks a whole item in memory and
:meth:`ItemCheck.hasher` gives the incremental hash object the streaming
reader feeds chunk by chunk. For a shard bundle an item's "digest" is its
list of shards (``start:end:digest;...``, as ``verify`` compares them), so a
file matches only when every shard does and it ends where the last shard does.

The journal records SHA-256 digests: for a bundle of SHA-256 files that is
the signed digest; otherwise the item's SHA-256 is computed from the same
bytes (:attr:`ItemCheck.journal_needs_sha256`, :class:`TeeHasher`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from ml_integrity.core.hashing_algorithms import Hasher, new_hasher
from ml_integrity.core.oms import SignedModel

__all__ = ["ItemCheck", "ShardHasher", "TeeHasher", "shard_key"]


def shard_key(shards: Sequence[tuple[int, int, str]]) -> str:
    """The comparable form of a file's shards: ``start:end:digest`` joined by ``;``."""
    return ";".join(f"{a}:{b}:{d}" for a, b, d in shards)


class ShardHasher:
    """Hashes a stream shard by shard; :meth:`hexdigest` gives its :func:`shard_key`."""

    def __init__(self, algorithm: str, shard_size: int) -> None:
        self._algorithm = algorithm
        self._size = shard_size
        self._pos = 0
        self._start = 0
        self._current: Hasher = new_hasher(algorithm)
        self._done: list[tuple[int, int, str]] = []

    def update(self, data: bytes | memoryview, /) -> None:
        view = memoryview(data).cast("B")
        while view:
            room = self._start + self._size - self._pos
            part, view = view[:room], view[room:]
            self._current.update(part)
            self._pos += len(part)
            if self._pos == self._start + self._size:
                self._done.append((self._start, self._pos, self._current.hexdigest()))
                self._start = self._pos
                self._current = new_hasher(self._algorithm)

    def hexdigest(self) -> str:
        done = list(self._done)
        if self._pos > self._start:
            done.append((self._start, self._pos, self._current.hexdigest()))
        return shard_key(done)


class TeeHasher:
    """Feeds two hash objects: the bundle's (``hexdigest``) and SHA-256 (``sha256``)."""

    def __init__(self, main: Hasher) -> None:
        self._main = main
        self._sha = hashlib.sha256()

    def update(self, data: bytes | memoryview, /) -> None:
        self._main.update(data)
        self._sha.update(data)

    def hexdigest(self) -> str:
        return self._main.hexdigest()

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


class ItemCheck:
    """What each signed item must hash to, as the bundle ``signed`` says.

    ``expected`` maps each signed path (the files, in signed order) to the
    value :meth:`hasher`'s ``hexdigest()`` must give; ``sizes`` to the size
    it must have when the bundle says (always for shards).
    """

    def __init__(self, signed: SignedModel) -> None:
        self.algorithm = signed.hash_type
        self.method = signed.method
        self.shard_size = signed.shard_size
        self.sha256_files = signed.method == "files" and signed.hash_type == "sha256"
        self.expected: dict[str, str]
        self.sizes: dict[str, int]
        if signed.method == "shards":
            self.expected = {p: shard_key(s) for p, s in signed.shards.items()}
            self.sizes = {p: s[-1][1] for p, s in signed.shards.items()}
            self._shards: Mapping[str, tuple[tuple[int, int, str], ...]] = signed.shards
        else:
            self.expected = dict(signed.resources)
            self.sizes = dict(signed.sizes)
            self._shards = {}

    @property
    def journal_needs_sha256(self) -> bool:
        """True when the signed digests are not the items' SHA-256 (the journal's)."""
        return not self.sha256_files

    @property
    def description(self) -> str:
        if self.method == "shards":
            return f"{self.algorithm} shards of {self.shard_size} bytes"
        return f"{self.algorithm} files"

    def hasher(self) -> Hasher:
        """A fresh incremental hash object for one item."""
        if self.method == "shards":
            assert self.shard_size is not None
            return ShardHasher(self.algorithm, self.shard_size)
        if self.algorithm == "sha256":
            return hashlib.sha256()
        return new_hasher(self.algorithm)

    def matches(self, rel: str, data: bytes) -> bool:
        """Is ``data`` exactly what was signed for ``rel``?"""
        expected = self.expected.get(rel)
        if expected is None:
            return False
        if self.method == "files":
            if self.algorithm == "sha256":
                return hashlib.sha256(data).hexdigest() == expected
            h = new_hasher(self.algorithm)
            h.update(data)
            return h.hexdigest() == expected
        shards = self._shards[rel]
        if len(data) != shards[-1][1]:
            return False
        view = memoryview(data)
        for start, end, digest in shards:
            h = new_hasher(self.algorithm)
            h.update(view[start:end])
            if h.hexdigest() != digest:
                return False
        return True
