"""The Dask engine: partitions of files hashed on a Dask distributed cluster.

The client (this process) walks the tree in canonical order, ``lstat``\\ s each
file and cuts the stream into partitions of consecutive files: a partition
ends at :data:`PARTITION_FILES` files or :data:`PARTITION_BYTES` bytes, and
once it holds :data:`PARTITION_MIN_FILES` files, at the next change of
directory, so a partition is usually one directory. Each partition is one
task: a worker hashes its files (:func:`hash_partition`) and returns the
sorted partial list ``(path, size, digest, format)`` (SHA-256, or the
algorithm ``sign --hash`` asked for). Partitions are
contiguous ranges of the canonical order, so the client merges the partial
lists by concatenating them in partition order, and writes the same
manifest the threaded engine writes, byte for byte. At most
:data:`IN_FLIGHT_PER_WORKER` partitions per worker are in flight, so the
client's memory does not grow with the tree.

A worker checks that every file still has the (size, mtime, ctime) the
client listed, and that it did not change while it was read; otherwise the
run fails with "changed while it was being hashed". A worker that dies is
replaced and its partitions run again (the scheduler's retries); a partition
that kills every worker it runs on ends the run with an
:class:`~ml_integrity.errors.OperationalError`. Nothing is written then: the
caller writes the manifest to a temporary file and renames it on success.

:meth:`DaskEngine.hash_shards` hashes the shards of ``sign --shard-size``
instead (:mod:`ml_integrity.engines.dask_shards`): the byte ranges of large
files on several workers.

Workers only hash: they get paths, never a key, and the client signs.
``distributed`` is imported when this engine is constructed, never before.
Workers need ``ml-integrity`` installed and the files at the same path
(a shared file system), as any Dask cluster does for its data.
"""

from __future__ import annotations

import collections
import importlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ml_integrity.core import hashing
from ml_integrity.core.hashing_read import ProgressCallback
from ml_integrity.core.hashing_shards import ShardedDigest
from ml_integrity.core.manifest import path_sort_key
from ml_integrity.core.streaming import FileRecord, WalkedFile, sniff_head
from ml_integrity.engines.dask_shards import Range, hash_ranges, run_shards
from ml_integrity.errors import OperationalError, UsageError

__all__ = [
    "IN_FLIGHT_PER_WORKER",
    "PARTITION_BYTES",
    "PARTITION_FILES",
    "DaskEngine",
    "Partition",
    "hash_partition",
]

PARTITION_FILES = 2000
PARTITION_MIN_FILES = 200
PARTITION_BYTES = 256 << 20
IN_FLIGHT_PER_WORKER = 4

Listed = tuple[str, str, int, int, int]  # rel, full path, size, mtime_ns, ctime_ns
Partition = list[Listed]
Outcome = tuple[str, Any]  # ("ok", [records]) or ("error", (message, path, hint))


