"""safetensors: positively validated the way the safetensors loader validates.

An 8-byte little-endian header length N (at most 100,000,000) that fits in
the file, a UTF-8 JSON object header starting with ``{``, known dtypes,
non-negative integer shapes, ``data_offsets`` that match the shape and tile
the data section from 0 to its end without gap or overlap, and a
``__metadata__`` of strings. Such a file holds numbers only.
"""

from __future__ import annotations

import json
import math
import struct

from ml_integrity.scan.readers import FileReader, ParseError

__all__ = ["DTYPE_BITS", "validate_safetensors", "validate_safetensors_header"]

DTYPE_BITS = {
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
MAX_HEADER = 100_000_000


def looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (n,) = struct.unpack_from("<Q", head)
    return 2 <= n <= MAX_HEADER and head[8:9] == b"{"


def validate_safetensors_header(raw: bytes, data_size: int) -> int:
    """Validate a header (the N bytes after the length) against a data section size."""
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ParseError("safetensors header is not valid UTF-8 JSON") from None
    if not raw.startswith(b"{") or not isinstance(header, dict):
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
        if dtype not in DTYPE_BITS:
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
        bits = math.prod(shape) * DTYPE_BITS[dtype]
        if bits % 8 or bits // 8 != offsets[1] - offsets[0]:
            raise ParseError(f"safetensors entry {name!r}: data_offsets do not match the shape")
        spans.append((offsets[0], offsets[1], name))
    spans.sort()
    pos = 0
    for start, end, name in spans:
        if start != pos:
            raise ParseError(f"safetensors entry {name!r}: data is not contiguous")
        pos = end
    if pos != data_size:
        raise ParseError(
            f"safetensors data section is {data_size} bytes; the header describes {pos}"
        )
    return len(spans)


def validate_safetensors(reader: FileReader) -> int:
    """Check a whole safetensors file; return the number of tensors. ParseError if invalid."""
    size = reader.length
    (n,) = struct.unpack("<Q", reader.read_at(0, 8).ljust(8, b"\0"))
    if size < 8 or n > MAX_HEADER or 8 + n > size:
        raise ParseError(f"safetensors header length {n} does not fit a {size}-byte file")
    return validate_safetensors_header(reader.read_at(8, n), size - 8 - n)
