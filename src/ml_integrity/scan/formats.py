"""Format sniffing by content, and the small parsers the scanner needs.

Nothing here trusts a file name: every decision is taken from the bytes.
Nothing here imports, unpickles or executes anything: headers are parsed by
hand (``ast.literal_eval`` for the ``.npy`` header dict, ``json`` for JSON).

The readers (:class:`Reader` and its two kinds) give the pickle walker and
the container code one sequential interface with cheap skipping: a
:class:`FileReader` over a region of a file seeks past what it does not need;
a :class:`StreamReader` over decompressed output reads and drops it, and
stops with :class:`DecompressionLimitError` past a byte cap.
"""

from __future__ import annotations

import ast
import bz2
import json
import lzma
import math
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ml_integrity.core.sniff import HDF5_MAGIC, NPY_MAGIC, Format
from ml_integrity.errors import UnsafeArtifactError

__all__ = [
    "DecompressionLimitError",
    "FileReader",
    "NpyHeader",
    "ParseError",
    "Reader",
    "StreamReader",
    "SubReader",
    "TarMember",
    "ZipEntry",
    "decompressed_chunks",
    "iter_tar",
    "parse_npy_header",
    "read_zip_entries",
    "validate_safetensors",
    "zip_member_chunks",
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
        import io

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


# --- decompression ----------------------------------------------------------


_ZLIB_TYPE = type(zlib.decompressobj())


def _new_decompressor(
    fmt: Format,
) -> zlib._Decompress | bz2.BZ2Decompressor | lzma.LZMADecompressor:
    if fmt is Format.GZIP:
        return zlib.decompressobj(wbits=31)
    if fmt is Format.ZLIB:
        return zlib.decompressobj()
    if fmt is Format.BZIP2:
        return bz2.BZ2Decompressor()
    if fmt is Format.XZ:
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    if fmt is Format.LZMA:
        return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE)
    raise ValueError(f"not a compression format: {fmt.value}")


def _drain(
    d: zlib._Decompress | bz2.BZ2Decompressor | lzma.LZMADecompressor, data: bytes, step: int
) -> Iterator[bytes]:
    if isinstance(d, _ZLIB_TYPE):
        out = d.decompress(data, step)
        yield out
        while not d.eof and (d.unconsumed_tail or len(out) == step):
            out = d.decompress(d.unconsumed_tail, step)
            yield out
    else:
        yield d.decompress(data, step)
        while not d.eof and not d.needs_input:
            yield d.decompress(b"", step)


_MEMBER_MAGIC = {Format.GZIP: b"\x1f\x8b", Format.BZIP2: b"BZh", Format.XZ: b"\xfd7zXZ\x00"}


def decompressed_chunks(fmt: Format, source: Reader, cap: int) -> Iterator[bytes]:
    """Decompress ``source`` (every member of multi-member gzip/bz2/xz) with an output cap.

    Raises :class:`DecompressionLimitError` once more than ``cap`` bytes came
    out, and :class:`ParseError` on corrupt or truncated input. Data after
    the last member that does not start a new member is ignored, as the
    ``gzip``/``bz2``/``lzma`` modules do.
    """
    return _capped(_members(fmt, source), cap, f"{fmt.value} output")


def _members(fmt: Format, source: Reader) -> Iterator[bytes]:
    step = 1 << 20
    d = _new_decompressor(fmt)
    data = source.read(step)
    if not data:
        raise ParseError(f"empty {fmt.value} stream")
    while True:
        yield from _checked_drain(d, data, step, f"corrupt {fmt.value} stream")
        if d.eof:
            if fmt not in _MEMBER_MAGIC:
                return
            magic = _MEMBER_MAGIC[fmt]
            rest = d.unused_data
            while True:
                if fmt is Format.GZIP:
                    rest = rest.lstrip(b"\0")
                if len(rest) >= len(magic):
                    break
                more = source.read(step)
                if not more:
                    break
                rest += more
            if not rest.startswith(magic):
                return
            d = _new_decompressor(fmt)
            data = rest
            continue
        data = source.read(step)
        if not data:
            raise ParseError(f"truncated {fmt.value} stream")


