"""The values of the opcode walk (:mod:`.walker`): simulated objects, spans and results.

Plain records (:mod:`.records`), not dataclasses: they compare by value
as dataclasses did; the mutable ones (lists, dicts, sets, calls, results)
are unhashable.
"""

from __future__ import annotations

import re

from ml_integrity.scan.records import Record as _Record
from ml_integrity.scan.records import Value as _Value

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


class Span(_Value):
    """A region the inert unpicklers do not read: a payload, or joblib array data.

    ``length_at``/``length_size``: where the payload's length field is (it is
    rewritten); ``kind``: ``bytes`` (dropped), ``text`` (replaced by a
    marker), ``array`` (raw joblib array data, dropped with no field) or
    ``nested`` (a joblib object-array pickle, analysed on its own).
    """

    __slots__ = ("kind", "length", "length_at", "length_size", "start")

    def __init__(
        self, start: int, length: int, kind: str, length_at: int = -1, length_size: int = 0
    ) -> None:
        self.start = start
        self.length = length
        self.kind = kind
        self.length_at = length_at
        self.length_size = length_size


class Nested(_Value):
    """A constant that starts like a pickle, a zip or a ``.npy``: scanned as nested content.

    ``data``: the bytes, when they are not a region of the stream.
    """

    __slots__ = ("data", "label", "length", "start")

    def __init__(self, label: str, start: int, length: int, data: bytes | None = None) -> None:
        self.label = label
        self.start = start
        self.length = length
        self.data = data


def wants(head: bytes) -> bool:
    """Does a payload starting with ``head`` look like nested content worth scanning?"""
    return (len(head) > 1 and head[0] == 0x80 and head[1] <= 5) or head.startswith(
        (b"PK\x03\x04", b"\x93NUMPY")
    )


class Frame(_Value):
    __slots__ = ("length", "length_at", "start")

    def __init__(self, length_at: int, start: int, length: int) -> None:
        self.length_at = length_at
        self.start = start
        self.length = length


# --- simulated values -----------------------------------------------------------


class Global(_Value):
    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"


class Call(_Record):
    """The result of calling (REDUCE, NEWOBJ, INST, OBJ) ``func`` with ``args``."""

    __slots__ = ("args", "func", "state")

    def __init__(self, func: object, args: object, state: object = None) -> None:
        self.func = func
        self.args = args
        self.state = state


class Blob(_Value):
    """A skipped payload: its kind, length and first bytes."""

    __slots__ = ("head", "kind", "length")

    def __init__(self, kind: str, length: int, head: bytes) -> None:
        self.kind = kind
        self.length = length
        self.head = head


class Opaque(_Value):
    """A value the walk cannot know (persistent id, out-of-band buffer, unresolved name)."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what


class Str8(bytes):
    """A protocol 0/1 ``STRING``: bytes or str, depending on the loader's encoding."""


class PList(_Record):
    __slots__ = ("items",)

    def __init__(self, items: list[object] | None = None) -> None:
        self.items: list[object] = [] if items is None else items


class PDict(_Record):
    __slots__ = ("items",)

    def __init__(self, items: list[tuple[object, object]] | None = None) -> None:
        self.items: list[tuple[object, object]] = [] if items is None else items

    def get(self, key: str) -> object:
        for k, v in self.items:
            if k == key:
                return v
        return None

    def has(self, key: str) -> bool:
        return any(k == key for k, _ in self.items)


class PSet(_Record):
    __slots__ = ("items",)

    def __init__(self, items: list[object] | None = None) -> None:
        self.items: list[object] = [] if items is None else items


class _Mark:
    pass


# --- results -------------------------------------------------------------------------


class GlobalRef(_Value):
    """A global the pickle imports: ``module.name``, where and how.

    ``written``: the protocol-2 spelling when fix_imports mapped it.
    """

    __slots__ = ("allowed", "module", "name", "offset", "opcode", "written")

    def __init__(
        self,
        module: str,
        name: str,
        offset: int,
        opcode: str,
        allowed: bool,
        written: str | None = None,
    ) -> None:
        self.module = module
        self.name = name
        self.offset = offset
        self.opcode = opcode
        self.allowed = allowed
        self.written = written

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"


class Issue(_Value):
    """Something that makes the pickle unsafe whatever the allowlist says.

    ``kind``: unresolved-global | unsafe-call | unsafe-build | malformed | not-scanned.
    """

    __slots__ = ("kind", "message", "offset")

    def __init__(self, kind: str, message: str, offset: int) -> None:
        self.kind = kind
        self.message = message
        self.offset = offset


class Analysis(_Record):
    __slots__ = (
        "complete",
        "consts",
        "end",
        "frames",
        "globals",
        "issues",
        "opcodes",
        "protocol",
        "result",
        "significant",
        "spans",
        "start",
    )  # fmt: skip

    def __init__(self, start: int = 0) -> None:
        self.start = start
        self.end = 0
        self.protocol = 0
        self.globals: list[GlobalRef] = []
        self.issues: list[Issue] = []
        self.complete = False
        self.significant = False
        self.result: object = None
        self.opcodes = 0
        self.spans: list[Span] = []
        self.frames: list[Frame] = []
        self.consts: list[Nested] = []

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
