"""The default engine: small files by the fewest system calls, large ones on a thread pool.

Profiling 200,000 empty files showed where the per-file time went in the
in-memory path: ``pathlib`` objects per file, a second open per file to sniff
its format, the whole-tree stat cache (parsed and re-written, 200,000 entries)
and the JSON encoder. Here a small file (up to :data:`SMALL_FILE` bytes) costs
four system calls (open, fstat, one read, fstat) and one hash; its format is
sniffed from the bytes already read. Threads do not help there: the work is
Python between system calls and holds the GIL (two threads measured slower
than one on 2 cores). So after the first :data:`WINDOW` files, a big tree's
small files go in batches of :data:`BATCH` to ``workers`` forked helper
processes (Linux; a bounded number of batches in flight, results taken in
order), while this process walks and writes. Files larger than
:data:`SMALL_FILE` (and anything odd: links, unreadable files) go to
:func:`ml_integrity.core.hashing.hash_files`, which hashes them on every core,
keeps their digests in the stat cache and raises the errors with their hints;
small files are always read again (reading one costs about what a cache lookup
does), so the cache stays as small as the number of large files.
"""

from __future__ import annotations

import collections
import hashlib
import os
import stat
import sys
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from ml_integrity.core import hashing
from ml_integrity.core.hashing_algorithms import new_hasher
from ml_integrity.core.streaming import FileRecord, WalkedFile, sniff_head

__all__ = ["SMALL_FILE", "WINDOW", "ThreadEngine", "hash_small"]

SMALL_FILE = 256 << 10
"""Files up to this size are read in one system call by the calling thread."""

WINDOW = 4096
"""Files handled at once: what the engine holds in memory, whatever the tree's size."""

BATCH = 1024
"""Files per batch handed to a helper process."""

_CAN_FORK = sys.platform.startswith("linux")
"""Helper processes are forked (cheap, nothing to import again); elsewhere the
calling thread hashes every small file."""

_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def hash_small(
    full: str,
    buf: memoryview,
    follow_symlinks: bool,
    *,
    dir_fd: int | None = None,
    algorithm: str = "sha256",
) -> tuple[int, str, str | None] | None:
    """``(size, digest, format)`` of a small, stable regular file; None otherwise.

    The digest is SHA-256 unless ``algorithm`` names another
    (:mod:`ml_integrity.core.hashing_algorithms`).

    None means "take the careful path" (:func:`hashing.hash_files`): the file
    is large, not regular, unreadable or changed between the two ``fstat``
    calls; that path hashes it again or raises the error with its hint. With
    ``dir_fd``, ``full`` is a name in that directory (a shorter lookup).
    """
    try:
        fd = os.open(full, _FLAGS | (0 if follow_symlinks else _NOFOLLOW), dir_fd=dir_fd)
    except OSError:
        return None
    try:
        before = os.fstat(fd)
        size = before.st_size
        if size > len(buf) or not stat.S_ISREG(before.st_mode):
            return None
        n = os.readv(fd, [buf])
        after = os.fstat(fd)
        if (
            n != size
            or after.st_size != size
            or after.st_mtime_ns != before.st_mtime_ns
            or after.st_ctime_ns != before.st_ctime_ns
        ):
            return None
        if algorithm != "sha256":
            return _other(algorithm, buf[:n])
        if not n:
            return 0, _EMPTY_SHA256, None
        data = buf[:n]
        return n, hashlib.sha256(data).hexdigest(), sniff_head(bytes(data[:512]))
    except OSError:
        return None
    finally:
        os.close(fd)


def _other(algorithm: str, data: memoryview) -> tuple[int, str, str | None]:
    """:func:`hash_small`'s result for an algorithm other than SHA-256."""
    h = new_hasher(algorithm)
    if len(data):
        h.update(data)
    return len(data), h.hexdigest(), sniff_head(bytes(data[:512])) if len(data) else None


_child_buffer: memoryview | None = None


def _hash_batch(job: tuple[list[str], bool, str]) -> list[tuple[int, str, str | None] | None]:
    """In a helper process: :func:`hash_small` over a batch of files."""
    global _child_buffer
    if _child_buffer is None:
        _child_buffer = memoryview(bytearray(SMALL_FILE))
    fulls, follow, algorithm = job
    buf = _child_buffer
    return [hash_small(f, buf, follow, algorithm=algorithm) for f in fulls]


class _Helpers:
    """Forked helper processes for the small files of big trees, used through a
    bounded window of batches in flight (the walk never runs ahead of them)."""

    def __init__(self, processes: int) -> None:
        from ml_integrity.engines.forked import fork_pool

        self.pool = fork_pool(processes)
        self.limit = 2 * processes

    def close(self, *, ok: bool) -> None:
        from ml_integrity.engines.forked import stop_pool

        stop_pool(self.pool, ok=ok)