def zip_member_chunks(reader: Reader, method: int, cap: int) -> Iterator[bytes]:
    """Decompress one zip entry's data (deflate, bzip2, lzma), with an output cap.

    An unsupported method is a :class:`ParseError` here, before any data is read.
    """
    if method not in (8, 12, 14):
        raise ParseError(f"unsupported zip compression method {method}")
    return _capped(_zip_member(reader, method), cap, "zip entry output")


def _zip_member(reader: Reader, method: int) -> Iterator[bytes]:
    step = 1 << 20
    d: zlib._Decompress | bz2.BZ2Decompressor | lzma.LZMADecompressor
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
        lc_lp_pb = props[0]
        filt = {
            "id": lzma.FILTER_LZMA1,
            "dict_size": struct.unpack_from("<I", props, 1)[0],
            "lc": lc_lp_pb % 9,
            "lp": (lc_lp_pb // 9) % 5,
            "pb": lc_lp_pb // 45,
        }
        d = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=[filt])
    while True:
        data = reader.read(step)
        if not data:
            return  # a truncated entry ends where its data ends, as streaming readers see it
        yield from _checked_drain(d, data, step, "corrupt compressed zip entry")
        if d.eof:
            return


def _checked_drain(
    d: zlib._Decompress | bz2.BZ2Decompressor | lzma.LZMADecompressor,
    data: bytes,
    step: int,
    corrupt: str,
) -> Iterator[bytes]:
    """:func:`_drain`, with the decompressor's errors as :class:`ParseError`."""
    try:
        yield from _drain(d, data, step)
    except (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError) as exc:
        raise ParseError(f"{corrupt}: {exc}") from None


def _capped(chunks: Iterator[bytes], cap: int, what: str) -> Iterator[bytes]:
    """The non-empty ``chunks``; :class:`DecompressionLimitError` past ``cap`` bytes in all."""
    total = 0
    for out in chunks:
        total += len(out)
        if total > cap:
            raise DecompressionLimitError(f"{what} exceeds the cap of {cap} bytes")
        if out:
            yield out


# --- tar ----------------------------------------------------------------------


@dataclass(frozen=True)
class TarMember:
    name: str
    size: int
    regular: bool


def _tar_num(field: bytes) -> int:
    if field and field[0] & 0x80:  # base-256
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def iter_tar(reader: Reader) -> Iterator[TarMember]:
    """Walk tar headers (ustar, pax and GNU long names) the way tarfile does.

    Each member is yielded with the reader at the start of its data; the
    walk then moves to the next header whatever the consumer read.
    """
    long_name: str | None = None
    pax: dict[str, str] = {}
    while True:
        header = reader.read(512)
        if len(header) < 512 or header == b"\0" * 512:
            return
        try:
            size = _tar_num(header[124:136])
            chksum = _tar_num(header[148:156])
        except ValueError:
            raise ParseError(f"invalid tar header at offset {reader.tell() - 512}") from None
        unsigned = sum(header[:148]) + 256 + sum(header[156:])
        signed = sum(struct.unpack("148b", header[:148])) + 256
        signed += sum(struct.unpack("356b", header[156:]))
        if chksum not in (unsigned, signed):
            raise ParseError(f"tar header checksum mismatch at offset {reader.tell() - 512}")
        kind = header[156:157]
        name = header[:100].split(b"\0", 1)[0]
        prefix = header[345:500].split(b"\0", 1)[0] if header[257:262] == b"ustar" else b""
        full = ((prefix + b"/" if prefix else b"") + name).decode("utf-8", "replace")
        start = reader.tell()
        padded = (size + 511) // 512 * 512
        if kind in (b"x", b"g", b"L"):
            if size > 1 << 20:
                raise ParseError("oversized tar extended header")
            data = reader.read_exact(size, "tar extended header")
            reader.skip(padded - size)
            if kind == b"L":
                long_name = data.split(b"\0", 1)[0].decode("utf-8", "replace")
            elif kind == b"x":
                pax = _parse_pax(data)
            continue
        if "path" in pax:
            full = pax["path"]
        if long_name is not None:
            full = long_name
        if "size" in pax:
            try:
                size = int(pax["size"])
            except ValueError:
                raise ParseError("invalid pax size") from None
            padded = (size + 511) // 512 * 512
        long_name, pax = None, {}
        regular = kind in (b"0", b"\0", b"7")
        yield TarMember(full, size if regular else 0, regular)
        consumed = reader.tell() - start
        if consumed < padded:
            reader.skip(padded - consumed)


