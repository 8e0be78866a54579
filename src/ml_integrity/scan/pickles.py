"""The pickle view of a stream: what ``pickle.load`` (C and pure Python) would do with it.

:func:`pickle_view` walks the stream with the opcode model
(:mod:`.walker`) to find the large payloads, builds the opcode stream
without them, and has the real unpicklers read it inert
(:mod:`.inert`). The verdict comes from the unpicklers:

- a stream is a pickle when either unpickler calls a stand-in, uses an
  extension code, completes a load that holds a global, or reaches a global
  whose top-level module exists (importing it would run that module). A
  stream that fails before all of this cannot run anything when loaded;
  one that loads only constants (``N.``) is a "constant" pickle: harmless,
  refused under ``block`` only when no other format validates the stream;
- every global either unpickler reaches is judged by the allowlist
  (:func:`.allowlist.is_allowed`); the walk adds its structural findings
  and the offsets.

What the inert run cannot read (a payload cut from the stream it got, past
the raw-read budget) or could not finish (memory, CPU, time) is "could not
be scanned".
"""

from __future__ import annotations

import re
import struct
from typing import Any

from ml_integrity.scan import inert
from ml_integrity.scan.allowlist import is_allowed, mapped
from ml_integrity.scan.readers import FileReader
from ml_integrity.scan.records import Record, Value
from ml_integrity.scan.walker import _TABLE, Analysis, GlobalRef, Span, analyze
from ml_integrity.scan.walkvalues import ELIDE_BYTES, Nested

__all__ = [
    "OPCODES", "SMALL", "PickleView", "Prefetch", "Prefetched", "Reached", "pickle_view",
    "prefetch",
]  # fmt: skip

OPCODES = frozenset(_TABLE)
"""Every opcode byte both CPython unpicklers know; any other first byte fails at once."""
ELIDED_TEXT = "__ml_integrity_elided_text__"
_RAW_BUDGETS = (64 << 10, 4 << 20, 64 << 20)
_MAX_STACKED = 4096


class Reached(Value):
    """A global an unpickler reached: as written, the name it loads, who reached it.

    ``by``: "C unpickler" | "pure-Python unpickler".
    """

    __slots__ = ("allowed", "by", "module", "name", "ref")

    def __init__(
        self, module: str, name: str, by: str, allowed: bool, ref: GlobalRef | None = None
    ) -> None:
        self.module = module
        self.name = name
        self.by = by
        self.allowed = allowed
        self.ref = ref

    @property
    def qualname(self) -> str:
        m, n = mapped(self.module, self.name)
        return f"{m}.{n}"


_NEEDS_WALK = re.compile(rb"\x80[\x00-\x05]|PK\x03\x04|\x93NUMPY|encode|NumpyArrayWrapper|\\")
"""Bytes without which the walk finds no nested constant and no joblib array: a nested
constant starts like a pickle, zip or ``.npy`` (its first bytes are in the stream) or
is text passed to ``_codecs.encode``; a joblib array follows a ``NumpyArrayWrapper``;
names written with escapes (``STRING``, ``UNICODE``) contain a backslash."""


class PickleView(Record):
    """What the unpicklers did with a stream.

    ``status``: "pickle" | "constant" | "not-pickle" | "not-scanned";
    ``loads``: the most complete loads by either unpickler.
    """

    __slots__ = ("_data", "_reader", "_walks", "extensions", "loads", "reached", "reason", "status")

    def __init__(self, reader: FileReader | None = None, data: bytes | None = None) -> None:
        self.status = "not-pickle"
        self.reason: str | None = None
        self.reached: list[Reached] = []
        self.extensions: list[int] = []
        self.loads = 0
        self._walks: list[Analysis] | None = None
        self._reader = reader
        self._data = data  # the whole stream, when it is small

    @property
    def walks(self) -> list[Analysis]:
        """The opcode walk of the stacked pickles (made when first needed)."""
        if self._walks is None:
            self._walks = _walk(self._reader.fresh())[0] if self._reader is not None else []
        return self._walks

    @property
    def walked(self) -> int:
        """Complete loads the walk followed."""
        return sum(1 for a in self.walks if a.complete)

    @property
    def protocol(self) -> int:
        return self.walks[0].protocol if self.walks else 0

    def nested(self) -> list[Nested]:
        """Constants that start like a pickle, zip or ``.npy`` (scanned as nested content)."""
        if self._walks is None and self._data is not None and not _NEEDS_WALK.search(self._data, 1):
            return []  # the walk could not find any: not made
        return [c for a in self.walks for c in a.consts]


