"""CPython's own unpicklers, run inert, in a child process with limits.

Why an inert unpickler cannot run code: an unpickler does nothing by itself
but push constants and containers; everything else goes through three doors,
and each one is replaced here.

- ``find_class`` (``GLOBAL``, ``STACK_GLOBAL``, ``INST``, and ``EXT1/2/4``
  on an extension code's first use) returns a fresh stand-in *class*
  instead of importing anything. The name is recorded.
- ``persistent_load`` (``PERSID``, ``BINPERSID``) returns a stand-in.
- The extension registry: the child clears ``copyreg``'s registry and cache
  (shared by the C unpickler), so an ``EXT`` code is either unregistered
  (the C unpickler stops; the code is recorded) or reaches our
  ``get_extension`` override (pure-Python unpickler).

Every call the unpickler then makes goes to a stand-in: ``REDUCE``, ``INST``
and ``OBJ`` call the class (the metaclass ``__call__`` returns a bare
instance); ``NEWOBJ(_EX)`` calls our ``__new__``; ``BUILD`` finds our no-op
``__setstate__`` (so neither ``__dict__`` nor ``setattr`` is touched);
``APPEND(S)``, ``SETITEM(S)``, ``ADDITEMS`` find our no-op ``append``,
``extend``, ``__setitem__`` and ``add``. No stand-in defines ``__getattr__``,
so ``__getinitargs__`` and the like are never found. Stand-ins never raise
where a real object would not, so the inert run goes at least as far as a
real one up to the first global; every call is counted.

Each stream is read by the C ``pickle.Unpickler`` and by the pure-Python
``pickle._Unpickler`` (joblib's base), with ``encoding="latin1"`` (never
fails to decode, so the inert run never stops earlier than under another
encoding), one pickle after another until the end or the first error.

The child is forked once per scanning process and serves requests over a
pipe. It has an address-space limit (RLIMIT_AS), a CPU-time limit per
request (RLIMIT_CPU, so a hang is killed by the kernel), and its answer is
capped; a child that dies, runs out of memory or overruns is reported as
"could not be scanned". Where ``fork`` is not available the analysis runs
in-process, with the extension registry saved and restored around it.
"""

from __future__ import annotations

import copyreg
import io
import json
import os
import pickle
import re
import select
import struct
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["InertResult", "analyze_streams", "run_inert"]

InertResult = dict[str, Any]

MEMORY_BUDGET = 2 << 30
CPU_SECONDS = 20
WALL_SECONDS = 120.0
MAX_LOADS = 4096
MAX_GLOBALS = 256
MAX_RESPONSE = 4 << 20
_EXT_ERROR = re.compile(r"unregistered extension code (\d+)")


# --- stand-ins (child side) ---------------------------------------------------------

_EVENTS: dict[str, Any] = {}


def importable(module: str) -> bool:
    """Would importing ``module`` find something (and so run it)? Nothing is imported."""
    import importlib.machinery

    top = module.split(".", 1)[0]
    if not top or not top.isprintable():
        return False
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        return True
    try:
        return importlib.machinery.PathFinder.find_spec(top) is not None
    except (ImportError, ValueError, OSError):
        return True