def _parse_pax(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    i = 0
    while i < len(data):
        sp = data.find(b" ", i)
        if sp < 0:
            break
        try:
            ln = int(data[i:sp])
        except ValueError:
            raise ParseError("invalid pax record") from None
        if ln <= 0:
            break
        rec = data[sp + 1 : i + ln - 1].decode("utf-8", "replace")
        key, _, value = rec.partition("=")
        out[key] = value
        i += ln
    return out


# --- .npy ---------------------------------------------------------------------


@dataclass(frozen=True)
class NpyHeader:
    descr: object
    shape: tuple[int, ...]
    data_offset: int
    has_object: bool


def _descr_has_object(descr: object) -> bool:
    if isinstance(descr, str):
        return descr.lstrip("<>|=").startswith("O")
    if isinstance(descr, list):
        for field in descr:
            if not isinstance(field, tuple) or len(field) < 2:
                raise ParseError("invalid structured dtype in .npy header")
            if _descr_has_object(field[1]):
                return True
        return False
    raise ParseError("invalid dtype description in .npy header")


def parse_npy_header(reader: Reader) -> NpyHeader:
    """Parse the header of a ``.npy`` stream; leave the reader at the array data."""
    magic = reader.read_exact(8, ".npy header")
    if not magic.startswith(NPY_MAGIC):
        raise ParseError("not a .npy file")
    major = magic[6]
    if major == 1:
        (hlen,) = struct.unpack("<H", reader.read_exact(2, ".npy header"))
    elif major in (2, 3):
        (hlen,) = struct.unpack("<I", reader.read_exact(4, ".npy header"))
    else:
        raise ParseError(f"unsupported .npy version {major}")
    if hlen > 1 << 20:
        raise ParseError(".npy header too large")
    raw = reader.read_exact(hlen, ".npy header")
    try:
        text = raw.decode("utf-8" if major == 3 else "latin-1")
        header = ast.literal_eval(text)
    except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError):
        raise ParseError("unparseable .npy header") from None
    if not isinstance(header, dict) or not {"descr", "shape", "fortran_order"} <= header.keys():
        raise ParseError(".npy header lacks descr, shape or fortran_order")
    shape = header["shape"]
    if not isinstance(shape, tuple) or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise ParseError("invalid shape in .npy header")
    return NpyHeader(header["descr"], shape, reader.tell(), _descr_has_object(header["descr"]))


# --- safetensors --------------------------------------------------------------

_ST_DTYPE_BITS = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}


