"""Shards on a Dask cluster: the byte ranges of large files hashed on several workers.

``sign --shard-size N --engine dask``: the client (this process) lists the
files and ``stat``\\ s each one (:func:`ml_integrity.core.hashing_shards.plan_shards`,
the threaded engine's own plan), groups the shards into tasks
(:func:`shard_jobs`: consecutive shards of up to :data:`JOB_BYTES` bytes or
:data:`JOB_SHARDS` shards, so one 2 GB file in 256 MiB shards is eight tasks
and a million small files are not a million), and submits them, the biggest
first, at most :data:`IN_FLIGHT_PER_WORKER` per worker at a time. A task
(:func:`hash_ranges`) gets ``(path, size, mtime, ctime, start, end)`` per
shard and returns the hex digests only, in order. The client puts them back
in place (:func:`ml_integrity.core.hashing_shards.assemble`), so the result is
what :func:`ml_integrity.core.hashing.hash_shards` returns for the same files,
and the statement signed from it is the threaded engine's, byte for byte.

A file must show the (size, mtime, ctime) it was listed with when a worker
opens it for a shard and after the shard's last byte (device and inode are
left out: a shared file system may show other numbers on another machine),
and again to the client once every shard is back; otherwise the run fails
with "changed while it was being hashed" and nothing is signed. A digest is
never made of two versions of a file. A dead worker's tasks run again
(the scheduler's retries); a task that kills every worker it runs on ends the
run with an :class:`~ml_integrity.errors.OperationalError`. The signing key
never leaves the client: workers only get paths and offsets.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ml_integrity.core.hashing_read import (
    DEFAULT_CHUNK_SIZE,
    ProgressCallback,
    changed_error,
    error_for,
    new_buffer,
)
from ml_integrity.core.hashing_shards import (
    ShardedDigest,
    assemble,
    check_shard_request,
    hash_range,
    plan_shards,
)
from ml_integrity.errors import OperationalError

__all__ = ["IN_FLIGHT_PER_WORKER", "JOB_BYTES", "JOB_SHARDS", "Range", "hash_ranges", "shard_jobs"]

JOB_BYTES = 64 << 20
"""Consecutive shards are one task up to this many bytes (a bigger shard is a task alone)."""

JOB_SHARDS = 1024
"""... and up to this many shards (many small files, or a tiny --shard-size)."""

IN_FLIGHT_PER_WORKER = 4

Range = tuple[str, int, int, int, int, int]  # full path, size, mtime_ns, ctime_ns, start, end
Outcome = tuple[str, Any]  # ("ok", [hexdigest, ...]) or ("error", (message, path, hint))
_Placed = tuple[str, int, int]  # rel, start, end: where a task's digests go (client side)


def _listed_key(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _is_listed(listed: tuple[int, int, int], st: os.stat_result) -> bool:
    return _listed_key(st) == listed


def hash_ranges(ranges: list[Range], algorithm: str, follow_symlinks: bool) -> Outcome:
    """Run on a worker: the digest of each shard, in order. Errors come back as
    values (they name the file and carry a hint), so no exception crosses the wire."""
    buf = new_buffer(DEFAULT_CHUNK_SIZE)
    out: list[str] = []
    try:
        for full, size, mtime_ns, ctime_ns, start, end in ranges:
            out.append(
                hash_range(
                    full,
                    start,
                    end,
                    functools.partial(_is_listed, (size, mtime_ns, ctime_ns)),
                    buf=buf,
                    algorithm=algorithm,
                    follow_symlinks=follow_symlinks,
                )
            )
    except OperationalError as exc:
        return ("error", (exc.message, exc.path, exc.hint))
    except OSError as exc:
        return ("error", (f"cannot read the file: {exc.strerror or exc}", exc.filename, None))
    return ("ok", out)


Job = tuple[list[Range], list[_Placed], int]  # sent, kept, bytes


def shard_jobs(
    root: Path, paths: Sequence[str], *, shard_size: int, follow_symlinks: bool
) -> tuple[dict[str, int], dict[str, tuple[int, int, int]], list[Job]]:
    """The files' sizes, their listed (size, mtime, ctime), and the tasks, biggest first."""
    sizes, planned = plan_shards(
        root, paths, shard_size=shard_size, follow_symlinks=follow_symlinks
    )
    listed: dict[str, tuple[int, int, int]] = {}
    jobs: list[Job] = []
    sent: list[Range] = []
    kept: list[_Placed] = []
    size = 0
    for rel, full, key, start, end in planned:
        _dev, _ino, fsize, mtime_ns, ctime_ns = key
        listed[rel] = (fsize, mtime_ns, ctime_ns)
        if sent and (size + end - start > JOB_BYTES or len(sent) >= JOB_SHARDS):
            jobs.append((sent, kept, size))
            sent, kept, size = [], [], 0
        sent.append((full, fsize, mtime_ns, ctime_ns, start, end))
        kept.append((rel, start, end))
        size += end - start
    if sent:
        jobs.append((sent, kept, size))
    jobs.sort(key=lambda j: -j[2])  # biggest first: the last task is a small one
    return sizes, listed, jobs


