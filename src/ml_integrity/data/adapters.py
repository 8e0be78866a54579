"""Framework adapters: a PyTorch map-style dataset and tar-style shard streams.

Neither imports its framework: :class:`TorchDataset` has the ``__len__`` and
``__getitem__`` that ``torch.utils.data.DataLoader`` needs (a map-style
dataset need not subclass ``torch.utils.data.Dataset``), and
:class:`ShardStreams` yields the ``{"url", "stream"}`` dicts that WebDataset's
``tarfile_to_samples`` consumes, or samples grouped by key with
:func:`tar_samples`. With DataLoader workers, each worker re-opens (and
re-verifies) the bundle on first use and its journal records are merged into
the parent's journal (see :mod:`.dataset` and :mod:`.journal`); an item a
worker refuses reaches the parent as the same error class, naming the item.
"""

from __future__ import annotations

import io
import sys
import tarfile
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any, Generic, TypeVar

from ml_integrity.data.dataset import VerifiedDataset
from ml_integrity.errors import Error, IntegrityError

__all__ = ["ShardStreams", "TorchDataset", "tar_samples"]

T = TypeVar("T")


class TorchDataset(Generic[T]):
    """A map-style dataset over the items of a :class:`VerifiedDataset`.

    ``dataset[i]`` is ``transform(path, content)`` of the i-th signed item
    (``paths`` selects and orders them; default: every allowed item), or the
    verified bytes without a transform. Picklable: spawned workers re-verify.
    ``DataLoader`` (torch 2) fetches a batch through ``__getitems__``, which
    hands the batch's items to :meth:`VerifiedDataset.prefetch` first.
    """

    def __init__(
        self,
        dataset: VerifiedDataset,
        transform: Callable[[str, bytes], T] | None = None,
        *,
        paths: Sequence[str] | None = None,
    ) -> None:
        self.dataset = dataset
        self.transform = transform
        self.paths = list(dataset.files if paths is None else paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> T | bytes:
        path = self.paths[index]
        try:
            data = self.dataset.read_bytes(path)
        except Error as exc:
            raise _for_the_parent(exc) from None
        return data if self.transform is None else self.transform(path, data)

    def __getitems__(self, indices: Sequence[int]) -> list[T | bytes]:
        """A batch, as ``DataLoader`` asks for it: the sampler's indices, read ahead in order."""
        paths = [self.paths[i] for i in indices]
        read = self.dataset.read_bytes
        transform = self.transform
        try:
            self.dataset.prefetch(paths)
            if transform is None:
                return [read(p) for p in paths]
            return [transform(p, read(p)) for p in paths]
        except Error as exc:
            raise _for_the_parent(exc) from None


def _for_the_parent(exc: Error) -> Error:
    """In a ``DataLoader`` worker, ``exc`` with its path in its text.

    The DataLoader re-raises a worker's exception in the parent as the same
    class built from the worker's traceback text: the ``path`` attribute is
    lost there, so the message the traceback shows must name the item.
    """
    torch_data = sys.modules.get("torch.utils.data")
    if torch_data is not None and torch_data.get_worker_info() is not None and exc.path:
        exc.args = (f"{exc.path}: {exc.message}",)
    return exc


def _worker_slice(items: list[str]) -> list[str]:
    """The share of ``items`` of this DataLoader worker (all of them outside one)."""
    torch_data = sys.modules.get("torch.utils.data")
    if torch_data is None:
        return items
    info = torch_data.get_worker_info()
    if info is None:
        return items
    return items[info.id :: info.num_workers]


class ShardStreams:
    """Verified file objects of tar-style shards, in order (an iterable; re-iterable).

    ``whole=True`` (default) verifies each shard completely before any byte
    of it is handed out (the shard is read into memory once). ``whole=False``
    streams it through the dataset's reader: bytes flow as they are hashed and
    the last chunk is withheld until the digest matched, so a tampered shard
    raises :class:`IntegrityError` before its end, but after earlier samples
    were yielded. In DataLoader workers the shards are split between workers.
    """

    def __init__(
        self,
        dataset: VerifiedDataset,
        shards: Sequence[str] | None = None,
        *,
        suffixes: Sequence[str] = (".tar",),
        whole: bool = True,
    ) -> None:
        self.dataset = dataset
        self.whole = whole
        if shards is None:
            shards = [p for p in dataset.files if p.endswith(tuple(suffixes))]
        self.shards = list(shards)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for shard in _worker_slice(self.shards):
            stream: IO[bytes]
            if self.whole:
                stream = io.BytesIO(self.dataset.read_bytes(shard))
            else:
                stream = self.dataset.open(shard)
            try:
                yield {"url": shard, "stream": stream}
            finally:
                stream.close()

    def samples(self) -> Iterator[dict[str, Any]]:
        """Samples grouped by key (``{"__key__", "__url__", ext: bytes}``) from every shard."""
        for entry in self:
            yield from tar_samples(entry["stream"], url=entry["url"])


def tar_samples(stream: IO[bytes], *, url: str = "") -> Iterator[dict[str, Any]]:
    """WebDataset-style samples of a tar stream: members grouped by name up to the first dot."""
    current: dict[str, Any] | None = None
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                folder, _, base = member.name.rpartition("/")
                key, dot, ext = base.partition(".")
                if not dot:
                    continue
                full_key = f"{folder}/{key}" if folder else key
                f = tar.extractfile(member)
                data = f.read() if f is not None else b""
                if current is not None and current["__key__"] != full_key:
                    yield current
                    current = None
                if current is None:
                    current = {"__key__": full_key, "__url__": url}
                current[ext] = data
    except tarfile.TarError as exc:
        raise IntegrityError(f"not a readable tar shard: {exc}", path=url) from None
    if current is not None:
        yield current