def validate_safetensors(reader: FileReader) -> int:
    """Check a safetensors header; return the number of tensors. ParseError if invalid.

    Rules (as the safetensors loader enforces them): an 8-byte little-endian
    header length, a JSON object header that fits in the file, known dtypes,
    non-negative shapes, ``data_offsets`` that match the shape and cover the
    data section contiguously, from 0 to its end, without gaps or overlap.
    """
    size = reader.length
    head = reader.read_exact(8, "safetensors header length")
    (n,) = struct.unpack("<Q", head)
    if n > 100_000_000 or 8 + n > size:
        raise ParseError(f"safetensors header length {n} does not fit a {size}-byte file")
    raw = reader.read_exact(n, "safetensors header")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ParseError("safetensors header is not valid UTF-8 JSON") from None
    if not isinstance(header, dict):
        raise ParseError("safetensors header is not a JSON object")
    spans: list[tuple[int, int, str]] = []
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise ParseError("safetensors __metadata__ must map strings to strings")
            continue
        if not isinstance(info, dict):
            raise ParseError(f"safetensors entry {name!r} is not an object")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in _ST_DTYPE_BITS:
            raise ParseError(f"safetensors entry {name!r}: unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
        ):
            raise ParseError(f"safetensors entry {name!r}: invalid shape")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]
        ):
            raise ParseError(f"safetensors entry {name!r}: invalid data_offsets")
        bits = math.prod(shape) * _ST_DTYPE_BITS[dtype]
        if bits % 8 or bits // 8 != offsets[1] - offsets[0]:
            raise ParseError(f"safetensors entry {name!r}: data_offsets do not match the shape")
        spans.append((offsets[0], offsets[1], name))
    spans.sort()
    pos = 0
    for start, end, name in spans:
        if start != pos:
            raise ParseError(f"safetensors entry {name!r}: data is not contiguous")
        pos = end
    if 8 + n + pos != size:
        raise ParseError(
            f"safetensors data section is {size - 8 - n} bytes; the header describes {pos}"
        )
    return len(spans)


# --- zip ----------------------------------------------------------------------


@dataclass(frozen=True)
class ZipEntry:
    """One entry of a zip file as a loader could see it.

    ``names`` holds every name this data is known by (central directory and
    local header); ``source`` says which directory listed it.
    """

    names: tuple[str, ...]
    method: int
    flags: int
    data_offset: int
    compressed_size: int
    size: int
    source: str  # "central", "local" or "central+local"


_EOCD = b"PK\x05\x06"
_CDH = struct.Struct("<4s4H2H3I5H2I")  # central directory header, 46 bytes
_LFH = struct.Struct("<4s5H3I2H")  # local file header, 30 bytes


def _decode_name(raw: bytes, flags: int) -> str:
    return raw.decode("utf-8" if flags & 0x800 else "cp437", errors="replace")


def _zip64_extra(extra: bytes, fields: list[int]) -> list[int]:
    """Replace 0xFFFFFFFF fields (size, compressed size, offset) from a zip64 extra block."""
    i = 0
    while i + 4 <= len(extra):
        tag, ln = struct.unpack_from("<HH", extra, i)
        if tag == 1:
            data = extra[i + 4 : i + 4 + ln]
            j = 0
            out = list(fields)
            for k, v in enumerate(fields):
                if v == 0xFFFFFFFF and j + 8 <= len(data):
                    out[k] = struct.unpack_from("<Q", data, j)[0]
                    j += 8
            return out
        i += 4 + ln
    return fields


def _central_directory(reader: FileReader) -> tuple[list[ZipEntry], int, list[str]]:
    """Entries of the central directory; the prefix ("concat") offset; problems found."""
    size = reader.length
    tail_len = min(size, 22 + 65535 + 20 + 56)
    tail = reader.read_at(size - tail_len, tail_len)
    at = tail.rfind(_EOCD)
    if at < 0:
        return [], 0, ["no end-of-central-directory record"]
    eocd_pos = size - tail_len + at
    if at + 22 > len(tail):
        return [], 0, ["truncated end-of-central-directory record"]
    _, _, _, _, count, cd_size, cd_offset, _ = struct.unpack_from("<4s4H2IH", tail, at)
    problems: list[str] = []
    cd_end = eocd_pos
    # zip64 end of central directory locator just before the EOCD
    loc = tail[at - 20 : at] if at >= 20 else b""
    if loc[:4] == b"PK\x06\x07":
        (z64_off,) = struct.unpack_from("<Q", loc, 8)
        rec = reader.read_at(z64_off, 56)
        if rec[:4] == b"PK\x06\x06" and len(rec) == 56:
            count, cd_size, cd_offset = struct.unpack_from("<QQQ", rec, 32)
            cd_end = z64_off
        else:
            problems.append("zip64 locator points to no zip64 record")
    concat = cd_end - cd_size - cd_offset
    if concat < 0:
        return [], 0, ["central directory offsets point outside the file"]
    cd = reader.read_at(cd_offset + concat, cd_size)
    entries: list[ZipEntry] = []
    i = 0
    while i + 46 <= len(cd):
        (sig, _, _, flags, method, _, _, _, csize, usize, nlen, elen, clen, _, _, _, hoff) = (
            _CDH.unpack_from(cd, i)
        )
        if sig != b"PK\x01\x02":
            problems.append(f"bad central directory header at offset {cd_offset + concat + i}")
            break
        name_raw = cd[i + 46 : i + 46 + nlen]
        extra = cd[i + 46 + nlen : i + 46 + nlen + elen]
        usize, csize, hoff = _zip64_extra(extra, [usize, csize, hoff])
        entries.append(
            ZipEntry(
                (_decode_name(name_raw, flags),),
                method,
                flags,
                hoff + concat,  # local header offset for now; resolved below
                csize,
                usize,
                "central",
            )
        )
        i += 46 + nlen + elen + clen
    if len(entries) != count:
        problems.append(f"central directory lists {len(entries)} entries, EOCD says {count}")
    return entries, concat, problems


