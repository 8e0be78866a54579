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

import struct
from dataclasses import dataclass, field

from ml_integrity.scan import inert
from ml_integrity.scan.allowlist import is_allowed, mapped
from ml_integrity.scan.readers import FileReader
from ml_integrity.scan.walker import _TABLE, Analysis, GlobalRef, Span, analyze

__all__ = ["OPCODES", "PickleView", "Prefetched", "Reached", "pickle_view", "prefetch"]

OPCODES = frozenset(_TABLE)
"""Every opcode byte both CPython unpicklers know; any other first byte fails at once."""
ELIDED_TEXT = "__ml_integrity_elided_text__"
_RAW_BUDGETS = (64 << 10, 4 << 20, 64 << 20)
_MAX_STACKED = 4096


@dataclass(frozen=True)
class Reached:
    """A global an unpickler reached: as written, the name it loads, who reached it."""

    module: str
    name: str
    by: str  # "C unpickler" | "pure-Python unpickler"
    allowed: bool
    ref: GlobalRef | None = None

    @property
    def qualname(self) -> str:
        m, n = mapped(self.module, self.name)
        return f"{m}.{n}"


@dataclass
class PickleView:
    status: str = "not-pickle"  # "pickle" | "constant" | "not-pickle" | "not-scanned"
    reason: str | None = None
    reached: list[Reached] = field(default_factory=list)
    extensions: list[int] = field(default_factory=list)
    walks: list[Analysis] = field(default_factory=list)
    loads: int = 0  # most complete loads by either unpickler
    walked: int = 0  # complete loads the walk followed

    @property
    def protocol(self) -> int:
        return self.walks[0].protocol if self.walks else 0


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


@dataclass
class _Plan:
    walks: list[Analysis]
    stop: int
    first_raw: int
    cut: int
    joblib: bool

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


def _plan(r: FileReader) -> _Plan | None:
    if r.length == 0 or r.read_at(0, 1)[0] not in OPCODES:
        return None  # both unpicklers fail on the first byte
    walks, stop = _walk(r.fresh())
    joblib = any(s.kind in ("array", "nested") for a in walks for s in a.spans)
    first_raw = min(
        (s.start for a in walks for s in a.spans if s.kind in ("array", "nested")), default=stop
    )
    past_end = [s for a in walks for s in a.spans if s.start + s.length > r.length]
    cut = min((s.length_at if s.length_at >= 0 else s.start for s in past_end), default=-1)
    if cut >= 0:  # a payload announced past the end: every loader stops there
        stop = first_raw = min(first_raw, cut)
    return _Plan(walks, stop, first_raw, cut, joblib)


Prefetched = tuple[_Plan, list[dict[str, object]]]


def prefetch(readers: list[FileReader]) -> list[Prefetched | None]:
    """The first inert answers for many streams in one round trip (see :func:`pickle_view`)."""
    plans = [_plan(r) for r in readers]
    batches: list[list[bytes]] = []
    for r, plan in zip(readers, plans, strict=True):
        batches.append(plan.streams(r, _RAW_BUDGETS[0])[0] if plan else [])
    answers = inert.analyze_many([d for b in batches for d in b])
    out: list[Prefetched | None] = []
    i = 0
    for plan, batch in zip(plans, batches, strict=True):
        got = answers[i : i + len(batch)]
        i += len(batch)
        usable = plan is not None and all(a.get("reason") != "retry" for a in got)
        out.append((plan, got) if plan is not None and usable else None)
    return out


def pickle_view(r: FileReader, ready: Prefetched | None = None) -> PickleView:
    """Run the real unpicklers, inert, over the stream ``r`` covers (from its start)."""
    view = PickleView()
    plan = ready[0] if ready else _plan(r)
    if plan is None:
        return view
    walks, cut = plan.walks, plan.cut
    view.walks = walks
    view.walked = sum(1 for a in walks if a.complete)
    refs = _refs(walks)
    results: list[tuple[str, dict[str, object]]] = []
    for budget in _RAW_BUDGETS:
        results = []
        truncated = False
        streams, plain_stop = plan.streams(r, budget)
        if ready is not None and budget == _RAW_BUDGETS[0]:
            answers = ready[1]
        else:
            answers = inert.analyze_many(streams)
        for answer in answers:
            if not answer.get("ok"):
                view.status = "not-scanned"
                view.reason = str(answer.get("reason"))
                return view
            for by, res in answer["results"].items():  # type: ignore[attr-defined]
                results.append((by, res))
                if res["error"] and res["at_end"] and cut < 0 and plain_stop + budget < r.length:
                    truncated = True
        if not truncated:
            break
    else:
        view.status = "not-scanned"
        view.reason = (
            f"the unpickler reads past the {_RAW_BUDGETS[-1] >> 20} MiB it can be given "
            "outside the opcode walk"
        )
    pickle_like = constant = False
    seen: set[tuple[str, str, str]] = set()
    for by, res in results:
        who = "C unpickler" if by == "c" else "pure-Python unpickler"
        view.loads = max(view.loads, int(res["loads"]))  # type: ignore[call-overload]
        globals_ = [tuple(g) for g in res["globals"]]  # type: ignore[attr-defined]
        exts = list(res["ext"])  # type: ignore[call-overload]
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
    return view