def _walk(r: FileReader) -> tuple[list[Analysis], int]:
    """Stacked pickles as the walk sees them; the offset where it stopped."""
    walks: list[Analysis] = []
    while len(walks) < _MAX_STACKED and not r.at_eof():
        a = analyze(r)
        walks.append(a)
        if not a.complete:
            return walks, a.end
    return walks, r.tell()


def _elided(r: FileReader, base: int, stop: int, walks: list[Analysis], joblib: bool) -> bytes:
    """The bytes [base, stop) with payloads cut; joblib arrays cut when ``joblib``."""
    spans: list[Span] = sorted((s for a in walks for s in a.spans), key=lambda s: s.start)
    frames = [f for a in walks for f in a.frames]
    out = bytearray()
    pos = base
    removed_at: list[tuple[int, int]] = []  # (stream offset, bytes removed)
    patches: list[tuple[int, int, int]] = []  # (out offset, size, value)
    for s in spans:
        if s.start < pos or s.start + s.length > stop:
            continue
        if s.kind in ("array", "nested") and not joblib:
            continue
        if s.kind in ("bytes", "text"):
            out += r.read_at(pos, s.length_at - pos)
            marker = ELIDED_TEXT.encode() if s.kind == "text" else b""
            patches.append((len(out), s.length_size, len(marker)))
            out += r.read_at(s.length_at, s.length_size) + marker
            removed_at.append((s.start, s.length - len(marker)))
        else:
            out += r.read_at(pos, s.start - pos)
            removed_at.append((s.start, s.length))
        pos = s.start + s.length
    out += r.read_at(pos, stop - pos)
    for at, size, value in patches:
        out[at : at + size] = value.to_bytes(size, "little")
    for f in frames:  # FRAME lengths shrink by what was cut inside them
        cut = sum(n for at, n in removed_at if f.start <= at < f.start + f.length)
        before = sum(n for at, n in removed_at if at < f.length_at)
        at = f.length_at - base - before
        if cut and at >= 0 and at + 8 <= len(out):
            out[at : at + 8] = struct.pack("<Q", f.length - cut)
    return bytes(out)


def _nested(r: FileReader, walks: list[Analysis]) -> list[bytes]:
    return [r.read_at(s.start, s.length) for a in walks for s in a.spans if s.kind == "nested"]


def _refs(walks: list[Analysis]) -> dict[tuple[str, str], GlobalRef]:
    out: dict[tuple[str, str], GlobalRef] = {}
    for a in walks:
        for g in a.globals:
            out.setdefault((g.module, g.name), g)
    return out


class _Plan(Record):
    __slots__ = ("cut", "first_raw", "joblib", "stop", "walks")

    def __init__(
        self, walks: list[Analysis], stop: int, first_raw: int, cut: int, joblib: bool
    ) -> None:
        self.walks = walks
        self.stop = stop
        self.first_raw = first_raw
        self.cut = cut
        self.joblib = joblib

    def streams(self, r: FileReader, budget: int) -> tuple[list[bytes], int]:
        """The streams the unpicklers read, and where the plain one leaves the walk."""
        plain_stop = self.first_raw if self.joblib else self.stop
        raw = b"" if self.cut >= 0 else r.read_at(plain_stop, budget)
        out = [_elided(r, 0, plain_stop, self.walks, False) + raw]
        if self.joblib:
            tail = raw and r.read_at(self.stop, budget)
            out.append(_elided(r, 0, self.stop, self.walks, True) + tail)
            out.extend(_nested(r, self.walks))
        return out, plain_stop


