"""The values of the opcode walk (:mod:`.walker`): simulated objects, spans and results."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = [
    "Analysis", "Blob", "Call", "Frame", "Global", "GlobalRef", "Issue", "Nested", "Opaque",
    "PDict", "PList", "PSet", "Span", "Str8", "wants",
]  # fmt: skip

KEEP_PAYLOAD = 4096
"""Payloads up to this size are read and kept as values; longer ones are skipped."""
ELIDE_BYTES = 64 << 10
"""Byte payloads longer than this are left out of the stream the inert unpicklers read."""
ELIDE_TEXT = 1 << 20
"""Text payloads longer than this are replaced by a marker in that stream."""
HEAD = 64
MAX_LINE = 1 << 20


@dataclass(frozen=True)
class Span:
    """A region the inert unpicklers do not read: a payload, or joblib array data.

    ``length_at``/``length_size``: where the payload's length field is (it is
    rewritten); ``kind``: ``bytes`` (dropped), ``text`` (replaced by a
    marker), ``array`` (raw joblib array data, dropped with no field) or
    ``nested`` (a joblib object-array pickle, analysed on its own).
    """

    start: int
    length: int
    kind: str
    length_at: int = -1
    length_size: int = 0


@dataclass(frozen=True)
class Nested:
    """A constant that starts like a pickle, a zip or a ``.npy``: scanned as nested content."""

    label: str
    start: int
    length: int
    data: bytes | None = None  # the bytes, when they are not a region of the stream


def wants(head: bytes) -> bool:
    """Does a payload starting with ``head`` look like nested content worth scanning?"""
    return (len(head) > 1 and head[0] == 0x80 and head[1] <= 5) or head.startswith(
        (b"PK\x03\x04", b"\x93NUMPY")
    )


@dataclass(frozen=True)
class Frame:
    length_at: int
    start: int
    length: int


# --- simulated values -----------------------------------------------------------


@dataclass(frozen=True)
class Global:
    module: str
    name: str

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass
class Call:
    """The result of calling (REDUCE, NEWOBJ, INST, OBJ) ``func`` with ``args``."""

    func: object
    args: object
    state: object = None


@dataclass(frozen=True)
class Blob:
    """A skipped payload: its kind, length and first bytes."""

    kind: str
    length: int
    head: bytes


@dataclass(frozen=True)
class Opaque:
    """A value the walk cannot know (persistent id, out-of-band buffer, unresolved name)."""

    what: str


class Str8(bytes):
    """A protocol 0/1 ``STRING``: bytes or str, depending on the loader's encoding."""


@dataclass
class PList:
    items: list[object] = field(default_factory=list)


@dataclass
class PDict:
    items: list[tuple[object, object]] = field(default_factory=list)

    def get(self, key: str) -> object:
        for k, v in self.items:
            if k == key:
                return v
        return None

    def has(self, key: str) -> bool:
        return any(k == key for k, _ in self.items)


@dataclass
class PSet:
    items: list[object] = field(default_factory=list)


class _Mark:
    pass


# --- results -------------------------------------------------------------------------


@dataclass(frozen=True)
class GlobalRef:
    """A global the pickle imports: ``module.name``, where and how."""

    module: str
    name: str
    offset: int
    opcode: str
    allowed: bool
    written: str | None = None  # the protocol-2 spelling when fix_imports mapped it

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(frozen=True)
class Issue:
    """Something that makes the pickle unsafe whatever the allowlist says."""

    kind: str  # unresolved-global | unsafe-call | unsafe-build | malformed | not-scanned
    message: str
    offset: int


@dataclass
class Analysis:
    start: int = 0
    end: int = 0
    protocol: int = 0
    globals: list[GlobalRef] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    complete: bool = False
    significant: bool = False
    result: object = None
    opcodes: int = 0
    spans: list[Span] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)
    consts: list[Nested] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(i.kind == "malformed" for i in self.issues)


class _Fail(Exception):
    pass


# --- helpers ------------------------------------------------------------------------------

_DTYPE = re.compile(r"^[<>|=]?([?a-zA-Z])(\d*)")
_ITEM_KIND_SIZE = {"?": 1, "b": 1, "B": 1, "h": 2, "H": 2, "e": 2, "f": 4, "d": 8, "g": 16}


def _dtype_info(dtype: object) -> tuple[bool, int | None]:
    """(has_object, itemsize) of a simulated ``numpy.dtype(...)`` value."""
    if not (isinstance(dtype, Call) and dtype.func == Global("numpy", "dtype")):
        raise _Fail("joblib array without a numpy dtype")
    args = dtype.args
    if not isinstance(args, tuple) or not args or not isinstance(args[0], str):
        raise _Fail("joblib array with an unknown dtype")
    m = _DTYPE.match(args[0])
    if not m:
        raise _Fail(f"joblib array with an unknown dtype {args[0]!r}")
    kind, num = m.group(1), m.group(2)
    if kind == "O":
        return True, None
    state = dtype.state
    if (
        kind == "V"
        and isinstance(state, tuple)
        and len(state) > 5
        and isinstance(state[5], int)
        and state[5] > 0
    ):
        return False, state[5]
    if num:
        n = int(num)
        return False, n * 4 if kind == "U" else n
    if kind in _ITEM_KIND_SIZE:
        return False, _ITEM_KIND_SIZE[kind]
    raise _Fail(f"joblib array with dtype {args[0]!r} of unknown size")


def _describe(v: object) -> str:
    if isinstance(v, Call):
        f = v.func
        return f"the result of calling {f.qualname}" if isinstance(f, Global) else "a call result"
    if isinstance(v, Global):
        return f"the object {v.qualname}"
    if isinstance(v, Opaque):
        return v.what
    if isinstance(v, Blob):
        return f"a {v.length}-byte {v.kind}"
    return f"a {type(v).__name__} value"


def _is_dunder(k: object) -> bool:
    return isinstance(k, str) and k.startswith("__") and k.endswith("__")
