"""``.npy`` headers by numpy's own grammar (``numpy.lib.format``), no numpy needed.

The reading follows ``_read_array_header``: magic ``\\x93NUMPY`` with version
1.0, 2.0 or 3.0; a little-endian header length (2 bytes for 1.0, 4 after);
the header decoded as latin-1 (utf-8 for 3.0) and read with
``ast.literal_eval`` (for 1.0/2.0, retried after dropping Python 2 ``L``
suffixes of integers, as ``_filter_header`` does); a dict with exactly the
keys ``descr``, ``fortran_order`` (a bool) and ``shape`` (a tuple of ints).

``descr`` is then judged as ``descr_to_dtype`` would build it: a string is a
dtype string, a tuple is ``(subdtype, shape)``, a list holds ``(name, descr)``
or ``(name, descr, shape)`` fields. :func:`descr_has_object` answers
``False`` only for spellings proven free of objects (a closed grammar of
plain type codes and names); anything else is ``None`` ("not proven"), and
the caller asks numpy itself when it is installed, or treats the data as a
pickle. ``np.load`` unpickles the data of every array whose dtype holds an
object, at any depth.
"""

from __future__ import annotations

import re
import struct

from ml_integrity.scan.readers import ParseError, Reader
from ml_integrity.scan.records import Value

__all__ = ["NPY_MAGIC", "NpyHeader", "descr_has_object", "parse_npy_header"]

NPY_MAGIC = b"\x93NUMPY"
_VERSIONS = {(1, 0): ("<H", "latin1"), (2, 0): ("<I", "latin1"), (3, 0): ("<I", "utf8")}
_MAX_HEADER = 64 << 20
_MAX_DEPTH = 32

_ORDER = r"[<>|=]?"
_CODES = r"[?bBhHiIlLqQpPefdgFDGSUVcaMm]"
_SIZED = r"(?:[biufcSUVa][0-9]+|[Mm]8(?:\[[0-9]*(?:Y|M|W|D|h|m|s|ms|us|ns|ps|fs|as|generic)\])?)"
_NAMES = (
    "bool|bool_|int8|int16|int32|int64|uint8|uint16|uint32|uint64|float16|float32|float64|"
    "float96|float128|complex64|complex128|complex192|complex256|half|single|double|float|int|"
    "longdouble|byte|ubyte|short|ushort|intc|uintc|intp|uintp|long|ulong|longlong|ulonglong|"
    "csingle|cdouble|clongdouble|complex|str|str_|bytes|bytes_|void|datetime64|timedelta64"
)
_PLAIN = re.compile(
    rf"{_ORDER}(?:{_SIZED}|{_CODES}|(?:{_NAMES})|(?:datetime64|timedelta64)\[[0-9]*[a-zA-Z]+\])"
)


class NpyHeader(Value):
    """``has_object``: None when the grammar proves neither."""

    __slots__ = ("data_offset", "descr", "fortran_order", "has_object", "shape", "version")

    def __init__(
        self,
        version: tuple[int, int],
        descr: object,
        shape: tuple[int, ...],
        fortran_order: bool,
        data_offset: int,
        has_object: bool | None,
    ) -> None:
        self.version = version
        self.descr = descr
        self.shape = shape
        self.fortran_order = fortran_order
        self.data_offset = data_offset
        self.has_object = has_object


def descr_has_object(descr: object, depth: int = 0) -> bool | None:
    """False when ``descr`` provably builds a dtype without objects; else None."""
    if depth > _MAX_DEPTH:
        return None
    if isinstance(descr, str):
        parts = descr.split(",") if "(" not in descr else [descr]
        if parts and all(_PLAIN.fullmatch(p.strip()) and p == p.strip() for p in parts):
            return False
        return None
    if isinstance(descr, tuple):
        if len(descr) < 2:
            return None
        return descr_has_object(descr[0], depth + 1)
    if isinstance(descr, list):
        for field in descr:
            if not isinstance(field, tuple) or len(field) not in (2, 3):
                return None
            name = field[0]
            if not (
                isinstance(name, str)
                or (
                    isinstance(name, tuple)
                    and len(name) == 2
                    and all(isinstance(x, str) for x in name)
                )
            ):
                return None
            if descr_has_object(field[1], depth + 1) is not False:
                return None
        return False
    return None


def numpy_has_object(descr: object) -> bool | None:
    """numpy's own answer (``descr_to_dtype(...).hasobject``), or None without numpy/on error."""
    try:
        import numpy.lib.format as npf
    except ImportError:
        return None
    try:
        return bool(npf.descr_to_dtype(descr).hasobject)  # type: ignore[arg-type]
    except Exception:  # numpy refuses the descr: np.load fails before reading data
        return None


def _filter_header(text: str) -> str:
    """Drop the ``L`` after integer literals (Python 2 headers), token by token."""
    import io
    import tokenize

    out = []
    last_number = False
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if last_number and tok.type == tokenize.NAME and tok.string == "L":
            continue
        out.append(tok)
        last_number = tok.type == tokenize.NUMBER
    return tokenize.untokenize(out)


def _literal(text: str, version: tuple[int, int]) -> object:
    import ast

    try:
        return ast.literal_eval(text)
    except SyntaxError:
        if version > (2, 0):
            raise
        return ast.literal_eval(_filter_header(text))


def parse_npy_header(reader: Reader) -> NpyHeader:
    """Parse a ``.npy`` header; leave the reader at the array data. ParseError if numpy would."""
    magic = reader.read_exact(8, ".npy header")
    if not magic.startswith(NPY_MAGIC):
        raise ParseError("not a .npy file")
    version = (magic[6], magic[7])
    if version not in _VERSIONS:
        raise ParseError(f"unsupported .npy version {version[0]}.{version[1]}")
    fmt, encoding = _VERSIONS[version]
    (hlen,) = struct.unpack(fmt, reader.read_exact(struct.calcsize(fmt), ".npy header length"))
    if hlen > _MAX_HEADER:
        raise ParseError(".npy header too large to parse")
    raw = reader.read_exact(hlen, ".npy header")
    try:
        header = _literal(raw.decode(encoding), version)
    except (ValueError, SyntaxError, TypeError, UnicodeDecodeError, MemoryError, RecursionError):
        raise ParseError("unparseable .npy header") from None
    if not isinstance(header, dict) or header.keys() != {"descr", "fortran_order", "shape"}:
        raise ParseError(".npy header must have exactly descr, fortran_order and shape")
    shape = header["shape"]
    if not isinstance(shape, tuple) or not all(isinstance(s, int) for s in shape):
        raise ParseError("invalid shape in .npy header")
    if not isinstance(header["fortran_order"], bool):
        raise ParseError("invalid fortran_order in .npy header")
    descr = header["descr"]
    has_object = descr_has_object(descr)
    if has_object is None:
        has_object = numpy_has_object(descr)
    return NpyHeader(version, descr, shape, header["fortran_order"], reader.tell(), has_object)