def _local_header(reader: FileReader, offset: int) -> tuple[str, int, int, int, int, int] | None:
    """(name, method, flags, data offset, compressed size, size) of the local header at offset."""
    raw = reader.read_at(offset, 30)
    if len(raw) < 30:
        return None
    sig, _, flags, method, _, _, _, csize, usize, nlen, elen = _LFH.unpack(raw)
    if sig != b"PK\x03\x04":
        return None
    rest = reader.read_at(offset + 30, nlen + elen)
    name = _decode_name(rest[:nlen], flags)
    usize, csize = _zip64_extra(rest[nlen:], [usize, csize])
    return name, method, flags, offset + 30 + nlen + elen, csize, usize


def _find_data_end(reader: FileReader, start: int) -> int:
    """End of stored data of unknown size: the next zip signature (streaming readers do this)."""
    pos = start
    while pos < reader.length:
        chunk = reader.read_at(pos, 1 << 20)
        hits = [chunk.find(sig) for sig in (b"PK\x07\x08", b"PK\x03\x04", b"PK\x01\x02")]
        hits = [h for h in hits if h >= 0]
        if hits:
            return pos + min(hits)
        pos += max(1, len(chunk) - 3)
    return reader.length


def read_zip_entries(reader: FileReader) -> tuple[list[ZipEntry], list[str]]:
    """Every entry of a zip file, the way any loader could find it.

    Entries come from the central directory (duplicates kept) *and* from a
    walk over the local headers from the start of the file; an entry whose
    local header disagrees with the central directory (name, method or
    sizes) is returned in both versions. CRCs are not checked: an entry with
    a bad CRC is still returned. Problems (a missing central directory, a
    dangling offset) are returned as text; the caller decides.
    """
    central, concat, problems = _central_directory(reader)
    out: list[ZipEntry] = []
    seen: dict[tuple[int, int, int], int] = {}

    def add(e: ZipEntry) -> None:
        key = (e.data_offset, e.method, e.compressed_size)
        if key in seen:
            old = out[seen[key]]
            names = old.names + tuple(n for n in e.names if n not in old.names)
            src = old.source if e.source in old.source else "central+local"
            out[seen[key]] = ZipEntry(
                names, old.method, old.flags, old.data_offset, old.compressed_size, old.size, src
            )
            return
        seen[key] = len(out)
        out.append(e)

    local_offsets: set[int] = set()
    for e in central:
        lh = _local_header(reader, e.data_offset)
        if lh is None:
            problems.append(f"entry {e.names[0]!r}: no local header at offset {e.data_offset}")
            continue
        local_offsets.add(e.data_offset)
        lname, lmethod, lflags, data_off, lcsize, lusize = lh
        add(ZipEntry(e.names, e.method, e.flags, data_off, e.compressed_size, e.size, "central"))
        sizes_known = not lflags & 0x08 or (lcsize and lcsize != 0xFFFFFFFF)
        if (
            lname != e.names[0]
            or lmethod != e.method
            or (sizes_known and lcsize != e.compressed_size)
        ):
            csize = lcsize if sizes_known else e.compressed_size
            usize = lusize if sizes_known else e.size
            add(ZipEntry((lname,), lmethod, lflags, data_off, csize, usize, "local"))
    # the streaming view: local headers one after another from the first one
    pos = 0 if not central else min(min(local_offsets, default=concat), concat)
    while True:
        lh = _local_header(reader, pos)
        if lh is None:
            break
        lname, lmethod, lflags, data_off, lcsize, lusize = lh
        if lflags & 0x08 and not lcsize:
            match = [e for e in central if e.data_offset == pos]
            if match:
                lcsize, lusize = match[0].compressed_size, match[0].size
            else:
                lcsize = _find_data_end(reader, data_off) - data_off
                lusize = -1
        if pos not in local_offsets:
            add(ZipEntry((lname,), lmethod, lflags, data_off, lcsize, lusize, "local"))
        nxt = data_off + lcsize
        if lflags & 0x08:
            desc = reader.read_at(nxt, 4)
            nxt += 16 if desc == b"PK\x07\x08" else 12
        if nxt <= pos:
            break
        pos = nxt
    return out, problems


