"""A binary file object that hashes what it reads and withholds the last chunk.

:class:`VerifiedReader` reads its source in chunks, feeds every chunk to
the bundle's hash (SHA-256 by default; see :mod:`.items`) as it arrives and
hands bytes to the caller, except the chunk read last: that one is held
back until the source is exhausted and the digest (and size) match what
was signed. A reader of a tampered file therefore gets
an :class:`~ml_integrity.errors.IntegrityError` and never the end of the file,
and a file no bigger than one chunk is verified whole before its first byte
is returned.

When the stat cache vouches for a file (``hashing=False``), the reader does
not hash; it checks instead that the file's stat key after the last read is
the one the cache matched, and still withholds the last chunk until then.

Sources are plain file descriptors (:class:`FdSource`) or any object with
``read(n)`` and ``close()`` (a decrypting stream, see ``dataset.py``).
:func:`open_item`, :func:`read_upto` and :func:`check_present` are the
dataset's own opening, whole-item reading and presence check.
"""

from __future__ import annotations

import collections
import errno
import hashlib
import io
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from ml_integrity.core.hashing_algorithms import Hasher
from ml_integrity.errors import IntegrityError, ManifestDiff, OperationalError

O_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_BINARY", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
)
"""How items are opened: read-only, never through a symbolic link, never blocking."""

CHUNK_SIZE = 1 << 20
"""Bytes per read of the source (1 MiB), and so the most that is withheld."""