def _plan(r: FileReader, walked: tuple[list[Analysis], int] | None = None) -> _Plan | None:
    if r.length == 0 or r.read_at(0, 1)[0] not in OPCODES:
        return None  # both unpicklers fail on the first byte
    walks, stop = walked or _walk(r.fresh())
    joblib = any(s.kind in ("array", "nested") for a in walks for s in a.spans)
    first_raw = min(
        (s.start for a in walks for s in a.spans if s.kind in ("array", "nested")), default=stop
    )
    past_end = [s for a in walks for s in a.spans if s.start + s.length > r.length]
    cut = min((s.length_at if s.length_at >= 0 else s.start for s in past_end), default=-1)
    if cut >= 0:  # a payload announced past the end: every loader stops there
        stop = first_raw = min(first_raw, cut)
    return _Plan(walks, stop, first_raw, cut, joblib)


SMALL = ELIDE_BYTES
"""A stream up to this size is given to the unpicklers whole, before any walk: it has no
payload the walk would cut, and the raw-read budget covers it, so it is the very stream
the walk would have built (a payload announced past its end is read as a loader reads
it). The walk is made afterwards, only when a verdict needs it (:class:`PickleView`)."""


class Prefetched(Record):
    """The first inert answers for a stream, asked ahead (see :class:`Prefetch`).

    ``plan``: None for a small stream, sent whole (``data``).
    """

    __slots__ = ("answers", "data", "plan")

    def __init__(
        self, plan: _Plan | None, data: bytes | None, answers: list[dict[str, object]]
    ) -> None:
        self.plan = plan
        self.data = data
        self.answers = answers


def _request(r: FileReader) -> tuple[_Plan | None, bytes | None, list[bytes]] | None:
    """What the first analysis of ``r`` sends; None when no unpickler passes the first byte."""
    if r.length == 0 or r.read_at(0, 1)[0] not in OPCODES:
        return None
    if r.length <= SMALL:
        data = r.read_at(0, r.length)
        return None, data, [data]
    plan = _plan(r)
    assert plan is not None
    return plan, None, plan.streams(r, _RAW_BUDGETS[0])[0]


class Prefetch:
    """The first inert answers for many streams, asked in one request that the child
    analyses while the caller goes on; :meth:`results` waits for them."""

    def __init__(self, readers: list[FileReader]) -> None:
        self._requests = [_request(r) for r in readers]
        streams = [d for q in self._requests if q is not None for d in q[2]]
        self._ticket = inert.submit(streams)

    def results(self) -> list[Prefetched | None]:
        answers = inert.collect(self._ticket)
        out: list[Prefetched | None] = []
        i = 0
        for q in self._requests:
            if q is None:
                out.append(None)
                continue
            got = answers[i : i + len(q[2])]
            i += len(q[2])
            usable = all(a.get("reason") != "retry" for a in got)
            out.append(Prefetched(q[0], q[1], got) if usable else None)
        return out


def prefetch(readers: list[FileReader]) -> list[Prefetched | None]:
    """The first inert answers for many streams in one round trip (see :func:`pickle_view`)."""
    return Prefetch(readers).results()


def _results(view: PickleView, answers: list[dict[str, object]]) -> list[tuple[str, Any]] | None:
    out: list[tuple[str, Any]] = []
    for answer in answers:
        if not answer.get("ok"):
            view.status = "not-scanned"
            view.reason = str(answer.get("reason"))
            return None
        out.extend(answer["results"].items())  # type: ignore[attr-defined]
    return out