# --- HDF5 / Keras -------------------------------------------------------------

HDF5_OFFSETS = (0, 512, 1024, 2048, 4096)


def find_hdf5(reader: FileReader) -> bool:
    return any(reader.read_at(off, 8) == HDF5_MAGIC for off in HDF5_OFFSETS)


_KERAS_FUNCTION_MODULES = frozenset(
    f"{p}{m}"
    for p in ("keras.", "keras.src.", "tf_keras.", "tensorflow.keras.")
    for m in ("activations", "losses", "metrics", "initializers", "regularizers", "constraints")
)
_KERAS_NAMESPACES = ("keras", "tf_keras", "keras_hub", "keras_nlp", "keras_cv", "tensorflow.keras")


@dataclass(frozen=True)
class KerasIssue:
    kind: str  # "keras-lambda" | "keras-foreign-module"
    message: str
    where: str  # JSON path


def keras_config_issues(config: object, path: str = "$") -> list[KerasIssue]:
    """Objects in a Keras config that make loading run code from the file or import a module.

    - ``Lambda`` layers (and Keras 3 ``__lambda__`` objects): the config
      carries marshalled Python bytecode.
    - an object whose ``module`` is outside the Keras namespaces: loading
      imports that module and calls into it (the safe-mode bypasses of
      2025 used this).
    - a ``function`` reference outside Keras' activation/loss/metric/
      initializer/regularizer/constraint modules (for example
      ``keras.utils.get_file``).
    """
    out: list[KerasIssue] = []
    stack: list[tuple[object, str]] = [(config, path)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        cls = node.get("class_name")
        module = node.get("module")
        if cls in ("Lambda", "__lambda__", "TFOpLambda") or node.get("function_type") == "lambda":
            out.append(KerasIssue("keras-lambda", f"Keras {cls or 'lambda'} layer", where))
        if isinstance(module, str):
            if not (
                module in _KERAS_NAMESPACES
                or module.startswith(tuple(n + "." for n in _KERAS_NAMESPACES))
            ):
                out.append(
                    KerasIssue(
                        "keras-foreign-module",
                        f"Keras object {cls!r} from module {module!r}",
                        where,
                    )
                )
            elif cls == "function" and module not in _KERAS_FUNCTION_MODULES:
                name = node.get("config")
                out.append(
                    KerasIssue(
                        "keras-foreign-module",
                        f"Keras config calls function {module}.{name}",
                        where,
                    )
                )
        elif module is not None:
            out.append(KerasIssue("keras-foreign-module", "Keras module is not a string", where))
        stack.extend((v, f"{where}.{k}") for k, v in node.items())
    return out


def path_of(p: str | Path) -> str:
    return Path(p).as_posix()
