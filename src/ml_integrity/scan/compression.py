"""Compressed streams, opened the way joblib and numpy open them.

:func:`detect` names the compression a loader would apply from the first
bytes, using joblib's own prefixes (``joblib/compressor.py``): zlib
(``x``), gzip, bz2 (``BZ``), xz, lzma-alone (``]\\x00``, any dictionary
size), lz4 frame, and joblib's old ``ZF`` format (a 19-character hex length,
an optional space, then zlib). :func:`decompressed_chunks` decompresses with
an output budget: past it, :class:`DecompressionLimitError` (not scanned).
A stream that does not even start to decompress is not that compression
(the loader fails before unpickling anything); corruption after some output
ends the stream there, since a streaming loader has unpickled that output.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import Protocol

from ml_integrity.scan.readers import DecompressionLimitError, ParseError, Reader

__all__ = ["FORMATS", "decompressed_chunks", "detect", "zip_member_chunks"]

FORMATS = ("gzip", "bzip2", "xz", "lzma", "zlib", "lz4", "joblib-zf")
_LZ4_MAGIC = b"\x04\x22\x4d\x18"
_ZF_HEADER = 2 + 19  # b"ZF" + len(hex(2**64)), as joblib's read_zfile reads it
_STEP = 1 << 20


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...


def detect(head: bytes) -> str | None:
    """The compression joblib (or gzip/bz2/lzma/zlib users) would apply to this stream."""
    if head.startswith(b"ZF"):
        return "joblib-zf"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZ"):
        return "bzip2"
    if head.startswith(b"\xfd7zXZ"):
        return "xz"
    if head.startswith(b"\x5d\x00"):
        return "lzma"
    if head.startswith(_LZ4_MAGIC):
        return "lz4"
    if head.startswith(b"\x78"):
        return "zlib"
    return None


class _Lz4:
    """lz4 frames through the ``lz4`` package (joblib's own dependency for lz4)."""

    def __init__(self) -> None:
        try:
            import lz4.frame  # type: ignore[import-not-found,import-untyped,unused-ignore]
        except ImportError:
            raise DecompressionLimitError(
                "lz4 stream: the lz4 package is not installed, so it cannot be decompressed"
            ) from None
        self._d = lz4.frame.LZ4FrameDecompressor()

    @property
    def eof(self) -> bool:
        return bool(self._d.eof)

    @property
    def unused_data(self) -> bytes:
        return bytes(self._d.unused_data or b"")

    @property
    def needs_input(self) -> bool:
        return bool(self._d.needs_input)

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        return bytes(self._d.decompress(data, max_length))


def _new(fmt: str) -> object:
    import bz2
    import lzma

    if fmt == "gzip":
        return zlib.decompressobj(wbits=31)
    if fmt in ("zlib", "joblib-zf"):
        return zlib.decompressobj()
    if fmt == "bzip2":
        return bz2.BZ2Decompressor()
    if fmt == "xz":
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    if fmt == "lzma":
        return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE)
    if fmt == "lz4":
        return _Lz4()
    raise ValueError(f"not a compression format: {fmt}")


_ZLIB_TYPE = type(zlib.decompressobj())


def _drain(d: object, data: bytes) -> Iterator[bytes]:
    if isinstance(d, _ZLIB_TYPE):
        out = d.decompress(data, _STEP)
        yield out
        while not d.eof and (d.unconsumed_tail or len(out) == _STEP):
            out = d.decompress(d.unconsumed_tail, _STEP)
            yield out
    else:
        yield d.decompress(data, _STEP)  # type: ignore[attr-defined]
        while not d.eof and not d.needs_input:  # type: ignore[attr-defined]
            yield d.decompress(b"", _STEP)  # type: ignore[attr-defined]