def _dotted(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def _called(obj: object) -> None:
    """A stand-in was called; it counts unless its name could never be imported."""
    cls = obj if isinstance(obj, type) else type(obj)
    if getattr(cls, "_live", True):
        _EVENTS["calls"] = _EVENTS.get("calls", 0) + 1


class _Meta(type):
    def __call__(cls, *args: object, **kwargs: object) -> Any:
        _called(cls)
        target: Any = cls
        return object.__new__(target)

    def __setitem__(cls, key: object, value: object) -> None:
        _called(cls)


class _Inert(metaclass=_Meta):
    _live = True

    def __new__(cls, *args: object, **kwargs: object) -> Any:
        _called(cls)
        return object.__new__(cls)

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __call__(self, *args: object, **kwargs: object) -> Any:
        _called(self)
        return object.__new__(type(self))

    def __iter__(self) -> Iterator[object]:
        return iter(())

    def __setstate__(self, *args: object) -> None:
        _called(self)

    def __setitem__(self, *args: object) -> None:
        _called(self)

    def append(self, *args: object) -> None:
        _called(self)

    def extend(self, *args: object) -> None:
        _called(self)

    def add(self, *args: object) -> None:
        _called(self)


def _stand_in(module: object, name: object) -> type:
    callable_name = _dotted(str(module)) and _dotted(str(name))
    found = _EVENTS.setdefault("globals", [])
    if len(found) < MAX_GLOBALS:
        found.append([str(module)[:300], str(name)[:300], importable(str(module))])
    else:
        _EVENTS["more_globals"] = True
    return _Meta("InertGlobal", (_Inert,), {"_live": callable_name})


_PERSISTENT: Any = _Meta("InertPersistent", (_Inert,), {})


def _persistent(pid: object) -> object:
    """A fresh stand-in object (of one class: a class per id costs a type creation)."""
    _EVENTS["persistent"] = _EVENTS.get("persistent", 0) + 1
    return object.__new__(_PERSISTENT)


class _C(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        return _stand_in(module, name)

    def persistent_load(self, pid: Any) -> Any:
        return _persistent(pid)


class _Py(pickle._Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        return _stand_in(module, name)

    def persistent_load(self, pid: Any) -> Any:
        return _persistent(pid)

    def get_extension(self, code: int) -> None:
        if code <= 0:
            raise pickle.UnpicklingError("EXT specifies code <= 0")
        _EVENTS.setdefault("ext", []).append(code)
        self.append(_Meta("InertExtension", (_Inert,), {}))  # type: ignore[attr-defined]


def _run_one(cls: type, data: bytes) -> InertResult:
    _EVENTS.clear()
    f = io.BytesIO(data)
    loads = 0
    error = None
    while loads < MAX_LOADS and f.tell() < len(data):
        try:
            cls(f, encoding="latin1").load()
        except MemoryError:
            raise
        except BaseException as exc:  # any error ends this unpickler's run
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            error = f"{type(exc).__name__}: {exc}"[:300]
            m = _EXT_ERROR.search(error) if isinstance(exc, ValueError) else None
            if m:
                _EVENTS.setdefault("ext", []).append(int(m.group(1)))
            break
        loads += 1
    return {
        "loads": loads,
        "globals": _EVENTS.get("globals", []),
        "more_globals": bool(_EVENTS.get("more_globals")),
        "ext": _EVENTS.get("ext", [])[:MAX_GLOBALS],
        "calls": _EVENTS.get("calls", 0),
        "persistent": _EVENTS.get("persistent", 0),
        "error": error,
        "at_end": f.tell() >= len(data),
    }


def _settled(res: InertResult) -> bool:
    """Did the C unpickler load the whole stream as one pickle, reaching nothing?"""
    return (
        res["error"] is None
        and res["loads"] == 1
        and res["at_end"]
        and not (res["globals"] or res["ext"] or res["persistent"] or res["calls"])
        and not res["more_globals"]
    )


def run_inert(data: bytes) -> dict[str, InertResult]:
    """Both unpicklers over ``data`` (stacked pickles until the end). Call only in a child.

    The pure-Python run is left out when the C run settles the question: one load
    that ends where the stream ends, without error, and no global, extension code,
    persistent id or call. Every opcode's argument is as long for one unpickler as
    for the other (fixed widths, length prefixes, lines), so the pure-Python
    unpickler executes the same opcodes at the same offsets, or fewer when it
    rejects a value the C one accepts; none of them reaches anything.
    """
    c = _run_one(_C, data)
    if _settled(c):
        return {"c": c}
    return {"c": c, "py": _run_one(_Py, data)}


def _clear_registry() -> None:
    for d in (copyreg._extension_registry, copyreg._inverted_registry, copyreg._extension_cache):  # type: ignore[attr-defined]
        d.clear()


# --- the child process -------------------------------------------------------------------


def _read_exact(fd: int, n: int) -> bytes:
    parts = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _close_inherited(keep: set[int]) -> None:
    """Close every descriptor the fork inherited (pipes to git and others) but ours."""
    try:
        fds = [int(x) for x in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _child(rfd: int, wfd: int) -> None:  # pragma: no cover - runs in the forked child
    # the C module: ``signal`` builds its enums at import, a cost on every scan
    import _signal  # type: ignore[import-not-found,unused-ignore]
    import resource  # imported by the parent before the fork (see _Worker._start)

    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    _close_inherited({rfd, wfd})
    _clear_registry()
    try:
        with open("/proc/self/statm") as f:
            vm = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = vm + MEMORY_BUDGET
        if hard == resource.RLIM_INFINITY or limit <= hard:
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (OSError, ValueError):
        pass
    while True:
        try:
            (count,) = struct.unpack("<I", _read_exact(rfd, 4))
            items = []
            for _ in range(count):
                (n,) = struct.unpack("<Q", _read_exact(rfd, 8))
                items.append(_read_exact(rfd, n))
        except EOFError:
            return
        answers: list[dict[str, Any]] = []
        broken = False
        for data in items:
            if broken:
                answers.append({"ok": False, "reason": "retry"})
                continue
            try:
                used = resource.getrusage(resource.RUSAGE_SELF)
                soft = int(used.ru_utime + used.ru_stime) + 1 + CPU_SECONDS
                _, hard = resource.getrlimit(resource.RLIMIT_CPU)
                if hard == resource.RLIM_INFINITY or soft <= hard:
                    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
            except (OSError, ValueError):
                pass
            try:
                answers.append({"ok": True, "results": run_inert(data)})
            except MemoryError:
                answers.append(
                    {"ok": False, "reason": "the unpickler ran out of its memory budget"}
                )
                broken = True
            except RecursionError:
                answers.append({"ok": False, "reason": "the unpickler nested too deeply"})
                broken = True
        out = json.dumps(answers).encode()
        if len(out) > MAX_RESPONSE * max(1, len(items)):
            out = json.dumps(
                [{"ok": False, "reason": "the analysis produced too much output"}] * len(items)
            ).encode()
            broken = True
        _write_all(wfd, struct.pack("<Q", len(out)) + out)
        if broken:
            return  # a child past its limits is not reused


class _Worker:
    """The analysis child and the pipe to it: requests go out in order, answers come back
    in order. Requests can be queued (:meth:`submit`) while earlier ones are analysed, so
    the child works while the parent walks and validates; :meth:`collect` waits for one."""

    def __init__(self) -> None:
        self.pid = 0
        self.wfd = -1
        self.rfd = -1
        self._next = 0
        self._queue: list[tuple[int, int]] = []  # (ticket, items) sent, not yet answered
        self._done: dict[int, list[dict[str, Any]]] = {}
        self._out = bytearray()  # request bytes not yet written
        self._in = bytearray()  # answer bytes not yet parsed

    def _start(self) -> None:
        import _signal  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
        import importlib.machinery  # noqa: F401 - the child must not import after the fork
        import resource  # noqa: F401
        import warnings

        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 0
            try:
                os.close(req_w)
                os.close(resp_r)
                _child(req_r, resp_w)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(req_r)
        os.close(resp_w)
        os.set_blocking(req_w, False)
        self.pid, self.wfd, self.rfd = pid, req_w, resp_r

    def start(self) -> None:
        """Fork the child now (it is otherwise forked on the first request)."""
        if not self.pid:
            self._start()

    def stop(self, why: str = "retry") -> None:
        """Kill the child; every request still queued is answered with ``why`` (one item)
        or ``retry`` (several: which one failed is not known, each is asked again)."""
        for i, (ticket, count) in enumerate(self._queue):
            reason = why if i == 0 and count == 1 else "retry"
            self._done[ticket] = [{"ok": False, "reason": reason}] * count
        self._queue.clear()
        self._out.clear()
        self._in.clear()
        if not self.pid:
            return
        for fd in (self.wfd, self.rfd):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.kill(self.pid, 9)
        except OSError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except OSError:
            pass
        self.pid = 0

    def submit(self, items: list[bytes]) -> int:
        """Queue one request (all of ``items``); its answers are for :meth:`collect`."""
        ticket = self._next
        self._next += 1
        if not items:
            self._done[ticket] = []
            return ticket
        if not self.pid:
            self._start()
        self._out += struct.pack("<I", len(items))
        for data in items:
            self._out += struct.pack("<Q", len(data))
            self._out += data
        self._queue.append((ticket, len(items)))
        self._pump(block=False)
        return ticket

    def collect(self, ticket: int) -> list[dict[str, Any]]:
        while ticket not in self._done:
            self._pump(block=True)
        return self._done.pop(ticket)

    def _pump(self, *, block: bool) -> None:
        """Write what is pending and read what has arrived; with ``block``, until at least
        one answer is complete (or the child is gone)."""

        limit = "the unpickler exceeded its CPU or memory limit"
        while self._queue:
            poller = select.poll()
            poller.register(self.rfd, select.POLLIN)
            if self._out:
                poller.register(self.wfd, select.POLLOUT)
            events = poller.poll(int(WALL_SECONDS * 1000) if block else 0)
            if not events:
                if block:
                    self.stop(f"the unpickler ran longer than {WALL_SECONDS:.0f} s")
                return
            answered = False
            for fd, ev in events:
                if not self.pid:
                    return
                if fd == self.wfd:
                    try:
                        n = os.write(self.wfd, self._out[: 1 << 20])
                    except BlockingIOError:
                        continue
                    except OSError:
                        self.stop(limit)
                        return
                    del self._out[:n]
                elif ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
                    try:
                        chunk = os.read(self.rfd, 1 << 20)
                    except OSError:
                        chunk = b""
                    if not chunk:
                        self.stop(limit)
                        return
                    self._in += chunk
                    answered = self._parse() or answered
            if answered and block:
                return

    def _parse(self) -> bool:
        """Complete answers in the input buffer go to their requests."""
        got = False
        while self._queue and len(self._in) >= 8:
            ticket, count = self._queue[0]
            (n,) = struct.unpack_from("<Q", self._in)
            if n > (MAX_RESPONSE + 1024) * count:
                self.stop("the unpickler exceeded its CPU or memory limit")
                return True
            if len(self._in) < 8 + n:
                break
            raw = bytes(self._in[8 : 8 + n])
            del self._in[: 8 + n]
            self._queue.pop(0)
            got = True
            try:
                answers: list[dict[str, Any]] = json.loads(raw)
            except ValueError:
                answers = []
            if len(answers) != count:
                self._done[ticket] = [
                    {"ok": False, "reason": "the unpickler answered out of turn"}
                ] * count
                self.stop()
                return True
            self._done[ticket] = answers
            if not all(a.get("ok") for a in answers):
                self.stop()  # a child past its limits is not reused; what is queued: retry
                return True
        return got


_WORKER = _Worker()


def _in_process(data: bytes) -> dict[str, Any]:
    saved = [
        dict(d)
        for d in (copyreg._extension_registry, copyreg._inverted_registry, copyreg._extension_cache)  # type: ignore[attr-defined]
    ]
    try:
        _clear_registry()
        return {"ok": True, "results": run_inert(data)}
    except (MemoryError, RecursionError) as exc:
        return {"ok": False, "reason": f"the unpickler failed: {type(exc).__name__}"}
    finally:
        for d, old in zip(
            (copyreg._extension_registry, copyreg._inverted_registry, copyreg._extension_cache),  # type: ignore[attr-defined]
            saved,
            strict=True,
        ):
            d.clear()
            d.update(old)


def _forked() -> bool:
    return hasattr(os, "fork") and sys.platform != "win32"


def start() -> None:
    """Fork the analysis child ahead of the first request (overlaps its start with work)."""
    if _forked():
        _WORKER.start()


def submit(items: list[bytes]) -> int:
    """Queue ``items`` for analysis and return at once; :func:`collect` gives the answers.

    The child analyses queued requests in order while the caller goes on. An answer
    may be ``{"ok": False, "reason": "retry"}`` when an earlier request broke the child:
    that item was not analysed (ask again, alone: :func:`analyze_many` does)."""
    if _forked():
        return _WORKER.submit(items)
    ticket = _WORKER._next
    _WORKER._next += 1
    _WORKER._done[ticket] = [_in_process(d) for d in items]
    return ticket


def collect(ticket: int) -> list[dict[str, Any]]:
    """The answers of a request made by :func:`submit` (waits for them)."""
    return _WORKER.collect(ticket)


def analyze_many(items: list[bytes]) -> list[dict[str, Any]]:
    """One answer per stream: ``{"ok": True, "results": {"c": ..., "py": ...}}``, or
    ``{"ok": False, "reason": ...}``. One round trip to the child for all; a stream
    not analysed because another one broke the child is asked again on its own."""
    if not items:
        return []
    answers = collect(submit(items))
    for i, a in enumerate(answers):
        while a.get("reason") == "retry":
            a = collect(submit([items[i]]))[0]
        answers[i] = a
    return answers


def analyze_streams(data: bytes) -> dict[str, Any]:
    """The answer for one stream (see :func:`analyze_many`)."""
    return analyze_many([data])[0]


def _shutdown() -> None:
    _WORKER.stop()


import atexit  # noqa: E402

atexit.register(_shutdown)
