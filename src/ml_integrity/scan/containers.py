"""Member readers for containers: zip entries, decompressed streams, legacy torch records.

Decompressed output goes to a spooled temporary file (memory up to 64 MiB,
then disk) so every member is a seekable :class:`FileReader`, bounded by the
policy's decompression budget.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO

from ml_integrity.scan.compression import decompressed_chunks, zip_member_chunks
from ml_integrity.scan.readers import FileReader, ParseError, Reader
from ml_integrity.scan.walker import Global, analyze
from ml_integrity.scan.zips import ZipEntry

__all__ = ["TORCH_RAW", "legacy_records", "spool", "unpack", "zip_member"]

TORCH_RAW = re.compile(
    r"(^|/)(data/\d+|version|byteorder|\.data/version|\.data/serialization_id|"
    r"\.format_version|\.storage_alignment)$"
)
_SPOOL_MEMORY = 64 << 20
STORAGE_ELEMENT_SIZE = {
    "DoubleStorage": 8,
    "FloatStorage": 4,
    "HalfStorage": 2,
    "BFloat16Storage": 2,
    "LongStorage": 8,
    "IntStorage": 4,
    "ShortStorage": 2,
    "CharStorage": 1,
    "ByteStorage": 1,
    "BoolStorage": 1,
    "ComplexDoubleStorage": 16,
    "ComplexFloatStorage": 8,
    "QUInt8Storage": 1,
    "QInt8Storage": 1,
    "QInt32Storage": 4,
    "QUInt4x2Storage": 1,
    "QUInt2x4Storage": 1,
}


def spool(chunks: Iterator[bytes]) -> FileReader:
    """The chunks in a spooled temporary file, as a reader (errors propagate as they come)."""
    import tempfile

    f: BinaryIO = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY)  # type: ignore[assignment]  # noqa: SIM115 - the reader owns it
    for chunk in chunks:
        f.write(chunk)
    return FileReader(f)


def unpack(fmt: str, reader: FileReader, cap: int) -> FileReader:
    """The decompressed content of ``reader`` (ParseError: not that compression)."""
    return spool(decompressed_chunks(fmt, reader, cap))


def zip_member(fr: FileReader, e: ZipEntry, cap: int) -> FileReader:
    if e.data_offset + e.compressed_size > fr.length:
        raise ParseError("zip entry data runs past the end of the file")
    window = FileReader(fr._f, fr._start + e.data_offset, e.compressed_size)
    if e.method == 0:
        return window
    return spool(zip_member_chunks(window, e.method, cap))


def legacy_records(r: Reader, base: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each pickle in a legacy torch tar's ``storages``/``tensors`` member.

    Between the pickles are raw records (storage sizes and data, tensor
    shapes), skipped the way torch reads them.
    """

    def one() -> tuple[int, int, object]:
        start = r.tell()
        a = analyze(r, joblib=False)
        if not a.complete:
            raise ParseError(f"legacy PyTorch {base} record does not parse")
        return start, r.tell(), a.result

    start, end, count = one()
    yield start, end
    if not isinstance(count, int) or count < 0:
        raise ParseError(f"legacy PyTorch {base}: invalid count")
    for _ in range(count):
        start, end, args = one()
        yield start, end
        if base == "storages":
            stype = args[2] if isinstance(args, tuple) and len(args) == 3 else None
            if not isinstance(stype, Global) or stype.name not in STORAGE_ELEMENT_SIZE:
                raise ParseError("legacy PyTorch storage with an unknown storage type")
            numel = int.from_bytes(r.read_exact(8, "storage size"), "little", signed=True)
            r.skip(numel * STORAGE_ELEMENT_SIZE[stype.name])
        else:
            ndim = int.from_bytes(r.read_exact(4, "tensor ndim"), "little", signed=True)
            if ndim < 0 or ndim > 64:
                raise ParseError("legacy PyTorch tensor with an invalid ndim")
            r.skip(4 + 16 * ndim + 8)
    if base == "storages":
        start, end, _ = one()
        yield start, end
