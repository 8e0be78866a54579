"""Readers: one sequential interface over files, regions and decompressed streams.

The pickle walker and the container code read through :class:`Reader`: a
:class:`FileReader` over a region of a file seeks past what it does not
need; a :class:`StreamReader` over decompressed output reads and drops it.
Errors are :class:`ParseError` (content that does not parse: not trusted)
and :class:`DecompressionLimitError` (output past the budget: not scanned).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import BinaryIO

from ml_integrity.errors import UnsafeArtifactError

__all__ = [
    "BytesReader",
    "DecompressionLimitError",
    "FileReader",
    "ParseError",
    "Reader",
    "StreamReader",
    "SubReader",
]


class ParseError(UnsafeArtifactError):
    """Content that claims a format but cannot be parsed: not trusted (fail closed)."""


class DecompressionLimitError(UnsafeArtifactError):
    """Decompressed output grew past the cap: a possible decompression bomb, not scanned."""


# --- readers ----------------------------------------------------------------


class Reader:
    """Sequential reads with ``skip``; the base of the two concrete readers.

    ``tell()`` is the offset inside the stream the reader covers (for a zip
    entry: inside the entry). Short reads raise :class:`ParseError` through
    :meth:`read_exact`; :meth:`read` returns what is there.
    """

    chunk_size = 1 << 20
    seekable = False

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0
        self._base = 0  # stream offset of self._buf[0]
        self._eof = False

    # subclasses provide more data
    def _more(self, want: int) -> bytes:
        raise NotImplementedError

    def _drop(self, n: int) -> int:
        """Skip ``n`` bytes past the end of the buffer; return how many were skipped."""
        raise NotImplementedError

    def tell(self) -> int:
        return self._base + self._pos

    def _fill(self, n: int) -> bool:
        """Make ``n`` bytes available from the current position, if the stream has them."""
        avail = len(self._buf) - self._pos
        if avail >= n:
            return True
        if self._eof:
            return False
        self._buf = self._buf[self._pos :]
        self._base += self._pos
        self._pos = 0
        while avail < n and not self._eof:
            data = self._more(max(n - avail, self.chunk_size))
            if not data:
                self._eof = True
                break
            self._buf += data
            avail += len(data)
        return avail >= n

    def peek(self, n: int) -> bytes:
        self._fill(n)
        return self._buf[self._pos : self._pos + n]

    def read(self, n: int) -> bytes:
        end = self._pos + n
        if end > len(self._buf):
            self._fill(n)
            end = self._pos + n
        out = self._buf[self._pos : end]
        self._pos += len(out)
        return out

    def read_exact(self, n: int, what: str = "data") -> bytes:
        pos = self._pos
        end = pos + n
        if end <= len(self._buf):
            self._pos = end
            return self._buf[pos:end]
        out = self.read(n)
        if len(out) != n:
            raise ParseError(f"truncated {what} at offset {self.tell()}")
        return out

    def readline(self, limit: int) -> bytes:
        """Read through the next newline (included); ParseError if none within ``limit``."""
        while True:
            i = self._buf.find(b"\n", self._pos, self._pos + limit)
            if i >= 0:
                out = self._buf[self._pos : i + 1]
                self._pos = i + 1
                return out
            have = len(self._buf) - self._pos
            if have >= limit or not self._fill(have + 1):
                raise ParseError(f"unterminated line at offset {self.tell()}")

    def skip(self, n: int) -> None:
        """Move ``n`` bytes forward without keeping them; ParseError past the end."""
        avail = len(self._buf) - self._pos
        if n <= avail:
            self._pos += n
            return
        rest = n - avail
        self._base += len(self._buf)
        self._buf = b""
        self._pos = 0
        skipped = self._drop(rest)
        self._base += skipped
        if skipped != rest:
            self._eof = True
            raise ParseError(f"truncated data: {n} bytes announced at offset {self.tell()}")

    def at_eof(self) -> bool:
        return not self._fill(1)

    def window(self, n: int) -> Reader | None:
        """A reader over the next ``n`` bytes without consuming them (seekable readers only)."""
        return None


class FileReader(Reader):
    """A region ``[start, start+length)`` of an open binary file; skipping seeks."""

    seekable = True
    chunk_size = 64 << 10  # what is skipped is not read: small chunks read less of it

    def __init__(self, f: BinaryIO, start: int = 0, length: int | None = None) -> None:
        super().__init__()
        self._f = f
        self._start = start
        if length is None:
            f.seek(0, 2)
            length = max(0, f.tell() - start)
        self.length = length

    def _more(self, want: int) -> bytes:
        pos = self._base + len(self._buf)
        left = self.length - pos
        if left <= 0:
            return b""
        self._f.seek(self._start + pos)
        return self._f.read(min(want, left))

    def _drop(self, n: int) -> int:
        pos = self._base
        return max(0, min(n, self.length - pos))

    def fresh(self) -> FileReader:
        """A new reader over the same region, at its start."""
        return FileReader(self._f, self._start, self.length)

    def window(self, n: int) -> FileReader | None:
        pos = self.tell()
        if pos + n > self.length:
            return None
        return FileReader(self._f, self._start + pos, n)

    def read_at(self, offset: int, n: int) -> bytes:
        """Random access inside the region (does not move the reader)."""
        if offset < 0 or offset >= self.length:
            return b""
        self._f.seek(self._start + offset)
        return self._f.read(min(n, self.length - offset))


class BytesReader(FileReader):
    """A reader over bytes in memory."""

    def __init__(self, data: bytes) -> None:

        super().__init__(io.BytesIO(data), 0, len(data))


class StreamReader(Reader):
    """A reader over an iterator of chunks (decompressed output); skipping reads and drops."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self._chunks = chunks
        self._pending = b""

    def _more(self, want: int) -> bytes:
        if self._pending:
            out, self._pending = self._pending, b""
            return out
        return next(self._chunks, b"")

    def _drop(self, n: int) -> int:
        done = 0
        while done < n:
            data = self._more(n - done)
            if not data:
                break
            take = min(len(data), n - done)
            if take < len(data):
                self._pending = data[take:]
            done += take
        return done


class SubReader(Reader):
    """The next ``length`` bytes of another reader (which it advances)."""

    def __init__(self, parent: Reader, length: int) -> None:
        super().__init__()
        self._parent = parent
        self._left = length

    def _more(self, want: int) -> bytes:
        data = self._parent.read(min(want, self._left))
        self._left -= len(data)
        return data

    def _drop(self, n: int) -> int:
        take = min(n, self._left)
        before = self._parent.tell()
        try:
            self._parent.skip(take)
        except ParseError:
            pass
        done = self._parent.tell() - before
        self._left -= done
        return done

    def finish(self) -> None:
        """Advance the parent to the end of this region."""
        self._buf = b""
        self._pos = 0
        if self._left:
            self._parent.skip(self._left)
            self._left = 0
