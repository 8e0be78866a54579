"""Formats validated by their structure: GGUF, ONNX, images and text.

Each validator returns the format's name when the whole file has the
structure its readers expect, and raises :class:`ParseError` otherwise.
None of these formats has a way to name Python code; a file that only
resembles one of them (a magic number and then something else) is not
validated, and the scanner treats it as unknown.

- GGUF (versions 2 and 3): header, every metadata key/value (typed, arrays
  included), every tensor info (dimensions, type, aligned offset inside the
  data section), all within the file.
- ONNX: the file parses as a protobuf ``ModelProto``: only its known field
  numbers, each with its wire type, lengths within bounds, ``ir_version``
  and ``graph`` present.
- PNG (every chunk with its CRC, through ``IEND``), JPEG (``SOI`` to
  ``EOI``), GIF (header to trailer).
- Text: UTF-8 (an optional BOM) without NUL or control characters other than
  tab, newline, carriage return, form feed and vertical tab. Whether an
  unpickler can run it is decided by the pickle analysis, not here.
"""

from __future__ import annotations

import codecs
import struct
import zlib
from collections.abc import Callable

from ml_integrity.scan.readers import FileReader, ParseError

__all__ = ["validate_gguf", "validate_image", "validate_onnx", "validate_text"]

_STEP = 1 << 20


# --- GGUF --------------------------------------------------------------------------

_GGUF_SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_GGUF_MAX_ITEMS = 1 << 24


class _Cursor:
    def __init__(self, r: FileReader) -> None:
        self.r = r
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.r.length:
            raise ParseError(f"GGUF structure runs past the end of the file at {self.pos}")
        data = self.r.read_at(self.pos, n)
        self.pos += n
        return data

    def u32(self) -> int:
        return int(struct.unpack("<I", self.take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack("<Q", self.take(8))[0])

    def string(self) -> bytes:
        n = self.u64()
        if n > 1 << 30:
            raise ParseError("GGUF string too long")
        return self.take(n)


def _gguf_value(c: _Cursor, vtype: int, depth: int = 0) -> object:
    if vtype in _GGUF_SCALAR:
        raw = c.take(_GGUF_SCALAR[vtype])
        return int.from_bytes(raw, "little") if vtype in (0, 2, 4, 10) else raw
    if vtype == 8:
        return c.string()
    if vtype == 9 and depth < 4:
        itype = c.u32()
        count = c.u64()
        if count > _GGUF_MAX_ITEMS:
            raise ParseError("GGUF array too long")
        if itype in _GGUF_SCALAR:
            c.take(count * _GGUF_SCALAR[itype])
            return None
        for _ in range(count):
            _gguf_value(c, itype, depth + 1)
        return None
    raise ParseError(f"GGUF metadata value of unknown type {vtype}")


def validate_gguf(r: FileReader) -> str:
    c = _Cursor(r)
    if c.take(4) != b"GGUF":
        raise ParseError("not a GGUF file")
    version = c.u32()
    if version not in (2, 3):
        raise ParseError(f"unsupported GGUF version {version}")
    n_tensors, n_kv = c.u64(), c.u64()
    if n_tensors > _GGUF_MAX_ITEMS or n_kv > _GGUF_MAX_ITEMS:
        raise ParseError("GGUF counts are implausible")
    alignment = 32
    for _ in range(n_kv):
        key = c.string()
        value = _gguf_value(c, c.u32())
        if key == b"general.alignment" and isinstance(value, int):
            alignment = value
    if alignment <= 0 or alignment & (alignment - 1):
        raise ParseError("GGUF alignment is not a power of two")
    offsets = []
    for _ in range(n_tensors):
        c.string()
        n_dims = c.u32()
        if n_dims > 8:
            raise ParseError("GGUF tensor with too many dimensions")
        c.take(8 * n_dims)
        c.u32()  # ggml type
        offsets.append(c.u64())
    data_start = -(-c.pos // alignment) * alignment
    for off in offsets:
        if off % alignment or data_start + off > r.length:
            raise ParseError("GGUF tensor offset outside the data section")
    return "gguf"


# --- ONNX --------------------------------------------------------------------------

# ModelProto field number -> wire type (onnx.proto3)
_ONNX_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2}


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 70, 7):
        if i >= len(data):
            raise ParseError("truncated protobuf varint")
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
    raise ParseError("protobuf varint too long")