def _judge(view: PickleView, results: list[tuple[str, Any]], refs: dict[Any, GlobalRef]) -> None:
    """The view's status and reached globals from the unpicklers' results."""
    pickle_like = constant = False
    seen: set[tuple[str, str, str]] = set()
    view.reached = []
    view.extensions = []
    view.loads = 0
    for by, res in results:
        who = "C unpickler" if by == "c" else "pure-Python unpickler"
        view.loads = max(view.loads, int(res["loads"]))
        globals_ = [tuple(g) for g in res["globals"]]
        exts = list(res["ext"])
        view.extensions.extend(e for e in exts if e not in view.extensions)
        live = [g for g in globals_ if g[2]]
        if res["calls"] or res["more_globals"] or live or (res["loads"] and (globals_ or exts)):
            pickle_like = True
        elif res["loads"]:
            constant = True
        for m, n, _live in globals_:
            if (m, n, who) in seen:
                continue
            seen.add((m, n, who))
            ok = is_allowed(m, n) and ELIDED_TEXT not in m + n
            view.reached.append(Reached(m, n, who, ok, refs.get(mapped(m, n)) or refs.get((m, n))))
    if view.status != "not-scanned":
        view.status = "pickle" if pickle_like else "constant" if constant else "not-pickle"


def _small_view(r: FileReader, view: PickleView, data: bytes, answers: list[Any]) -> PickleView:
    """A small stream the unpicklers read whole; walked only when the verdict needs it."""
    view._data = data
    results = _results(view, answers)
    if results is None:
        # the stream the walk builds differs where a payload is announced past the end
        # (cut there: an unpickler would allocate it first) or for joblib: ask for that
        walked = _walk(r.fresh())
        view._walks = walked[0]
        plan = _plan(r, walked)
        if plan is None or plan.streams(r, _RAW_BUDGETS[0])[0] == [data]:
            return view
        return _planned_view(r, PickleView(r, data), plan, None)
    _judge(view, results, {})
    if view.status != "pickle" and not _NEEDS_WALK.search(data, 1):
        return view  # no global, call or nested content, no joblib array: no walk needed
    walked = _walk(r.fresh())
    view._walks = walked[0]
    plan = _plan(r, walked)
    if plan is not None and plan.cut >= 0:
        return _planned_view(r, PickleView(r, data), plan, None)
    if plan is not None and plan.joblib:  # joblib's view, and each object array's pickle
        more = _results(view, inert.analyze_many(plan.streams(r, _RAW_BUDGETS[0])[0][1:]))
        if more is None:
            return view
        results += more
    _judge(view, results, _refs(view.walks))
    return view


def pickle_view(r: FileReader, ready: Prefetched | None = None) -> PickleView:
    """Run the real unpicklers, inert, over the stream ``r`` covers (from its start)."""
    view = PickleView(r)
    if ready is not None and ready.plan is None:
        assert ready.data is not None
        return _small_view(r, view, ready.data, ready.answers)
    if ready is not None:
        assert ready.plan is not None
        return _planned_view(r, view, ready.plan, ready.answers)
    req = _request(r)
    if req is None:
        return view
    plan, data, streams = req
    if data is not None:
        return _small_view(r, view, data, inert.analyze_many(streams))
    assert plan is not None
    return _planned_view(r, view, plan, None)


def _planned_view(
    r: FileReader, view: PickleView, plan: _Plan, first: list[Any] | None
) -> PickleView:
    """The unpicklers read the stream the walk built (payloads cut), with more of the raw
    rest where they stop past the walk; ``first``: the answers for the first budget."""
    cut = plan.cut
    view._walks = plan.walks
    refs = _refs(plan.walks)
    results: list[tuple[str, Any]] = []
    for budget in _RAW_BUDGETS:
        truncated = False
        streams, plain_stop = plan.streams(r, budget)
        if first is not None and budget == _RAW_BUDGETS[0]:
            answers = first
        else:
            answers = inert.analyze_many(streams)
        got = _results(view, answers)
        if got is None:
            return view
        results = got
        for _by, res in results:
            # it read all it was given and the stream goes on: it gets more (with or
            # without an error: a load may end exactly where the given bytes do)
            if res["at_end"] and cut < 0 and plain_stop + budget < r.length:
                truncated = True
        if not truncated:
            break
    else:
        view.status = "not-scanned"
        view.reason = (
            f"the unpickler reads past the {_RAW_BUDGETS[-1] >> 20} MiB it can be given "
            "outside the opcode walk"
        )
    _judge(view, results, refs)
    return view
