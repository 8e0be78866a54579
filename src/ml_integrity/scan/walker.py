"""The opcode walk: a model of the unpickler's stack, marks and memo. Nothing is unpickled.

The walk is no longer what decides whether a file is a pickle or which
globals it reaches: the real unpicklers, run inert, do that (:mod:`.inert`).
The walk is kept for what only a model can do:

- the allowlist verdict on structure: a call whose target is not a named
  global, a ``STACK_GLOBAL`` whose name is computed, ``BUILD``/``SETITEM``
  tricks on imported objects, dunder attributes set by ``BUILD``;
- skipping large byte payloads by seeking, and recording where they are,
  so the inert unpicklers get the opcode stream without them
  (:attr:`Analysis.spans`, :attr:`Analysis.frames`);
- joblib's in-stream arrays (``NumpyArrayWrapper`` followed by raw array
  bytes, or a nested pickle for object arrays), followed as joblib reads them;
- the offsets of findings.
"""

from __future__ import annotations

import codecs
import math
import struct
from collections.abc import Callable

from ml_integrity.scan.allowlist import is_allowed, mapped
from ml_integrity.scan.readers import ParseError, Reader
from ml_integrity.scan.walkvalues import (
    ELIDE_BYTES,
    ELIDE_TEXT,
    HEAD,
    KEEP_PAYLOAD,
    MAX_LINE,
    Analysis,
    Blob,
    Call,
    Frame,
    Global,
    GlobalRef,
    Issue,
    Nested,
    Opaque,
    PDict,
    PList,
    PSet,
    Span,
    Str8,
    _describe,
    _dtype_info,
    _Fail,
    _is_dunder,
    _Mark,
    wants,
)

__all__ = ["Analysis", "Global", "GlobalRef", "Issue", "Span", "analyze"]

# --- the walk -------------------------------------------------------------------------------


