"""The hashing engine: many files on every core, streaming, incremental.

What it does
------------
- :func:`hash_file` and :func:`hash_files` compute SHA-256 (the default),
  BLAKE2b or BLAKE3 digests (:mod:`~ml_integrity.core.hashing_algorithms`).
  ``hashlib`` and ``blake3`` release the GIL while they hash, so threads
  hash on all cores at once.
- Memory is bounded: SHA-256 and BLAKE2b read with ``readinto`` into reused,
  page-aligned buffers of :data:`DEFAULT_CHUNK_SIZE` bytes; a file is never
  read whole. BLAKE3 maps the file instead
  (:mod:`~ml_integrity.core.hashing_read`).
- Across files, a pool of ``workers`` threads hashes several files at once.
  The biggest files are scheduled first, so one large file that happens to
  come last in path order cannot leave the other cores idle at the end.
  Small files go to the workers in batches (:data:`BATCH_BYTES`,
  :data:`BATCH_FILES`), so that thread hand-offs do not dominate.
- Within one file, SHA-256 cannot be parallel: a digest is one sequential
  chain of compression-function calls. What *is* parallel within a large
  file is I/O: a read-ahead thread reads the next chunks while the current
  one is hashed. It counts against ``workers`` and starts only when a thread
  would otherwise be idle (a lone large file, or the tail of a run). So one
  large file is capped by one core's SHA-256 speed, unless it is hashed in
  shards (:mod:`~ml_integrity.core.hashing_shards`), or with BLAKE3, a tree
  hash that uses every core within a file.
- Incremental: with a :class:`StatCache` (SHA-256 only), a file whose
  ``lstat`` is unchanged since its digest was recorded, and not racy, is not
  read again (:mod:`~ml_integrity.core.hashing_cache`).

This is a core module: it never prints, never runs subprocesses, and reports
every failure as an :class:`~ml_integrity.errors.OperationalError` naming the
file and what to do.
"""

from __future__ import annotations

import os
import queue
import stat
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from pathlib import Path

from ml_integrity.core.hashing_cache import (
    RACY_MARGIN_COARSE_NS,
    RACY_MARGIN_NS,
    StatCache,
    default_cache_path,
    is_racy,
    root_key,
)
from ml_integrity.core.hashing_cache import (
    _find_git_dir as _find_git_dir,  # used by scan/scanner.py
)
from ml_integrity.core.hashing_read import (
    DEFAULT_CHUNK_SIZE,
    PROGRESS_INTERVAL_S,
    READAHEAD_MIN_SIZE,
    Budget,
    Cancelled,
    Counter,
    FileDigest,
    Key,
    ProgressCallback,
    check_chunk_size,
    describe_mode,
    error_for,
    hash_path,
    noop,
    not_regular,
    stat_key,
)
from ml_integrity.core.hashing_shards import (
    DEFAULT_SHARD_SIZE,
    ShardedDigest,
    hash_shards,
    shard_ranges,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_SHARD_SIZE",
    "PROGRESS_INTERVAL_S",
    "RACY_MARGIN_COARSE_NS",
    "RACY_MARGIN_NS",
    "READAHEAD_MIN_SIZE",
    "FileDigest",
    "ProgressCallback",
    "ShardedDigest",
    "StatCache",
    "default_cache_path",
    "hash_file",
    "hash_files",
    "hash_shards",
    "is_racy",
    "shard_ranges",
]


def hash_file(
    path: Path,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    follow_symlinks: bool = False,
    algorithm: str = "sha256",
) -> FileDigest:
    """Size and digest (SHA-256 by default) of one regular file, with bounded memory.

    A symbolic link is refused unless ``follow_symlinks`` is true. A large
    file is read by a read-ahead thread while this thread hashes (when the
    machine has more than one core).

    Raises:
        OperationalError: the file is missing, unreadable, not a regular file,
            or changed while it was read.
    """
    check_chunk_size(chunk_size)
    budget = Budget(os.cpu_count() or 1, pending=1)
    budget.start_task()
    digest, _, _ = hash_path(
        os.fspath(path),
        path,
        chunk_size=chunk_size,
        follow_symlinks=follow_symlinks,
        budget=budget,
        algorithm=algorithm,
    )
    return digest


BATCH_BYTES = 8 << 20
"""Files smaller than this are handed to the workers in batches of up to this
many bytes (or :data:`BATCH_FILES` files), so that thread hand-offs do not
dominate the cost of small files."""

BATCH_FILES = 64


_Batch = list[tuple[int, str, str, Key]]  # (size, rel, full path, stat key)


def _check_rel(rel: str) -> None:
    if not rel or rel.startswith("/") or "\x00" in rel or ".." in rel.split("/"):
        raise ValueError(f"not a relative POSIX path inside the root: {rel!r}")