def run_shards(
    client: Any,
    task: Callable[[list[Range], str, bool], Outcome],
    root: Path,
    paths: Sequence[str],
    *,
    shard_size: int,
    algorithm: str,
    follow_symlinks: bool,
    progress: ProgressCallback | None,
) -> dict[str, ShardedDigest]:
    """Hash the shards of ``paths`` on the cluster of ``client`` (see the module doc)."""
    from distributed import KilledWorker

    as_completed = importlib.import_module("distributed").as_completed  # untyped: Any
    check_shard_request(shard_size, algorithm)
    sizes, listed, jobs = shard_jobs(
        root, paths, shard_size=shard_size, follow_symlinks=follow_symlinks
    )
    n_workers = max(1, len(client.scheduler_info().get("workers", {})) or 1)
    limit = IN_FLIGHT_PER_WORKER * n_workers
    total = sum(j[2] for j in jobs)
    done_bytes = 0
    placed: dict[Any, Job] = {}
    results: list[tuple[str, int, int, str]] = []
    pending = iter(jobs)
    running: Any = as_completed()

    def submit() -> None:
        job = next(pending, None)
        if job is not None:
            future = client.submit(task, job[0], algorithm, follow_symlinks, pure=False)
            placed[future] = job
            running.add(future)

    try:
        for _ in range(limit):
            submit()
        for future in running:
            job = placed.pop(future)
            kind, value = future.result()
            if kind == "error":
                message, path, hint = value
                raise OperationalError(message, path=path, hint=hint)
            results.extend(
                (rel, start, end, d) for (rel, start, end), d in zip(job[1], value, strict=True)
            )
            done_bytes += job[2]
            if progress is not None:
                progress(done_bytes, total)
            submit()
    except KilledWorker as exc:
        raise OperationalError(
            f"Dask workers died while hashing ({exc}); nothing was signed",
            hint="check the workers' memory and logs, then run again",
        ) from None
    finally:
        for future in placed:
            future.cancel()
    if progress is not None and not jobs:
        progress(0, 0)
    _check_unchanged(root, listed, follow_symlinks)
    return assemble(sizes, results, algorithm=algorithm, shard_size=shard_size)


def _check_unchanged(
    root: Path, listed: dict[str, tuple[int, int, int]], follow_symlinks: bool
) -> None:
    """The client's own look once every shard is back: each file as it was listed."""
    stat_path = os.stat if follow_symlinks else os.lstat
    root_str = os.fspath(root)
    for rel, key in listed.items():
        full = os.path.join(root_str, rel)
        try:
            st = stat_path(full)
        except OSError as exc:
            raise error_for(exc, full) from None
        if _listed_key(st) != key:
            raise changed_error(full)