class _Walker:
    def __init__(self, r: Reader, joblib: bool) -> None:
        self.r = r
        self.joblib = joblib
        self.a = Analysis(start=r.tell())
        self.stack: list[object] = []
        self.meta: list[list[object]] = []
        self.memo: dict[int, object] = {}
        self.op = 0

    # stack helpers
    def pop(self) -> object:
        if not self.stack:
            raise _Fail("stack underflow")
        v = self.stack.pop()
        if isinstance(v, _Mark):
            raise _Fail("unexpected MARK")
        return v

    def top(self) -> object:
        if not self.stack:
            raise _Fail("stack underflow")
        return self.stack[-1]

    def pop_mark(self) -> list[object]:
        if not self.meta:
            raise _Fail("no MARK on the stack")
        items = self.stack
        self.stack = self.meta.pop()
        return items

    def issue(self, kind: str, message: str) -> None:
        self.a.issues.append(Issue(kind, message, self.op))

    # payloads
    def line(self) -> bytes:
        return self.r.readline(MAX_LINE)[:-1]

    def uint(self, n: int) -> int:
        r = self.r
        pos = r._pos
        end = pos + n
        if end <= len(r._buf):
            r._pos = end
            return int.from_bytes(r._buf[pos:end], "little")
        return int.from_bytes(r.read_exact(n, "opcode argument"), "little")

    def payload(self, n: int, kind: str, size: int) -> object:
        """A length-prefixed payload; ``size`` is the width of the length field just read."""
        if n < 0:
            raise _Fail(f"negative {kind} length")
        bytes_like = kind in ("bytes", "bytearray", "str8")
        if n <= KEEP_PAYLOAD:
            data = self.r.read_exact(n, kind)
            if bytes_like and wants(data[:HEAD]):
                label = f"{kind} constant at offset {self.op}"
                self.a.consts.append(Nested(label, self.r.tell() - n, n))
            if kind == "str":
                return data.decode("utf-8", "surrogatepass")
            if kind == "str8":
                return Str8(data)
            return data
        start = self.r.tell()
        head = self.r.peek(HEAD)
        if bytes_like and wants(head):
            self.a.consts.append(Nested(f"{kind} constant at offset {self.op}", start, n))
        text = kind in ("str", "str8")
        if n > (ELIDE_TEXT if text else ELIDE_BYTES):
            self.a.spans.append(Span(start, n, "text" if text else "bytes", start - size, size))
        self.r.skip(n)
        return Blob(kind, n, head)

    # globals and calls
    def global_(self, module: str, name: str, opcode: str) -> Global:
        written = None
        allowed = is_allowed(module, name)
        if self.a.protocol < 3 and mapped(module, name) != (module, name):
            written = f"{module}.{name}"
            module, name = mapped(module, name)
        self.a.significant = True
        self.a.globals.append(GlobalRef(module, name, self.op, opcode, allowed, written))
        return Global(module, name)

    def callable_(self, func: object, opcode: str) -> None:
        if isinstance(func, Global):
            self.a.significant = True
        elif isinstance(func, (Call, Opaque)):
            self.a.significant = True
            self.issue("unsafe-call", f"{opcode} calls {_describe(func)}, not a named global")
        else:
            raise _Fail(f"{opcode} calls {_describe(func)}")

    def mutate(self, target: object, opcode: str) -> None:
        if isinstance(target, Global):
            self.issue("unsafe-build", f"{opcode} modifies the imported object {target.qualname}")

    # opcode handlers ------------------------------------------------------------------

    def push(self, v: object) -> None:
        self.stack.append(v)

    def pop_mark_op(self) -> None:
        self.pop_mark()

    def readonly_buffer(self) -> None:
        self.top()

    def proto(self) -> None:
        v = self.uint(1)
        if v > 5:
            raise _Fail(f"unsupported pickle protocol {v}")
        self.a.protocol = v

    def stop(self) -> bool:
        self.a.result = self.pop()
        self.a.complete = True
        return True

    def mark(self) -> None:
        self.meta.append(self.stack)
        self.stack = []

    def pop_op(self) -> None:
        if self.stack:
            self.stack.pop()
        else:
            self.pop_mark()

    def int_line(self) -> None:
        data = self.line()
        if data == b"00":
            self.stack.append(False)
        elif data == b"01":
            self.stack.append(True)
        else:
            self.stack.append(int(data, 0))

    def long_line(self) -> None:
        data = self.line()
        if data.endswith(b"L"):
            data = data[:-1]
        self.stack.append(int(data, 0))

    def long_bin(self, n: int, size: int = 1) -> None:
        if n < 0:
            raise _Fail("negative LONG length")
        if n > KEEP_PAYLOAD:
            start = self.r.tell()
            if n > ELIDE_BYTES:
                self.a.spans.append(Span(start, n, "bytes", start - size, size))
            self.r.skip(n)
            self.stack.append(Opaque("a large integer"))
        else:
            self.stack.append(int.from_bytes(self.r.read_exact(n), "little", signed=True))

    def string_line(self) -> None:
        data = self.line()
        if len(data) < 2 or data[0] != data[-1] or data[0] not in b"\"'":
            raise _Fail("the STRING opcode argument must be quoted")
        value = codecs.escape_decode(data[1:-1])[0]
        self.stack.append(Str8(value))

    def tuple1(self) -> None:
        self.stack.append((self.pop(),))

    def tuple2(self) -> None:
        b, a = self.pop(), self.pop()
        self.stack.append((a, b))

    def tuple3(self) -> None:
        c, b, a = self.pop(), self.pop(), self.pop()
        self.stack.append((a, b, c))

    def dict_op(self) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise _Fail("DICT with an odd number of items")
        self.stack.append(PDict(list(zip(items[::2], items[1::2], strict=True))))

    def _check_key(self, k: object) -> None:
        if isinstance(k, (PList, PDict, PSet)):
            raise _Fail("unhashable dict key")

    def append(self) -> None:
        v = self.pop()
        target = self.top()
        self._add_items(target, [v], "APPEND")

    def appends(self) -> None:
        items = self.pop_mark()
        self._add_items(self.top(), items, "APPENDS")

    def _add_items(self, target: object, items: list[object], opcode: str) -> None:
        if isinstance(target, PList):
            target.items.extend(items)
        elif isinstance(target, (Call, Opaque)):
            self.a.significant = True  # calls the object's append/extend
        elif isinstance(target, Global):
            self.mutate(target, opcode)
        else:
            raise _Fail(f"{opcode} on {_describe(target)}")

    def setitem(self) -> None:
        v = self.pop()
        k = self.pop()
        self._set_items(self.top(), [(k, v)], "SETITEM")

    def setitems(self) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise _Fail("SETITEMS with an odd number of items")
        self._set_items(self.top(), list(zip(items[::2], items[1::2], strict=True)), "SETITEMS")

    def _set_items(self, target: object, pairs: list[tuple[object, object]], op: str) -> None:
        if isinstance(target, PDict):
            for k, _ in pairs:
                self._check_key(k)
            target.items.extend(pairs)
        elif isinstance(target, (Call, Opaque)):
            self.a.significant = True  # calls the object's __setitem__
        elif isinstance(target, Global):
            self.mutate(target, op)
        else:
            raise _Fail(f"{op} on {_describe(target)}")

    def additems(self) -> None:
        items = self.pop_mark()
        target = self.top()
        if isinstance(target, PSet):
            target.items.extend(items)
        elif isinstance(target, (Call, Opaque)):
            self.a.significant = True
        elif isinstance(target, Global):
            self.mutate(target, "ADDITEMS")
        else:
            raise _Fail(f"ADDITEMS on {_describe(target)}")

    def put(self, i: int) -> None:
        if i < 0:
            raise _Fail("negative memo index")
        self.memo[i] = self.top()

    def get(self, i: int) -> None:
        if i not in self.memo:
            raise _Fail(f"memo key {i} not found")
        self.stack.append(self.memo[i])

    def global_op(self) -> None:
        module = self.line().decode("utf-8")
        name = self.line().decode("utf-8")
        self.stack.append(self.global_(module, name, "GLOBAL"))

    def stack_global(self) -> None:
        name = self.pop()
        module = self.pop()
        names: list[str] = []
        for v in (module, name):
            if isinstance(v, str):
                names.append(v)
            elif isinstance(v, Str8):
                try:
                    names.append(v.decode("ascii"))
                except UnicodeDecodeError:
                    break
            else:
                break
        if len(names) == 2:
            self.stack.append(self.global_(names[0], names[1], "STACK_GLOBAL"))
            return
        self.a.significant = True
        what = (
            " and ".join(
                f"{role} is {_describe(v)}"
                for role, v in (("module", module), ("name", name))
                if not isinstance(v, (str, Str8))
            )
            or "a name is not text"
        )
        self.issue("unresolved-global", f"STACK_GLOBAL with a computed name: {what}")
        self.stack.append(Opaque("an unresolved global"))

    def inst(self) -> None:
        module = self.line().decode("utf-8")
        name = self.line().decode("utf-8")
        g = self.global_(module, name, "INST")
        args = self.pop_mark()
        self.callable_(g, "INST")
        self.stack.append(Call(g, tuple(args)))

    def obj(self) -> None:
        args = self.pop_mark()
        if not args:
            raise _Fail("OBJ without a class")
        cls = args.pop(0)
        self.callable_(cls, "OBJ")
        self.stack.append(Call(cls, tuple(args)))

    def newobj(self) -> None:
        args = self.pop()
        cls = self.pop()
        self.callable_(cls, "NEWOBJ")
        self.stack.append(Call(cls, args))

    def newobj_ex(self) -> None:
        kwargs = self.pop()
        args = self.pop()
        cls = self.pop()
        self.callable_(cls, "NEWOBJ_EX")
        self.stack.append(Call(cls, (args, kwargs)))

    def reduce(self) -> None:
        args = self.pop()
        func = self.pop()
        self.callable_(func, "REDUCE")
        if func == Global("_codecs", "encode") and isinstance(args, tuple) and args:
            self._latin1(args[0])
        self.stack.append(Call(func, args))

    def _latin1(self, text: object) -> None:
        """Text that ``_codecs.encode(text, 'latin1')`` turns into bytes (protocol 2 bytes)."""
        label = f"latin-1 text at offset {self.op}"
        if isinstance(text, str):
            try:
                data = text.encode("latin-1")
            except UnicodeEncodeError:
                return
            if wants(data[:HEAD]):
                self.a.consts.append(Nested(label, -1, len(data), data))
        elif isinstance(text, Blob) and text.kind == "str":
            head = text.head.decode("utf-8", "ignore").encode("latin-1", "ignore")
            if wants(head):
                self.issue("not-scanned", f"a {text.length}-byte {label} looks like nested content")

    def build(self) -> None:
        state = self.pop()
        inst = self.top()
        if not isinstance(inst, (Global, Call, Opaque)):
            if state is None or state == () or (isinstance(state, PDict) and not state.items):
                return  # the unpickler does nothing
            raise _Fail(f"BUILD on {_describe(inst)}")
        self.a.significant = True
        if isinstance(inst, Global):
            self.mutate(inst, "BUILD")
        states = state if isinstance(state, tuple) and len(state) == 2 else (state,)
        for s in states:
            if isinstance(s, PDict):
                bad = [k for k, _ in s.items if _is_dunder(k)]
                if bad:
                    self.issue(
                        "unsafe-build",
                        f"BUILD sets the attribute {bad[0]} on {_describe(inst)}",
                    )
        if isinstance(inst, Call):
            inst.state = state
            if self.joblib and inst.func == Global("joblib.numpy_pickle", "NumpyArrayWrapper"):
                self.joblib_array(inst)

    def joblib_array(self, wrapper: Call) -> None:
        state = wrapper.state
        if not isinstance(state, PDict):
            raise _Fail("joblib NumpyArrayWrapper without a state dict")
        shape = state.get("shape")
        if not isinstance(shape, tuple) or not all(isinstance(s, int) and s >= 0 for s in shape):
            raise _Fail("joblib array with an invalid shape")
        has_object, itemsize = _dtype_info(state.get("dtype"))
        self.stack[-1] = Opaque("a joblib array")
        if has_object:
            start = self.r.tell()
            sub = _Walker(self.r, self.joblib)
            sub.a.protocol = self.a.protocol
            sub.run()
            self.a.globals.extend(sub.a.globals)
            self.a.issues.extend(sub.a.issues)
            self.a.spans.append(Span(start, self.r.tell() - start, "nested"))
            if not sub.a.complete:
                raise _Fail("the object array of a joblib file does not parse")
            return
        assert itemsize is not None
        start = self.r.tell()
        align = state.get("numpy_array_alignment_bytes")
        if isinstance(align, int) and not isinstance(align, bool):
            pad = self.uint(1)
            self.r.skip(pad)
        self.r.skip(math.prod(shape) * itemsize)
        self.a.spans.append(Span(start, self.r.tell() - start, "array"))

    def frame(self) -> None:
        at = self.r.tell()
        n = self.uint(8)
        self.a.frames.append(Frame(at, at + 8, n))

    def persid(self) -> None:
        self.line()
        self.stack.append(Opaque("a persistent object"))

    def binpersid(self) -> None:
        self.pop()
        self.stack.append(Opaque("a persistent object"))

    def ext(self, code: int) -> None:
        self.a.significant = True
        self.issue(
            "unresolved-global",
            f"extension-registry opcode (code {code}) imports an unnamed global",
        )
        self.stack.append(Opaque("an extension-registry global"))

    # the loop ----------------------------------------------------------------------
    def run(self) -> Analysis:
        r = self.r
        table = _TABLE
        n = 0
        try:
            while True:
                pos = r._pos
                buf = r._buf
                if pos < len(buf):  # fast path: the opcode byte is buffered
                    code = buf[pos]
                    r._pos = pos + 1
                    self.op = r._base + pos
                else:
                    self.op = r.tell()
                    b = r.read(1)
                    if not b:
                        raise _Fail("truncated pickle (no STOP opcode)")
                    code = b[0]
                handler = table.get(code)
                if handler is None:
                    raise _Fail(f"unknown opcode 0x{code:02x}")
                n += 1
                if handler(self):
                    break
        except ParseError as exc:
            self.issue("malformed", f"pickle does not parse: {exc.message}")
        except (_Fail, ValueError, OverflowError, UnicodeDecodeError) as exc:
            self.issue("malformed", f"pickle does not parse at offset {self.op}: {exc}")
        except RecursionError:
            self.issue("malformed", f"pickle nests too deeply at offset {self.op}")
        self.a.end = r.tell()
        self.a.opcodes = n
        return self.a