def validate_onnx(r: FileReader) -> str:
    if r.length > 2 << 30:
        raise ParseError("ONNX file larger than protobuf's 2 GiB limit")
    seen: set[int] = set()
    pos = 0
    head_len = 1 << 16
    while pos < r.length:
        head = r.read_at(pos, 20)
        key, i = _varint(head, 0)
        field, wire = key >> 3, key & 7
        if _ONNX_FIELDS.get(field) != wire:
            raise ParseError(f"not an ONNX ModelProto: field {field} wire type {wire}")
        if wire == 0:
            _, i = _varint(head, i)
            pos += i
        else:
            n, i = _varint(head, i)
            pos += i + n
            if pos > r.length:
                raise ParseError("ONNX field runs past the end of the file")
        seen.add(field)
        head_len -= 1
    if not {1, 7} <= seen:
        raise ParseError("ONNX ModelProto without ir_version or graph")
    return "onnx"


# --- images ------------------------------------------------------------------------


def validate_image(r: FileReader) -> str:
    head = r.read_at(0, 16)
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        pos = 8
        while True:
            hdr = r.read_at(pos, 8)
            if len(hdr) < 8:
                raise ParseError("PNG without IEND")
            (n,) = struct.unpack(">I", hdr[:4])
            kind = hdr[4:8]
            body = r.read_at(pos + 8, n + 4)
            if len(body) != n + 4 or n > 1 << 31:
                raise ParseError("truncated PNG chunk")
            if zlib.crc32(kind + body[:n]) != struct.unpack(">I", body[n:])[0]:
                raise ParseError("PNG chunk CRC mismatch")
            pos += 12 + n
            if kind == b"IEND":
                if pos != r.length:
                    raise ParseError("data after the PNG IEND chunk")
                return "png"
    if head.startswith(b"\xff\xd8\xff"):
        if r.read_at(r.length - 2, 2) != b"\xff\xd9":
            raise ParseError("JPEG without an EOI marker at its end")
        return "jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        if r.read_at(r.length - 1, 1) != b";":
            raise ParseError("GIF without its trailer")
        return "gif"
    raise ParseError("not an image")


# --- text ----------------------------------------------------------------------------

_CONTROL = bytes(c for c in range(32) if c not in b"\t\n\r\f\v") + b"\x7f"
_DELETE_CONTROL = bytes.maketrans(b"", b"")


def validate_text(r: FileReader) -> str:
    """UTF-8 text (JSON, CSV, word lists, source): no NUL or other control characters."""
    dec = codecs.getincrementaldecoder("utf-8")("strict")
    pos = 0
    try:
        while pos < r.length:
            chunk = r.read_at(pos, _STEP)
            if not chunk:
                break
            if len(chunk.translate(_DELETE_CONTROL, _CONTROL)) != len(chunk):
                raise ParseError("binary data: control characters")
            dec.decode(chunk)
            pos += len(chunk)
        dec.decode(b"", final=True)
    except UnicodeDecodeError:
        raise ParseError("not UTF-8 text") from None
    return "text"


# --- which validators could accept a stream ---------------------------------------------


def _onnx_start(head: bytes) -> bool:
    """Could :func:`validate_onnx` get past the first field key of ``head``?"""
    value = 0
    for i, b in enumerate(head[:10]):
        value |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            return _ONNX_FIELDS.get(value >> 3) == value & 7
    return False  # truncated or too long: it raises on the first key


def plausible(head: bytes) -> list[Callable[[FileReader], str]]:
    """The validators (GGUF, ONNX, image, text) that can accept a stream starting with
    ``head`` (its first 64 bytes or fewer): each one left out raises on these bytes, so
    trying it only costs an exception."""
    out: list[Callable[[FileReader], str]] = []
    if head.startswith(b"GGUF"):
        out.append(validate_gguf)
    if _onnx_start(head):
        out.append(validate_onnx)
    if head.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")):
        out.append(validate_image)
    if len(head.translate(_DELETE_CONTROL, _CONTROL)) == len(head):
        out.append(validate_text)
    return out
