"""The folder walk: every file under the paths given, and every folder it will not enter.

Nothing is skipped in silence:

- a symbolic link to a folder is followed when its target is inside the
  scanned root (once: cycles end), and refused (reported as not scanned)
  when it leads out of the root;
- a ``.git`` folder below the root is refused (its content is a Git object
  store, not files a loader opens); only the root's own ``.git``, the
  repository's metadata, is reported as skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from ml_integrity.errors import UsageError
from ml_integrity.scan.records import Value

__all__ = ["Item", "iter_files", "path_of", "walk"]


class Item(Value):
    """A file to scan, or a folder refused (a finding) or skipped by design (reported)."""

    __slots__ = ("path", "refused", "skipped")

    def __init__(self, path: Path, refused: str | None = None, skipped: str | None = None) -> None:
        self.path = path
        self.refused = refused
        self.skipped = skipped


def path_of(p: str | Path) -> str:
    return p.as_posix() if isinstance(p, Path) else Path(p).as_posix()


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _walk_dir(top: Path, root: Path, real_root: str, seen: set[str]) -> Iterator[Item]:
    try:
        entries = sorted(os.scandir(top), key=lambda e: e.name)
    except OSError as exc:
        yield Item(top, refused=f"folder could not be read: {exc.strerror or exc}")
        return
    for e in entries:
        p = Path(e.path)
        try:
            is_dir = e.is_dir(follow_symlinks=True)
        except OSError:
            is_dir = False
        if not is_dir:
            if e.is_file(follow_symlinks=True):
                yield Item(p)
            elif e.is_symlink():
                yield Item(p, refused="symbolic link to nothing that can be read")
            continue
        if e.name == ".git":
            if top == root:
                yield Item(p, skipped="the repository's own .git folder (metadata) is not scanned")
            else:
                yield Item(
                    p,
                    refused="a .git folder below the scanned root is not scanned (its objects "
                    "are not files a loader opens); check out or remove it",
                )
            continue
        real = os.path.realpath(p)
        if e.is_symlink() and not _inside(real, real_root):
            yield Item(p, refused=f"symbolic link to a folder outside the scanned root ({real})")
            continue
        if real in seen:
            continue  # a link back into a folder already walked
        seen.add(real)
        yield from _walk_dir(p, root, real_root, seen)


def walk(paths: Iterable[str | Path]) -> Iterator[Item]:
    """Files and refused/skipped folders under ``paths``, in sorted order.

    A path that does not exist is a :class:`UsageError`.
    """
    for raw in paths:
        p = Path(raw)
        if not p.exists() and not p.is_symlink():
            raise UsageError("no such file or directory", path=raw, hint="check the path")
        if p.is_dir():
            real = os.path.realpath(p)
            yield from _walk_dir(p, p, real, {real})
        elif p.is_file():
            yield Item(p)
        else:
            yield Item(p, refused="not a regular file")


def iter_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Every file under ``paths`` (see :func:`walk`)."""
    for item in walk(paths):
        if item.refused is None and item.skipped is None:
            yield item.path
