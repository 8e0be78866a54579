"""Shard hashing: every file cut into fixed-size byte ranges, each hashed on its own.

This is OMS's ``shards`` serialization (model_signing's
``use_shard_serialization``): a file of ``size`` bytes is the shards
``[0, s)``, ``[s, 2s)``, ... ``[k*s, size)`` for the shard size ``s``; an
empty file has no shard at all. Each shard is an independent SHA-256 (or
BLAKE2b) chain, so the shards of one large file are hashed on every core at
once: this is the only way a single multi-GB file can use more than one core
with SHA-256. The price is a manifest entry per shard and digests that depend
on the shard size (a sharded digest is not the file's SHA-256, so it is not
the file's Git LFS oid).

Every shard is read with ``pread`` from its own descriptor; the file must
show the stat key it had when it was listed when it is opened and when its
last byte has been hashed, or it "changed while it was being hashed".
"""

from __future__ import annotations

import os
import queue
import stat
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ml_integrity.core.hashing_algorithms import new_hasher
from ml_integrity.core.hashing_read import (
    DEFAULT_CHUNK_SIZE,
    Cancelled,
    Counter,
    Key,
    ProgressCallback,
    changed_error,
    check_chunk_size,
    describe_mode,
    error_for,
    new_buffer,
    noop,
    not_regular,
    open_regular,
    stat_key,
)

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "MIN_SHARD_SIZE",
    "ShardHasher",
    "ShardedDigest",
    "ThreadShardHasher",
    "assemble",
    "check_shard_request",
    "hash_range",
    "hash_shards",
    "plan_shards",
    "shard_ranges",
]

DEFAULT_SHARD_SIZE = 1_000_000_000
"""model_signing's and the OMS spec's default shard size (1 GB)."""

MIN_SHARD_SIZE = 4096
"""Smaller shards only make the manifest bigger (and slower) than the model."""


@dataclass(frozen=True)
class ShardedDigest:
    """The shards of one file: ``(start, end, hexdigest)`` with ``end`` exclusive."""

    size: int
    algorithm: str
    shard_size: int
    shards: tuple[tuple[int, int, str], ...]


def shard_ranges(size: int, shard_size: int) -> list[tuple[int, int]]:
    """The ``(start, end)`` ranges a file of ``size`` bytes is cut into (none when empty)."""
    if shard_size < 1:
        raise ValueError(f"shard size must be positive, not {shard_size}")
    return [(start, min(start + shard_size, size)) for start in range(0, size, shard_size)]


_Task = tuple[str, str, Key, int, int]  # rel, full path, listed stat key, start, end


class ShardHasher(Protocol):
    """Who hashes the shards of ``sign --shard-size``: this process's threads
    (:func:`hash_shards`, the default) or an engine (``--engine dask``) that
    returns what :func:`hash_shards` returns for the same files."""

    def hash_shards(
        self,
        root: Path,
        paths: Sequence[str],
        *,
        shard_size: int,
        algorithm: str,
        follow_symlinks: bool,
        progress: ProgressCallback | None,
    ) -> dict[str, ShardedDigest]: ...


@dataclass(frozen=True)
class ThreadShardHasher:
    """The default :class:`ShardHasher`: :func:`hash_shards` on ``workers`` threads."""

    workers: int | None = None

    def hash_shards(
        self,
        root: Path,
        paths: Sequence[str],
        *,
        shard_size: int,
        algorithm: str,
        follow_symlinks: bool,
        progress: ProgressCallback | None,
    ) -> dict[str, ShardedDigest]:
        return hash_shards(
            root,
            paths,
            shard_size=shard_size,
            algorithm=algorithm,
            workers=self.workers,
            progress=progress,
            follow_symlinks=follow_symlinks,
        )


def check_shard_request(shard_size: int, algorithm: str) -> None:
    """Refuse a shard size below :data:`MIN_SHARD_SIZE` and BLAKE3 (ValueError)."""
    if shard_size < MIN_SHARD_SIZE:
        raise ValueError(f"shard size must be at least {MIN_SHARD_SIZE} bytes, not {shard_size}")
    if algorithm == "blake3":
        # BLAKE3 already uses every core within a file; model_signing ignores
        # the shard size for it too. Refused rather than silently changed.
        raise ValueError("BLAKE3 is not hashed in shards")


def plan_shards(
    root: Path, paths: Sequence[str], *, shard_size: int, follow_symlinks: bool
) -> tuple[dict[str, int], list[_Task]]:
    """Stat every file once: its size, and its shards ``(rel, full, key, start, end)``
    in file and offset order. Raises :class:`OperationalError` for a missing,
    unreadable or non-regular file."""
    root_str = os.fspath(root)
    stat_path = os.stat if follow_symlinks else os.lstat
    sizes: dict[str, int] = {}
    tasks: list[_Task] = []
    for rel in dict.fromkeys(paths):
        full = os.path.join(root_str, rel)
        try:
            st = stat_path(full)
        except OSError as exc:
            raise error_for(exc, full) from exc
        if not stat.S_ISREG(st.st_mode):
            raise not_regular(full, describe_mode(st.st_mode))
        sizes[rel] = st.st_size
        key = stat_key(st)
        tasks.extend((rel, full, key, a, b) for a, b in shard_ranges(st.st_size, shard_size))
    return sizes, tasks