def hash_files(
    root: Path,
    paths: Sequence[str],
    *,
    workers: int | None = None,
    cache: StatCache | None = None,
    rehash: bool = False,
    progress: ProgressCallback | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    follow_symlinks: bool = False,
    algorithm: str = "sha256",
) -> dict[str, FileDigest]:
    """Size and digest (SHA-256 by default) of each of ``paths`` (relative to ``root``).

    Args:
        root: the folder the paths are relative to.
        paths: validated relative paths (no ``..``, not absolute).
        workers: the most threads to use; None means ``os.cpu_count()``.
            Up to ``workers`` files are hashed at once; a large file gets a
            read-ahead thread only while fewer threads are busy. 1 hashes one
            file after the other in the calling thread, with no other thread.
        cache: when given, files whose stat key is unchanged (and not racy)
            are taken from it without being read, and new digests are recorded
            in it. Call :meth:`StatCache.save` afterwards.
        rehash: read every file even when the cache has it (the cache is
            still refreshed).
        progress: called from worker threads as ``(done_bytes, total_bytes)``,
            at most every :data:`PROGRESS_INTERVAL_S` seconds, and once more at
            the end with ``done_bytes == total_bytes``. ``total_bytes`` counts
            only the bytes that have to be read (cache hits are not included).
        chunk_size: bytes per read.
        follow_symlinks: hash the target of a symbolic link instead of refusing
            it. Only the last path component is checked; that no path goes
            through a linked directory is the caller's validation.
        algorithm: ``sha256``, ``blake2b`` or ``blake3``. The stat cache holds
            SHA-256 digests only: with another algorithm it is not used.

    Returns:
        ``{path: FileDigest}`` in the order of ``paths``.

    Raises:
        OperationalError: a file is missing, unreadable, not a regular file,
            or changed while it was read. The other files are not finished.
    """
    check_chunk_size(chunk_size)
    if workers is None:
        workers = os.cpu_count() or 1
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    if algorithm != "sha256":
        cache = None
    root_str = os.fspath(root)
    cache_root = root_key(root) if cache is not None else ""
    stat_path = os.stat if follow_symlinks else os.lstat

    results: dict[str, FileDigest] = {}
    todo: _Batch = []
    seen: set[str] = set()
    for rel in paths:
        if rel in seen:
            continue
        seen.add(rel)
        _check_rel(rel)
        full = os.path.join(root_str, rel)
        try:
            st = stat_path(full)
        except OSError as exc:
            raise error_for(exc, full) from exc
        if not stat.S_ISREG(st.st_mode):
            raise not_regular(full, describe_mode(st.st_mode))
        if cache is not None and not rehash:
            hit = cache._lookup(cache_root, rel, st)
            if hit is not None:
                results[rel] = hit
                continue
        todo.append((st.st_size, rel, full, stat_key(st)))

    if todo:
        todo.sort(key=lambda item: (-item[0], item[1]))  # biggest first
        batches = _batches(todo)
        counter = Counter(sum(item[0] for item in todo), progress) if progress else None
        on_bytes = counter.add if counter else noop
        buffers: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
        stop = threading.Event()
        budget = Budget(workers, pending=len(batches))

        def run_batch(batch: _Batch) -> list[tuple[str, FileDigest]]:
            out = []
            budget.start_task()
            try:
                for _, rel, full, listed in batch:
                    digest, st, recorded_ns = hash_path(
                        full,
                        full,
                        chunk_size=chunk_size,
                        follow_symlinks=follow_symlinks,
                        budget=budget,
                        buffers=buffers,
                        stop=stop,
                        on_bytes=on_bytes,
                        algorithm=algorithm,
                    )
                    # Only when the file opened is the file listed: if it was
                    # replaced in between, the next run simply hashes it again.
                    if cache is not None and stat_key(st) == listed:
                        cache._record(cache_root, rel, st, recorded_ns, digest)
                    out.append((rel, digest))
            finally:
                budget.end_task()
            return out

        if workers == 1 or len(batches) == 1:
            for batch in batches:
                results.update(run_batch(batch))
        else:
            _run_pool(run_batch, batches, min(workers, len(batches)), stop, results)
        if counter:
            counter.finish()
    elif progress:
        progress(0, 0)

    return {rel: results[rel] for rel in paths}


def _batches(todo: _Batch) -> list[_Batch]:
    """Group the small files of ``todo`` (sorted biggest first) into batches."""
    batches: list[_Batch] = []
    current: _Batch = []
    current_bytes = 0
    for item in todo:
        if item[0] >= BATCH_BYTES:
            batches.append([item])
            continue
        current.append(item)
        current_bytes += item[0]
        if current_bytes >= BATCH_BYTES or len(current) >= BATCH_FILES:
            batches.append(current)
            current, current_bytes = [], 0
    if current:
        batches.append(current)
    return batches


def _run_pool(
    run_batch: Callable[[_Batch], list[tuple[str, FileDigest]]],
    batches: list[_Batch],
    workers: int,
    stop: threading.Event,
    results: dict[str, FileDigest],
) -> None:
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ml-integrity-hash")
    futures: list[Future[list[tuple[str, FileDigest]]]] = []
    try:
        futures = [executor.submit(run_batch, batch) for batch in batches]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in futures:
            if future in done and future.exception() is not None:
                raise _first_error(futures)
        for future in futures:
            results.update(future.result())
    finally:
        # On an error or Ctrl-C: the running reads stop at their next chunk.
        stop.set()
        executor.shutdown(wait=True, cancel_futures=True)


def _first_error(futures: list[Future[list[tuple[str, FileDigest]]]]) -> BaseException:
    """The error of the earliest-scheduled failed file (not a cancellation)."""
    for future in futures:
        if future.done() and not future.cancelled():
            exc = future.exception()
            if exc is not None and not isinstance(exc, Cancelled):
                return exc
    raise AssertionError("no failed future")  # pragma: no cover
