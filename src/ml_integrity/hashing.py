"""Temporary sequential hashing (replaced by the hashing branch)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import OperationalError


@dataclass(frozen=True)
class FileDigest:
    size: int
    sha256: str


class StatCache:
    @classmethod
    def load(cls, path: Path) -> StatCache:
        return cls()

    def save(self) -> None:
        pass


def default_cache_path(root: Path) -> Path:
    return root / ".cache"


def hash_file(path: Path, *, chunk_size: int = 1 << 20) -> FileDigest:
    h = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as f:
            while chunk := f.read(chunk_size):
                h.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise OperationalError(f"cannot read: {exc.strerror}", path=path) from exc
    return FileDigest(size, h.hexdigest())


def hash_files(
    root: Path,
    paths: Sequence[str],
    *,
    workers: int | None = None,
    cache: StatCache | None = None,
    rehash: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, FileDigest]:
    return {p: hash_file(root / p) for p in paths}