def assemble(
    sizes: dict[str, int],
    done: Iterable[tuple[str, int, int, str]],
    *,
    algorithm: str,
    shard_size: int,
) -> dict[str, ShardedDigest]:
    """The result of :func:`hash_shards` from the hashed shards ``(rel, start, end,
    hexdigest)``, in any order; one :class:`ShardedDigest` per file of ``sizes``."""
    shards: dict[str, list[tuple[int, int, str]]] = {rel: [] for rel in sizes}
    for rel, start, end, hexdigest in done:
        shards[rel].append((start, end, hexdigest))
    out = {}
    for rel, size in sizes.items():
        got = tuple(sorted(shards[rel]))
        if [(a, b) for a, b, _ in got] != shard_ranges(size, shard_size):
            raise AssertionError(f"the shards of {rel!r} do not cover it")  # a bug, not input
        out[rel] = ShardedDigest(size, algorithm, shard_size, got)
    return out


def hash_shards(
    root: Path,
    paths: Sequence[str],
    *,
    shard_size: int,
    algorithm: str = "sha256",
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    follow_symlinks: bool = False,
) -> dict[str, ShardedDigest]:
    """The shard digests of each of ``paths`` (POSIX, relative to ``root``).

    ``workers`` threads (default: one per CPU) hash shards, the biggest
    first, whichever file they belong to. Raises :class:`OperationalError`
    for a missing, unreadable, non-regular or changing file.
    """
    check_chunk_size(chunk_size)
    check_shard_request(shard_size, algorithm)
    workers = workers or os.cpu_count() or 1
    sizes, tasks = plan_shards(root, paths, shard_size=shard_size, follow_symlinks=follow_symlinks)
    tasks.sort(key=lambda t: (t[3] - t[4], t[0], t[3]))  # biggest shards first
    counter = Counter(sum(t[4] - t[3] for t in tasks), progress) if progress else None
    on_bytes = counter.add if counter else noop
    stop = threading.Event()
    buffers: queue.SimpleQueue[memoryview] = queue.SimpleQueue()

    def run(task: _Task) -> tuple[_Task, str]:
        try:
            buf = buffers.get_nowait()
        except queue.Empty:
            buf = new_buffer(chunk_size)
        try:
            _rel, full, listed, start, end = task
            return task, hash_range(
                full,
                start,
                end,
                lambda st: stat_key(st) == listed,
                buf=buf,
                algorithm=algorithm,
                follow_symlinks=follow_symlinks,
                stop=stop,
                on_bytes=on_bytes,
            )
        finally:
            buffers.put(buf)

    done: list[tuple[_Task, str]] = []
    if workers == 1 or len(tasks) <= 1:
        done = [run(t) for t in tasks]
    else:
        done = _run_pool(run, tasks, min(workers, len(tasks)), stop)
    if counter:
        counter.finish()
    elif progress:
        progress(0, 0)
    return assemble(
        sizes,
        ((rel, start, end, digest) for (rel, _f, _k, start, end), digest in done),
        algorithm=algorithm,
        shard_size=shard_size,
    )


def hash_range(
    full: str,
    start: int,
    end: int,
    listed: Callable[[os.stat_result], bool],
    *,
    buf: memoryview,
    algorithm: str,
    follow_symlinks: bool,
    stop: threading.Event | None = None,
    on_bytes: Callable[[int], None] = noop,
) -> str:
    """The digest of the bytes ``[start, end)`` of ``full``, read with ``pread``.

    ``listed(st)`` must hold for the file's ``fstat`` when it is opened and
    after the last byte was hashed (it is the stat the file was listed
    with), or the file "changed while it was being hashed"; so must its
    length. This is what a Dask worker runs per shard, too.
    """
    fd, before = open_regular(full, full, follow_symlinks)
    try:
        if not listed(before):
            raise changed_error(full)
        h = new_hasher(algorithm)
        pos = start
        full_len = len(buf)
        try:
            while pos < end:
                if stop is not None and stop.is_set():
                    raise Cancelled
                want = min(full_len, end - pos)
                n = os.preadv(fd, [buf[:want] if want < full_len else buf], pos)
                if n <= 0:
                    raise changed_error(full)  # shorter than when it was listed
                h.update(buf[:n] if n < full_len else buf)
                pos += n
                on_bytes(n)
            after = os.fstat(fd)
        except OSError as exc:
            raise error_for(exc, full) from exc
    finally:
        os.close(fd)
    if not listed(after):
        raise changed_error(full)
    return h.hexdigest()


def _run_pool(
    run: Callable[[_Task], tuple[_Task, str]],
    tasks: list[_Task],
    workers: int,
    stop: threading.Event,
) -> list[tuple[_Task, str]]:
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ml-integrity-shard")
    futures: list[Future[tuple[_Task, str]]] = []
    try:
        futures = [executor.submit(run, t) for t in tasks]
        wait(futures, return_when=FIRST_EXCEPTION)
        for future in futures:
            if future.done() and not future.cancelled():
                exc = future.exception()
                if exc is not None and not isinstance(exc, Cancelled):
                    raise exc
        return [f.result() for f in futures]
    finally:
        stop.set()
        executor.shutdown(wait=True, cancel_futures=True)
