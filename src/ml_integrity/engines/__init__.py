"""Hashing engines: who reads and hashes the files of a streamed manifest.

An engine implements :class:`ml_integrity.core.streaming.Engine`: it takes the
canonical-order stream of files that :func:`ml_integrity.core.streaming.walk`
yields and returns the records (path, size, digest, format) in the same order,
the digest SHA-256 unless another algorithm is asked for.

- :mod:`~ml_integrity.engines.threads` (the default): small files read and
  hashed with the fewest system calls, larger ones on a thread pool through
  :func:`ml_integrity.core.hashing.hash_files` (and its stat cache). For a
  written manifest it also runs :mod:`~ml_integrity.engines.tree`: helper
  processes list, hash and format whole directories.
- :mod:`~ml_integrity.engines.dask` (``--engine dask``): partitions of files,
  grouped by directory and size, hashed on a Dask distributed cluster (a
  ``LocalCluster`` of worker processes when no scheduler is given); the client
  merges the workers' sorted partial lists. It also hashes the shards of
  ``sign --shard-size`` (:mod:`~ml_integrity.engines.dask_shards`, a
  :class:`~ml_integrity.core.hashing_shards.ShardHasher`). ``dask[distributed]``
  is the optional extra ``ml-integrity[dask]``, imported only by these two
  modules.

:func:`make_engine` is the entry points' one way to get one
(:func:`make_shard_hasher` for shards). The signing key
never reaches an engine: engines only hash.

Layer: an adapter beside ``trust`` and ``scan``; it may import ``core`` and
``errors`` only, and ``core`` never imports it (the entry point injects it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ml_integrity.core.hashing_shards import ShardHasher
    from ml_integrity.core.streaming import Engine

__all__ = ["ENGINES", "make_engine", "make_shard_hasher"]

ENGINES = ("threads", "dask")


def make_engine(
    name: str,
    *,
    workers: int | None = None,
    rehash: bool = False,
    use_cache: bool = True,
    scheduler: str | None = None,
) -> Engine:
    """The engine called ``name`` ("threads" or "dask")."""
    if name == "threads":
        from ml_integrity.engines.threads import ThreadEngine

        return ThreadEngine(workers=workers, rehash=rehash, use_cache=use_cache)
    if name == "dask":
        from ml_integrity.engines.dask import DaskEngine

        return DaskEngine(scheduler=scheduler, workers=workers)
    from ml_integrity.errors import UsageError

    raise UsageError(f"unknown engine {name!r}", hint=f"choose one of {', '.join(ENGINES)}")


def make_shard_hasher(
    name: str, *, workers: int | None = None, scheduler: str | None = None
) -> ShardHasher | None:
    """Who hashes ``sign --shard-size``'s shards: None for "threads" (the
    in-process default, :func:`ml_integrity.core.hashing.hash_shards`), the
    Dask engine for "dask"."""
    if name == "threads":
        return None
    if name == "dask":
        from ml_integrity.engines.dask import DaskEngine

        return DaskEngine(scheduler=scheduler, workers=workers)
    from ml_integrity.errors import UsageError

    raise UsageError(f"unknown engine {name!r}", hint=f"choose one of {', '.join(ENGINES)}")