class ThreadEngine:
    """Hashes a stream of files on this machine (see the module docstring)."""

    def __init__(
        self, *, workers: int | None = None, rehash: bool = False, use_cache: bool = True
    ) -> None:
        self.workers = workers
        self.rehash = rehash
        self.use_cache = use_cache

    def hash_stream(
        self,
        root: Path,
        files: Iterable[WalkedFile],
        *,
        follow_symlinks: bool,
        algorithm: str = "sha256",
    ) -> Iterator[FileRecord]:
        self._cache: hashing.StatCache | None = None
        self._large_paths: list[str] = []
        self._algorithm = algorithm
        buf = memoryview(bytearray(SMALL_FILE))
        it = iter(files)
        first = list(islice(it, WINDOW))
        small = [hash_small(f.full, buf, follow_symlinks, algorithm=algorithm) for f in first]
        yield from self._finish(root, first, small, follow_symlinks)
        processes = self.workers or os.cpu_count() or 1
        helpers = None
        if len(first) == WINDOW and processes > 1 and _CAN_FORK:
            helpers = _Helpers(processes)
        ok = False
        try:
            if helpers is None:
                while window := list(islice(it, WINDOW)):
                    small = [
                        hash_small(f.full, buf, follow_symlinks, algorithm=algorithm)
                        for f in window
                    ]
                    yield from self._finish(root, window, small, follow_symlinks)
            else:
                yield from self._with_helpers(helpers, root, it, follow_symlinks)
            ok = True
        finally:
            if helpers is not None:
                helpers.close(ok=ok)
        self._save_cache(root)

    def tree_chunks(self, root: Path, ignore: Sequence[str]) -> Iterator[tuple[str, int, int]]:
        """The manifest's entries as formatted chunks, by directory jobs
        (:mod:`ml_integrity.engines.tree`); symbolic links are refused there."""
        from ml_integrity.engines.tree import TreeRunner

        self._cache = None
        self._large_paths = []
        self._algorithm = "sha256"
        runner = TreeRunner(
            root,
            list(ignore),
            processes=self.workers or os.cpu_count() or 1,
            careful=lambda files: self._careful(root, files),
        )
        yield from runner.chunks()
        self._save_cache(root)

    def _careful(
        self, root: Path, files: list[tuple[str, str]]
    ) -> dict[str, tuple[int, str, str | None]]:
        """Files the helpers left: small ones read here, the rest through hash_files."""
        from ml_integrity.core.manifest import sniff_file

        buf = memoryview(bytearray(SMALL_FILE))
        out: dict[str, tuple[int, str, str | None]] = {}
        large = []
        for rel, full in files:
            got = hash_small(full, buf, False)
            if got is None:
                large.append((rel, full))
            else:
                out[rel] = got
        if large:
            rels = [rel for rel, _ in large]
            self._large_paths += rels
            digests = hashing.hash_files(
                root, rels, workers=self.workers, cache=self._large_cache(root), rehash=self.rehash
            )
            for rel, full in large:
                d = digests[rel]
                out[rel] = (d.size, d.sha256, sniff_file(Path(full)))
        return out

    def _large_cache(self, root: Path) -> hashing.StatCache | None:
        """The stat cache of the large files, loaded when the first one shows up.

        It is a file of its own beside the in-memory path's cache
        (``statcache-stream.json``), so it only ever holds large files and a
        big cache written by the in-memory path is never loaded here.
        """
        if self._cache is None and self.use_cache and self._algorithm == "sha256":
            path = hashing.default_cache_path(root)
            self._cache = hashing.StatCache.load(path.with_name(f"{path.stem}-stream.json"))
        return self._cache

    def _save_cache(self, root: Path) -> None:
        if self._cache is not None:
            self._cache.retain(root, self._large_paths)  # forget deleted and shrunk files
            self._cache.save()

    def _with_helpers(
        self,
        helpers: _Helpers,
        root: Path,
        it: Iterator[WalkedFile],
        follow_symlinks: bool,
    ) -> Iterator[FileRecord]:
        in_flight: collections.deque[tuple[list[WalkedFile], Any]] = collections.deque()
        while True:
            while len(in_flight) < helpers.limit:
                window = list(islice(it, BATCH))
                if not window:
                    break
                job = ([f.full for f in window], follow_symlinks, self._algorithm)
                in_flight.append((window, helpers.pool.submit(_hash_batch, job)))
            if not in_flight:
                return
            window, pending = in_flight.popleft()
            yield from self._finish(root, window, pending.result(), follow_symlinks)

    def _finish(
        self,
        root: Path,
        window: list[WalkedFile],
        small: list[tuple[int, str, str | None] | None],
        follow_symlinks: bool,
    ) -> Iterator[FileRecord]:
        """Hash the files the fast path left (large or odd), then yield in order."""
        from ml_integrity.core.manifest import sniff_file

        large = [f.rel for f, got in zip(window, small, strict=True) if got is None]
        digests = {}
        if large:
            self._large_paths += large
            digests = hashing.hash_files(
                root,
                large,
                workers=self.workers,
                cache=self._large_cache(root),
                rehash=self.rehash,
                follow_symlinks=follow_symlinks,
                algorithm=self._algorithm,
            )
        for f, got in zip(window, small, strict=True):
            if got is not None:
                yield FileRecord(f.rel, got[0], got[1], got[2])
            else:
                d = digests[f.rel]
                yield FileRecord(f.rel, d.size, d.hexdigest, sniff_file(Path(f.full)))
