"""Directory jobs: helper processes list, hash and format whole directories.

The fastest way found to write the manifest of a tree of many small files on
one machine (``manifest DIR --output``). A job is one directory: a helper
process lists it (:func:`ml_integrity.core.streaming.list_entries`, the walk's
own rules and refusals), hashes its small files
(:func:`ml_integrity.engines.threads.hash_small`) and returns them already
formatted as manifest entries, in order, with its subdirectories marked in
their places. This process only stitches the pieces together in canonical
order and submits the subdirectories' jobs ahead (a bounded number in
flight), so its per-file work is nearly nothing and the helpers run on every
core. Large or odd files come back as such and are hashed here through
:func:`ml_integrity.core.hashing.hash_files` (threads, the stat cache, the
errors with their hints), a window at a time. A directory of more than
:data:`JOB_MAX_FILES` files is walked here instead, in bounded memory.

The first :data:`FORK_AFTER_FILES` files are handled in this process, so a
small folder never starts a helper.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ml_integrity.core import streaming
from ml_integrity.engines.forked import fork_pool, stop_pool
from ml_integrity.errors import Error, ManifestError, OperationalError, UsageError

__all__ = ["FORK_AFTER_FILES", "JOB_MAX_FILES", "TreeRunner", "dir_job"]

JOB_MAX_FILES = 20_000
FORK_AFTER_FILES = 4096
WINDOW = 4096

Item = tuple[Any, ...]
Chunk = tuple[str, int, int]
_ERRORS: dict[str, type[Error]] = {
    "ManifestError": ManifestError,
    "OperationalError": OperationalError,
    "UsageError": UsageError,
}
_buffer: memoryview | None = None


def dir_job(job: tuple[str, str, frozenset[str], str]) -> list[Item]:
    """Run in a helper: one directory's items, in canonical order (see the module doc)."""
    from ml_integrity.engines.threads import SMALL_FILE, hash_small

    global _buffer
    if _buffer is None:
        _buffer = memoryview(bytearray(SMALL_FILE))
    buf = _buffer
    directory, prefix, ignored, root_real = job
    items: list[Item] = []
    texts: list[str] = []
    files = size = 0
    seen = 0
    text = streaming.entry_text

    def flush() -> None:
        nonlocal texts, files, size
        if texts:
            items.append(("t", ",\n".join(texts), files, size))
            texts, files, size = [], 0, 0

    dfd = -1
    try:
        entries = streaming.list_entries(
            directory, prefix, set(ignored), allow_symlinks=False, root_real=root_real
        )
        cut = len(directory) + 1
        for is_dir, rel, full in entries:
            if is_dir:
                flush()
                items.append(("d", full, rel))
                continue
            seen += 1
            if seen > JOB_MAX_FILES:
                return [("big",)]
            if dfd < 0:
                dfd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            got = hash_small(full[cut:], buf, False, dir_fd=dfd)
            if got is None:
                flush()
                items.append(("l", rel, full))
                continue
            texts.append(text(rel, got[0], got[1], got[2]))
            files += 1
            size += got[0]
        flush()
    except Error as exc:
        flush()
        name = type(exc).__name__ if type(exc).__name__ in _ERRORS else "OperationalError"
        items.append(("e", name, exc.message, exc.path, exc.hint))
    except OSError as exc:  # the directory itself could not be opened
        flush()
        items.append(("e", "OperationalError", f"cannot open: {exc.strerror}", directory, None))
    finally:
        if dfd >= 0:
            os.close(dfd)
    return items


class _Done:
    """A job run in this process, with the interface of a ``Future``."""

    def __init__(self, value: list[Item]) -> None:
        self.value = value

    def result(self) -> list[Item]:
        return self.value


class TreeRunner:
    """Runs directory jobs over a tree and yields the manifest's entry chunks."""

    def __init__(
        self,
        root: Path,
        ignore: list[str] | tuple[str, ...],
        *,
        processes: int,
        careful: Callable[[list[tuple[str, str]]], dict[str, tuple[int, str, str | None]]],
    ) -> None:
        self.root = root
        self.ignore = tuple(ignore)
        self.ignored = frozenset(streaming.ignored_set(ignore))
        self.root_real = os.path.realpath(root)
        self.processes = processes
        self.careful = careful
        self.pool: Any = None
        self.in_flight = 0
        self.files = 0

    def _submit(self, directory: str, prefix: str) -> Any:
        job = (directory, prefix, self.ignored, self.root_real)
        if self.pool is None and self.files >= FORK_AFTER_FILES and self.processes > 1:
            self.pool = fork_pool(self.processes)
        if self.pool is None:
            items = dir_job(job)
            self.files += sum(i[2] if i[0] == "t" else 1 for i in items if i[0] in "tl")
            return _Done(items)
        self.in_flight += 1
        return self.pool.submit(dir_job, job)

    def chunks(self) -> Iterator[Chunk]:
        ok = False
        try:
            first = self._submit(os.fspath(self.root), "")
            yield from self._window(self._slots(first, os.fspath(self.root), ""))
            ok = True
        finally:
            if self.pool is not None:
                stop_pool(self.pool, ok=ok)

    def _slots(self, future: Any, directory: str, prefix: str) -> Iterator[Item]:
        items = future.result()
        if not isinstance(future, _Done):
            self.in_flight -= 1
        if items == [("big",)]:
            for f in streaming.walk(self.root, ignore=self.ignore, start=(directory, prefix)):
                yield ("l", f.rel, f.full)
            return
        # the subdirectories' jobs go out ahead of their turn, topped up as each is
        # taken, so the helpers always have work (at most ``limit`` results held)
        subdirs = [i for i in items if i[0] == "d"]
        ahead: dict[int, Any] = {}
        nxt = 0
        limit = 4 * self.processes

        def top_up() -> None:
            nonlocal nxt
            while nxt < len(subdirs) and self.pool is not None and self.in_flight < limit:
                ahead[nxt] = self._submit(subdirs[nxt][1], subdirs[nxt][2])
                nxt += 1

        index = 0
        for item in items:
            kind = item[0]
            if kind == "d":
                top_up()
                future = ahead.pop(index, None)
                if future is None:
                    future = self._submit(item[1], item[2])
                    nxt = max(nxt, index + 1)
                index += 1
                yield from self._slots(future, item[1], item[2])
            elif kind == "e":
                _, name, message, path, hint = item
                raise _ERRORS[name](message, path=path, hint=hint)
            else:
                yield item

    def _window(self, slots: Iterator[Item]) -> Iterator[Chunk]:
        """Pass formatted chunks through; hash the files left for the careful path a
        window at a time (in parallel, with the stat cache), keeping the order."""
        held: list[Item] = []
        large: list[tuple[str, str]] = []
        for slot in slots:
            if slot[0] == "t" and not held:
                yield slot[1], slot[2], slot[3]
                continue
            held.append(slot)
            if slot[0] == "l":
                large.append((slot[1], slot[2]))
            if len(large) >= WINDOW or len(held) >= WINDOW:
                yield from self._release(held, large)
                held, large = [], []
        yield from self._release(held, large)

    def _release(self, held: list[Item], large: list[tuple[str, str]]) -> Iterator[Chunk]:
        if not held:
            return
        done = self.careful(large) if large else {}
        for slot in held:
            if slot[0] == "t":
                yield slot[1], slot[2], slot[3]
            else:
                size, digest, fmt = done[slot[1]]
                yield streaming.entry_text(slot[1], size, digest, fmt), 1, size