def _listed_key(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def hash_partition(
    root: str, part: Partition, follow_symlinks: bool, algorithm: str = "sha256"
) -> Outcome:
    """Run on a worker: hash one partition (``algorithm``: SHA-256 unless told).
    Errors come back as values (they name the file and carry a hint), so no
    exception has to cross the wire."""
    from ml_integrity.engines.threads import SMALL_FILE, hash_small

    buf = memoryview(bytearray(SMALL_FILE))
    out: list[tuple[str, int, str, str | None]] = []
    try:
        for rel, full, size, mtime_ns, ctime_ns in part:
            listed = (size, mtime_ns, ctime_ns)
            stat_path = os.stat if follow_symlinks else os.lstat
            got = hash_small(full, buf, follow_symlinks, algorithm=algorithm)
            if got is not None:
                after = stat_path(full)
                if _listed_key(after) != listed:
                    raise hashing_changed(full)
                out.append((rel, got[0], got[1], got[2]))
                continue
            d = hashing.hash_file(Path(full), follow_symlinks=follow_symlinks, algorithm=algorithm)
            after = stat_path(full)
            if _listed_key(after) != listed or d.size != size:
                raise hashing_changed(full)
            out.append((rel, d.size, d.hexdigest, _sniff_path(full)))
    except OperationalError as exc:
        return ("error", (exc.message, exc.path, exc.hint))
    except OSError as exc:
        return ("error", (f"cannot read the file: {exc.strerror or exc}", exc.filename, None))
    out.sort(key=lambda r: path_sort_key(r[0]))
    return ("ok", out)


def hashing_changed(full: str) -> OperationalError:
    return OperationalError(
        "the file changed while it was being hashed",
        path=full,
        hint="wait until whatever writes the file has finished, then run the command again",
    )


def _sniff_path(full: str) -> str | None:
    with open(full, "rb") as f:
        return sniff_head(f.read(512))


def partitions(files: Iterable[WalkedFile], *, follow_symlinks: bool) -> Iterator[Partition]:
    """Cut the canonical stream of files into partitions by directory and size."""
    stat_path = os.stat if follow_symlinks else os.lstat
    part: Partition = []
    part_bytes = 0
    part_dir = ""
    for f in files:
        try:
            st = stat_path(f.full)
        except OSError as exc:
            raise OperationalError(f"cannot stat: {exc.strerror}", path=f.full) from None
        if not stat.S_ISREG(st.st_mode):
            raise OperationalError("not a regular file", path=f.full)
        directory = f.rel.rpartition("/")[0]
        if part and (
            len(part) >= PARTITION_FILES
            or part_bytes + st.st_size > PARTITION_BYTES
            or (len(part) >= PARTITION_MIN_FILES and directory != part_dir)
        ):
            yield part
            part, part_bytes = [], 0
        part.append((f.rel, f.full, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
        part_bytes += st.st_size
        part_dir = directory
    if part:
        yield part


class DaskEngine:
    """Hashes a stream of files on a Dask cluster (see the module docstring).

    ``scheduler`` is the address of a running scheduler; without one, a
    ``LocalCluster`` of ``workers`` worker processes (default: one per CPU,
    one thread each) is started for the run and closed after it. ``task`` is
    the function run per partition (tests wrap it).
    """

    def __init__(
        self,
        *,
        scheduler: str | None = None,
        workers: int | None = None,
        task: Callable[[str, Partition, bool, str], Outcome] = hash_partition,
        shard_task: Callable[[list[Range], str, bool], Outcome] = hash_ranges,
    ) -> None:
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise UsageError(
                "--engine dask needs Dask distributed, which is not installed",
                hint="pip install 'ml-integrity[dask]'",
            ) from None
        self.scheduler = scheduler
        self.workers = workers
        self.task = task
        self.shard_task = shard_task

    def _client(self) -> tuple[Any, Any]:
        distributed: Any = importlib.import_module("distributed")  # untyped: kept as Any
        Client, LocalCluster = distributed.Client, distributed.LocalCluster

        if self.scheduler is not None:
            try:
                return Client(self.scheduler, timeout="30s"), None
            except OSError as exc:
                raise OperationalError(
                    f"cannot reach the Dask scheduler at {self.scheduler}: {exc}",
                    hint="check --scheduler ADDRESS (tcp://host:8786) and that it runs",
                ) from None
        cluster = LocalCluster(
            n_workers=self.workers or os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        return Client(cluster), cluster

    def hash_stream(
        self,
        root: Path,
        files: Iterable[WalkedFile],
        *,
        follow_symlinks: bool,
        algorithm: str = "sha256",
    ) -> Iterator[FileRecord]:
        client, cluster = self._client()
        try:
            yield from self._run(client, root, files, follow_symlinks, algorithm)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()

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
        """``sign --shard-size``: the shards of ``paths`` hashed on the cluster
        (:mod:`ml_integrity.engines.dask_shards`); the same result as
        :func:`ml_integrity.core.hashing.hash_shards`."""
        client, cluster = self._client()
        try:
            return run_shards(
                client,
                self.shard_task,
                root,
                paths,
                shard_size=shard_size,
                algorithm=algorithm,
                follow_symlinks=follow_symlinks,
                progress=progress,
            )
        finally:
            client.close()
            if cluster is not None:
                cluster.close()

    def _run(
        self,
        client: Any,
        root: Path,
        files: Iterable[WalkedFile],
        follow_symlinks: bool,
        algorithm: str,
    ) -> Iterator[FileRecord]:
        from distributed import KilledWorker

        n_workers = max(1, len(client.scheduler_info().get("workers", {})) or 1)
        limit = IN_FLIGHT_PER_WORKER * n_workers
        in_flight: collections.deque[Any] = collections.deque()
        root_str = os.fspath(root)
        parts = partitions(files, follow_symlinks=follow_symlinks)
        try:
            for part in parts:
                in_flight.append(
                    client.submit(self.task, root_str, part, follow_symlinks, algorithm)
                )
                while len(in_flight) >= limit:
                    yield from _records(in_flight.popleft().result())
            while in_flight:
                yield from _records(in_flight.popleft().result())
        except KilledWorker as exc:
            raise OperationalError(
                f"Dask workers died while hashing ({exc}); no manifest was written",
                hint="check the workers' memory and logs, then run again",
            ) from None
        finally:
            for future in in_flight:
                future.cancel()


def _records(outcome: Outcome) -> Iterator[FileRecord]:
    kind, value = outcome
    if kind == "error":
        message, path, hint = value
        raise OperationalError(message, path=path, hint=hint)
    for rel, size, digest, fmt in value:
        yield FileRecord(rel, size, digest, fmt)
