"""What a file is, from its first bytes: the labels of the manifest's ``format`` field.

Recognition only. A label is informational: it never makes a file safe. The
scanner (:mod:`ml_integrity.scan`) does not use it: it runs every stream
through the real unpicklers and validates formats positively, since a file
can be two formats at once (a GGUF or tar header is also a pickle). Nothing
here parses beyond magic numbers and a few bytes of header.
"""

from __future__ import annotations

import enum
import lzma
import struct
import zlib

__all__ = ["COMPRESSED", "HDF5_MAGIC", "NPY_MAGIC", "Format", "is_weak_pickle_start", "sniff"]


class Format(str, enum.Enum):
    """What a byte stream is, judged from its content."""

    PICKLE = "pickle"
    PYTORCH_ZIP = "pytorch-zip"
    PYTORCH_LEGACY = "pytorch-legacy"
    PYTORCH_LEGACY_TAR = "pytorch-legacy-tar"
    NPY = "npy"
    NPZ = "npz"
    KERAS = "keras"
    ZIP = "zip"
    TAR = "tar"
    GZIP = "gzip"
    BZIP2 = "bzip2"
    XZ = "xz"
    LZMA = "lzma"
    ZLIB = "zlib"
    HDF5 = "hdf5"
    SAFETENSORS = "safetensors"
    GGUF = "gguf"
    ONNX = "onnx"
    LFS_POINTER = "lfs-pointer"
    DATA = "data"


COMPRESSED = frozenset({Format.GZIP, Format.BZIP2, Format.XZ, Format.LZMA, Format.ZLIB})


def _lzma_alone_ok(head: bytes) -> bool:
    if len(head) < 13 or head[0] >= 9 * 5 * 5:
        return False
    dict_size: int = struct.unpack_from("<I", head, 1)[0]
    return 4096 <= dict_size <= 1 << 31


_PICKLE0_OPCODES = frozenset(b"(.012FIJKLMNPQRSTUVXabcdegh}ijl]opqrstu)G" + b"BC")
NPY_MAGIC = b"\x93NUMPY"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_LFS_PREFIXES = (
    b"version https://git-lfs.github.com/spec/v1\n",
    b"version https://hawser.github.com/spec/v1\n",
)
_ONNX_NEXT_TAGS = frozenset({0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72, 0x7A})


def _varint(data: bytes, i: int) -> tuple[int, int] | None:
    value = 0
    shift = 0
    while i < len(data) and shift < 64:
        b = data[i]
        value |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return value, i
        shift += 7
    return None


def _looks_onnx(head: bytes) -> bool:
    # ModelProto: field 1 ir_version (varint) first, then another ModelProto field.
    if len(head) < 4 or head[0] != 0x08:
        return False
    parsed = _varint(head, 1)
    if parsed is None:
        return False
    version, i = parsed
    return 1 <= version <= 64 and i < len(head) and head[i] in _ONNX_NEXT_TAGS


def _looks_safetensors(head: bytes) -> bool:
    if len(head) < 10:
        return False
    n = struct.unpack_from("<Q", head)[0]
    return 2 <= n <= 1 << 30 and head[8:9] == b"{"


def _trial(fmt: Format, head: bytes) -> bool:
    """Does ``head`` start a valid stream of a weak-magic compression format?"""
    try:
        if fmt is Format.ZLIB:
            zlib.decompressobj().decompress(head, 64)
        else:
            lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(head, 64)
    except (zlib.error, lzma.LZMAError, EOFError):
        return False
    return True


def sniff(head: bytes) -> Format:
    """The format of a stream from its first bytes (give at least 512 for tar).

    A stream starting with the pickle PROTO opcode is labelled a pickle; one
    starting with another protocol 0/1 opcode is only a *candidate*, labelled
    :attr:`Format.PICKLE` here and left unlabelled by the manifest. The
    scanner does not use these labels (see the module docstring).
    """
    if not head:
        return Format.DATA
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return Format.ZIP
    if head.startswith(NPY_MAGIC):
        return Format.NPY
    if head.startswith(b"\x1f\x8b"):
        return Format.GZIP
    if head.startswith(b"BZh") and head[3:4].isdigit() and head[3:4] != b"0":
        return Format.BZIP2
    if head.startswith(b"\xfd7zXZ\x00"):
        return Format.XZ
    if head.startswith(HDF5_MAGIC):
        return Format.HDF5
    if head.startswith(b"GGUF"):
        return Format.GGUF
    if head.startswith(_LFS_PREFIXES):
        return Format.LFS_POINTER
    if _looks_safetensors(head):  # before PROTO: header lengths 128, 384, ... start with 0x80
        return Format.SAFETENSORS
    if head[0] == 0x80 and len(head) > 1 and head[1] <= 5:
        return Format.PICKLE
    if len(head) >= 262 and head[257:262] == b"ustar":
        return Format.TAR
    if _looks_onnx(head):
        return Format.ONNX
    if (
        len(head) >= 2
        and head[0] == 0x78
        and (head[0] << 8 | head[1]) % 31 == 0
        and _trial(Format.ZLIB, head)
    ):
        return Format.ZLIB
    if head[0] == 0x5D and _lzma_alone_ok(head) and _trial(Format.LZMA, head):
        return Format.LZMA
    if head[0] in _PICKLE0_OPCODES:
        return Format.PICKLE
    return Format.DATA


def is_weak_pickle_start(head: bytes) -> bool:
    """A pickle candidate without the PROTO opcode (protocol 0/1, or trailing data)."""
    return bool(head) and not (head[0] == 0x80 and len(head) > 1 and head[1] <= 5)
