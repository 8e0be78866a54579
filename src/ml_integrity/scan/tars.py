"""Tar members, read by ``tarfile`` itself: every member it would extract as a file.

``tarfile`` extracts regular members (``0``, ``\\0``, ``7``, GNU sparse) and
members of a type it does not know (``makeunknown`` writes them as regular
files) with their data; hard links copy another member, which is scanned in
its own right. The archive is opened as ``torch.load`` opens legacy tars
(mode ``r:``); iteration ends where ``tarfile`` ends it.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ml_integrity.scan.readers import FileReader, ParseError
from ml_integrity.scan.records import Value

if TYPE_CHECKING:
    import tarfile

__all__ = ["TarMember", "is_tar", "iter_tar"]


class TarMember(Value):
    __slots__ = ("name", "reader", "size")

    def __init__(self, name: str, size: int, reader: FileReader) -> None:
        self.name = name
        self.size = size
        self.reader = reader


class _Region(io.RawIOBase):
    """A read-only, seekable file object over a :class:`FileReader` region."""

    def __init__(self, r: FileReader) -> None:
        self._r = r
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._r.length}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._r.read_at(self._pos, len(b))
        b[: len(data)] = data
        self._pos += len(data)
        return len(data)


def _extracts_as_file(m: tarfile.TarInfo) -> bool:
    import tarfile

    return m.isreg() or m.type not in tarfile.SUPPORTED_TYPES


def _checksum_ok(h: bytes) -> bool:
    """tarfile's first test of a header block (``nti`` of the checksum field, both sums)."""
    field = h[148:156]
    try:
        if field[:1] in (b"\x80", b"\xff"):
            return True  # base-256: let tarfile decide
        text = field.split(b"\0", 1)[0].strip()
        chk = int(text or b"0", 8)
    except ValueError:
        return False
    unsigned = sum(h[:148]) + 256 + sum(h[156:512])
    signed = unsigned - 256 * sum(1 for b in h[:148] + h[156:512] if b > 127)
    return chk in (unsigned, signed)


def is_tar(reader: FileReader) -> bool:
    """Does ``tarfile.open(mode="r:")`` accept this stream?"""
    if reader.length < 512 or not _checksum_ok(reader.read_at(0, 512)):
        return False
    import tarfile

    try:
        with tarfile.open(fileobj=_Region(reader), mode="r:") as tf:
            return bool(tf.getmembers()[:1])
    except (tarfile.TarError, OSError, ValueError, EOFError):
        return False


def iter_tar(reader: FileReader) -> Iterator[TarMember]:
    """Members ``tarfile`` would extract as files, each with a reader over its data."""
    import tarfile

    try:
        with tarfile.open(fileobj=_Region(reader), mode="r:") as tf:
            for m in tf:
                if not _extracts_as_file(m):
                    continue
                if m.sparse:
                    f = tf.extractfile(m)
                    assert f is not None
                    data = f.read(512 << 20)
                    from ml_integrity.scan.readers import BytesReader

                    yield TarMember(m.name, len(data), BytesReader(data))
                    continue
                if m.offset_data + m.size > reader.length:
                    raise ParseError(f"tar member {m.name!r} runs past the end of the archive")
                yield TarMember(
                    m.name, m.size, FileReader(reader._f, reader._start + m.offset_data, m.size)
                )
    except (tarfile.TarError, EOFError) as exc:
        raise ParseError(f"tar archive does not parse: {exc}") from None