def _build_table() -> dict[int, Callable[[_Walker], bool | None]]:
    t: dict[int, Callable[[_Walker], bool | None]] = {}

    def const(v: object) -> Callable[[_Walker], None]:
        return lambda w: w.push(v)

    t[0x80] = _Walker.proto
    t[0x95] = _Walker.frame  # a length hint: the frame holds opcodes
    t[ord(".")] = _Walker.stop
    t[ord("(")] = _Walker.mark
    t[ord("0")] = _Walker.pop_op
    t[ord("1")] = _Walker.pop_mark_op
    t[ord("2")] = lambda w: w.push(w.top())
    t[ord("N")] = const(None)
    t[0x88] = const(True)
    t[0x89] = const(False)
    t[ord("I")] = _Walker.int_line
    t[ord("J")] = lambda w: w.push(struct.unpack("<i", w.r.read_exact(4))[0])
    t[ord("K")] = lambda w: w.push(w.uint(1))
    t[ord("M")] = lambda w: w.push(w.uint(2))
    t[ord("L")] = _Walker.long_line
    t[0x8A] = lambda w: w.long_bin(w.uint(1))
    t[0x8B] = lambda w: w.long_bin(struct.unpack("<i", w.r.read_exact(4))[0], 4)
    t[ord("F")] = lambda w: w.push(float(w.line()))
    t[ord("G")] = lambda w: w.push(struct.unpack(">d", w.r.read_exact(8))[0])
    t[ord("S")] = _Walker.string_line
    t[ord("T")] = lambda w: w.push(w.payload(struct.unpack("<i", w.r.read_exact(4))[0], "str8", 4))
    t[ord("U")] = lambda w: w.push(w.payload(w.uint(1), "str8", 1))
    t[ord("B")] = lambda w: w.push(w.payload(w.uint(4), "bytes", 4))
    t[ord("C")] = lambda w: w.push(w.payload(w.uint(1), "bytes", 1))
    t[0x8E] = lambda w: w.push(w.payload(w.uint(8), "bytes", 8))
    t[0x96] = lambda w: w.push(w.payload(w.uint(8), "bytearray", 8))
    t[ord("V")] = lambda w: w.push(codecs.decode(w.line(), "raw-unicode-escape"))
    t[ord("X")] = lambda w: w.push(w.payload(w.uint(4), "str", 4))
    t[0x8C] = lambda w: w.push(w.payload(w.uint(1), "str", 1))
    t[0x8D] = lambda w: w.push(w.payload(w.uint(8), "str", 8))
    t[ord(")")] = const(())
    t[ord("t")] = lambda w: w.push(tuple(w.pop_mark()))
    t[0x85] = _Walker.tuple1
    t[0x86] = _Walker.tuple2
    t[0x87] = _Walker.tuple3
    t[ord("]")] = lambda w: w.push(PList())
    t[ord("l")] = lambda w: w.push(PList(w.pop_mark()))
    t[ord("}")] = lambda w: w.push(PDict())
    t[ord("d")] = _Walker.dict_op
    t[0x8F] = lambda w: w.push(PSet())
    t[0x91] = lambda w: w.push(PSet(w.pop_mark()))
    t[ord("a")] = _Walker.append
    t[ord("e")] = _Walker.appends
    t[ord("s")] = _Walker.setitem
    t[ord("u")] = _Walker.setitems
    t[0x90] = _Walker.additems
    t[ord("p")] = lambda w: w.put(int(w.line()))
    t[ord("q")] = lambda w: w.put(w.uint(1))
    t[ord("r")] = lambda w: w.put(w.uint(4))
    t[0x94] = lambda w: w.put(len(w.memo))
    t[ord("g")] = lambda w: w.get(int(w.line()))
    t[ord("h")] = lambda w: w.get(w.uint(1))
    t[ord("j")] = lambda w: w.get(w.uint(4))
    t[ord("c")] = _Walker.global_op
    t[0x93] = _Walker.stack_global
    t[ord("i")] = _Walker.inst
    t[ord("o")] = _Walker.obj
    t[0x81] = _Walker.newobj
    t[0x92] = _Walker.newobj_ex
    t[ord("R")] = _Walker.reduce
    t[ord("b")] = _Walker.build
    t[ord("P")] = _Walker.persid
    t[ord("Q")] = _Walker.binpersid
    t[0x82] = lambda w: w.ext(w.uint(1))
    t[0x83] = lambda w: w.ext(w.uint(2))
    t[0x84] = lambda w: w.ext(w.uint(4))
    t[0x97] = const(Opaque("an out-of-band buffer"))
    t[0x98] = _Walker.readonly_buffer
    return t


_TABLE = _build_table()


def analyze(reader: Reader, *, joblib: bool = True) -> Analysis:
    """Walk one pickle from the reader's position to its STOP opcode (or the first error)."""
    return _Walker(reader, joblib).run()