class Source(Protocol):
    """Where a reader's bytes come from."""

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes; ``b""`` at the end."""
        ...

    def finish(self) -> None:
        """Called once the end was reached: raise if the source changed meanwhile."""
        ...

    def close(self) -> None: ...


def stat_key(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class FdSource:
    """A regular file, opened by the caller; reads stop at the size it had when opened."""

    def __init__(self, fd: int, st: os.stat_result, name: str) -> None:
        self.fd = fd
        self.st = st
        self.name = name
        self.remaining = st.st_size
        self.after: os.stat_result | None = None

    def read(self, n: int) -> bytes:
        if self.remaining <= 0:
            return b""
        try:
            data = os.read(self.fd, min(n, self.remaining))
        except OSError as exc:
            raise OperationalError(f"cannot read: {exc.strerror}", path=self.name) from None
        self.remaining -= len(data)
        if not data:
            self.remaining = -1  # shorter than it was when opened
        return data

    def finish(self) -> None:
        self.after = os.fstat(self.fd)
        if self.remaining < 0 or stat_key(self.after) != stat_key(self.st):
            raise IntegrityError(
                "the item changed while it was read",
                path=self.name,
                hint="something is writing the dataset; let it finish, then read again",
            )

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class VerifiedReader(io.BufferedIOBase):
    """Read-only, non-seekable binary file object over a verified item.

    ``expected`` is what ``hasher`` (default: SHA-256) must give as its
    ``hexdigest()`` (the bundle's algorithm, or for shards the shard list:
    :mod:`.items`); with ``accept`` instead, the digest is accepted when
    ``accept(digest)`` is true (an allowed unsigned item). ``on_verified(digest,
    size)`` is called once, after the digest matched. ``hashing=False`` trusts
    the stat cache (see the module doc).
    """

    def __init__(
        self,
        source: Source,
        *,
        name: str,
        expected: str | None,
        accept: Callable[[str], bool] | None = None,
        expected_size: int | None = None,
        hashing: bool = True,
        on_verified: Callable[[str, int], None] | None = None,
        chunk_size: int = CHUNK_SIZE,
        hasher: Hasher | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self._source = source
        self._expected = expected
        self._accept = accept
        self._expected_size = expected_size
        self._hash: Hasher | None = None
        if hashing:
            self._hash = hasher if hasher is not None else hashlib.sha256()
        self._on_verified = on_verified
        self._chunk = chunk_size
        self._chunks: collections.deque[bytes] = collections.deque()
        self._offset = 0  # into the first chunk
        self._buffered = 0  # bytes in the chunks, minus the offset
        self._held = 0  # the chunk read last, withheld until verified
        self._total = 0
        self._verified = False
        self._error: IntegrityError | None = None

    # --- io.BufferedIOBase ----------------------------------------------------

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return False

    @property
    def verified(self) -> bool:
        """True once the whole item was read and its digest matched."""
        return self._verified

    def read(self, size: int | None = -1) -> bytes:
        self._check_open()
        if size is None or size < 0:
            self._fill(None)
            return self._take(self._buffered)
        if size == 0:
            return b""
        self._fill(size)
        return self._take(min(size, self._deliverable()))

    def read1(self, size: int = -1) -> bytes:
        return self.read(size if size >= 0 else self._chunk)

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        n = len(data)
        memoryview(buffer).cast("B")[:n] = data
        return n

    def readinto1(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        return self.readinto(buffer)

    def close(self) -> None:
        if not self.closed:
            try:
                self._source.close()
            finally:
                self._chunks.clear()
                super().close()

    # --- internals -------------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        if self._error is not None:
            raise self._error

    def _deliverable(self) -> int:
        return self._buffered if self._verified else self._buffered - self._held

    def _fill(self, want: int | None) -> None:
        while not self._verified and (want is None or self._deliverable() < want):
            data = self._source.read(self._chunk)
            if not data:
                self._finish()
                return
            if self._hash is not None:
                self._hash.update(data)
            self._chunks.append(data)
            self._buffered += len(data)
            self._held = len(data)
            self._total += len(data)
            if self._expected_size is not None and self._total > self._expected_size:
                self._fail("the item is longer than what was signed")

    def _finish(self) -> None:
        try:
            self._source.finish()
        except IntegrityError as exc:
            self._fail(exc.message, hint=exc.hint)
        if self._expected_size is not None and self._total != self._expected_size:
            self._fail(f"the item has {self._total} bytes, {self._expected_size} were signed")
        if self._hash is None:
            digest = self._expected or ""
        else:
            digest = self._hash.hexdigest()
            ok = digest == self._expected if self._accept is None else self._accept(digest)
            if not ok:
                self._fail("content differs from what was signed (tampered)")
        self._verified = True
        self._held = 0
        if self._on_verified is not None:
            self._on_verified(digest, self._total)

    def _fail(self, message: str, hint: str | None = None) -> None:
        self._chunks.clear()
        self._buffered = self._held = 0
        self._error = IntegrityError(
            message,
            path=self.name,
            diff=ManifestDiff(changed=(self.name,)),
            hint=hint or "the bytes read so far must be discarded; restore the item or re-sign",
        )
        raise self._error

    def _take(self, n: int) -> bytes:
        if n <= 0:
            return b""
        first = self._chunks[0]
        if self._offset == 0 and len(first) == n:  # the common case: no copy
            self._chunks.popleft()
            self._buffered -= n
            return first
        parts: list[bytes] = []
        left = n
        while left:
            first = self._chunks[0]
            avail = len(first) - self._offset
            if avail <= left:
                parts.append(first[self._offset :] if self._offset else first)
                self._chunks.popleft()
                self._offset = 0
                left -= avail
            else:
                parts.append(first[self._offset : self._offset + left])
                self._offset += left
                left = 0
        self._buffered -= n
        return parts[0] if len(parts) == 1 else b"".join(parts)


def read_upto(fd: int, size: int, rel: str, data: bytes | None = None) -> bytes:
    """The file's content: ``size`` bytes, plus at most one more if it grew.

    ``data``: what a first read already returned (the rest is read after it).
    """
    try:
        if data is None:
            data = os.read(fd, size + 1)
        if len(data) < size:
            parts = [data]
            got = len(data)
            while got <= size:
                more = os.read(fd, size + 1 - got)
                if not more:
                    break
                parts.append(more)
                got += len(more)
            data = b"".join(parts)
    except OSError as exc:
        raise OperationalError(f"cannot read: {exc.strerror}", path=rel) from None
    return data


def open_item(prefix: str, rel: str) -> tuple[int, os.stat_result]:
    """Open ``prefix + rel`` (never through a symbolic link) and fstat it; a regular file."""
    try:
        fd = os.open(prefix + rel, O_FLAGS)
    except FileNotFoundError:
        raise IntegrityError(
            "signed item is missing (deleted after the dataset was opened)",
            path=rel,
            diff=ManifestDiff(missing=(rel,)),
            hint="restore the item; a missing item is never skipped in silence",
        ) from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):
            raise IntegrityError(
                "signed item is now a symbolic link, which is never followed",
                path=rel,
                diff=ManifestDiff(changed=(rel,)),
            ) from None
        raise OperationalError(f"cannot open: {exc.strerror}", path=rel) from None
    try:
        st = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        raise OperationalError(f"cannot stat: {exc.strerror}", path=rel) from None
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise IntegrityError(
            "signed item is not a regular file any more",
            path=rel,
            diff=ManifestDiff(changed=(rel,)),
        )
    return fd, st


def check_present(
    root: Path, paths: list[str], sizes: Mapping[str, int], *, name: str, bundle: Path
) -> None:
    """Every signed path is a regular file of its size in ``sizes`` (a stat each, no read).

    Raises IntegrityError naming ``bundle``: it signs another folder (nothing
    there, or ``root`` is not named ``name``), or ``root`` lacks or changed items.
    """
    root_str = os.fspath(root)
    missing: list[str] = []
    changed: list[str] = []
    for rel in paths:
        try:
            st = os.lstat(os.path.join(root_str, rel))
        except OSError:
            missing.append(rel)
            continue
        if not stat.S_ISREG(st.st_mode):
            missing.append(rel)
        elif rel in sizes and sizes[rel] != st.st_size:
            changed.append(rel)
    if not missing and not changed:
        return
    counts = f"{len(changed)} changed, {len(missing)} missing of {len(paths)}"
    if len(missing) == len(paths) or name != root.resolve().name:
        message = (
            f"the bundle signs another folder ({name!r}, {len(paths)} files), not {root} ({counts})"
        )
        hint = "pass the dataset folder this bundle was made for"
    else:
        message = f"{root} does not hold what was signed ({counts})"
        hint = "restore the listed files (a deleted item is never skipped in silence)"
    raise IntegrityError(
        message,
        path=bundle,
        diff=ManifestDiff(
            missing=tuple(sorted(missing)),
            changed=tuple(sorted(changed)),
            notes=dict.fromkeys(changed, "size differs"),
        ),
        hint=hint,
    )