def _checked(d: object, data: bytes, what: str, produced: list[int]) -> Iterator[bytes]:
    """Decompressor output; an error before any output is a ParseError (not this format)."""
    try:
        for out in _drain(d, data):
            produced[0] += len(out)
            yield out
    except Exception as exc:  # zlib.error, LZMAError, OSError, EOFError, ...: the stream ends
        if not produced[0]:
            raise ParseError(f"not a valid {what} stream: {exc}") from None
        return  # a streaming loader has read everything up to the corruption


_MEMBER_MAGIC = {"gzip": b"\x1f\x8b", "bzip2": b"BZh", "xz": b"\xfd7zXZ\x00", "lz4": _LZ4_MAGIC}


def decompressed_chunks(fmt: str, source: Reader, cap: int) -> Iterator[bytes]:
    """Decompress ``source`` (every member of multi-member streams) within ``cap`` bytes."""
    return _capped(_members(fmt, source), cap, f"{fmt} output")


def _members(fmt: str, source: Reader) -> Iterator[bytes]:
    if fmt == "joblib-zf":
        head = source.read_exact(_ZF_HEADER, "joblib ZF header")
        try:
            int(head[2:], 16)
        except ValueError:
            raise ParseError("joblib ZF header without a hex length") from None
        if source.peek(1) == b" ":
            source.skip(1)
    d = _new(fmt)
    produced = [0]
    data = source.read(_STEP)
    if not data:
        raise ParseError(f"empty {fmt} stream")
    while True:
        yield from _checked(d, data, fmt, produced)
        if not getattr(d, "eof", False):
            data = source.read(_STEP)
            if not data:
                return  # truncated: the loader stops here too, after this output
            continue
        magic = _MEMBER_MAGIC.get(fmt)
        if magic is None:
            return
        rest = getattr(d, "unused_data", b"")
        while True:
            if fmt == "gzip":
                rest = rest.lstrip(b"\0")
            if len(rest) >= len(magic):
                break
            more = source.read(_STEP)
            if not more:
                break
            rest += more
        if not rest.startswith(magic):
            return
        d = _new(fmt)
        data = rest


def zip_member_chunks(reader: Reader, method: int, cap: int) -> Iterator[bytes]:
    """Decompress one zip entry (deflate, bzip2, lzma) within ``cap`` bytes.

    An unsupported method is a :class:`ParseError` here, before any data is read.
    """
    if method not in (8, 12, 14):
        raise ParseError(f"unsupported zip compression method {method}")
    return _capped(_zip_member(reader, method), cap, "zip entry output")


def _zip_member(reader: Reader, method: int) -> Iterator[bytes]:
    import bz2
    import lzma

    d: object
    if method == 8:
        d = zlib.decompressobj(-15)
    elif method == 12:
        d = bz2.BZ2Decompressor()
    else:  # 14: lzma, with its own small header
        head = reader.read_exact(4, "zip lzma header")
        (psize,) = struct.unpack_from("<H", head, 2)
        props = reader.read_exact(psize, "zip lzma properties")
        if len(props) < 5:
            raise ParseError("invalid zip lzma properties")
        filt = {
            "id": lzma.FILTER_LZMA1,
            "dict_size": struct.unpack_from("<I", props, 1)[0],
            "lc": props[0] % 9,
            "lp": (props[0] // 9) % 5,
            "pb": props[0] // 45,
        }
        d = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=[filt])
    produced = [0]
    while True:
        data = reader.read(_STEP)
        if not data:
            return  # a truncated entry ends where its data ends, as streaming readers see it
        yield from _checked(d, data, "compressed zip entry", produced)
        if getattr(d, "eof", False):
            return


def _capped(chunks: Iterator[bytes], cap: int, what: str) -> Iterator[bytes]:
    """The non-empty ``chunks``; :class:`DecompressionLimitError` past ``cap`` bytes in all."""
    total = 0
    for out in chunks:
        total += len(out)
        if total > cap:
            raise DecompressionLimitError(f"{what} exceeds the cap of {cap} bytes")
        if out:
            yield out
