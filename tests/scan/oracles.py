"""The real tools as oracles: what CPython's unpicklers, numpy, zipfile and tarfile would do."""

from __future__ import annotations

import collections
import importlib.util
import io
import pickle
from typing import Any

from ml_integrity.scan.allowlist import is_allowed

_HARMLESS: dict[tuple[str, str], object] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "Counter"): collections.Counter,
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "complex"): complex,
}


class _Stop(Exception):
    pass


def _recording(base: type) -> type:
    class Recording(base):  # type: ignore[misc]
        seen: list[tuple[str, str]]

        def find_class(self, module: str, name: str) -> Any:
            self.seen.append((module, name))
            if (module, name) in _HARMLESS:
                return _HARMLESS[(module, name)]
            raise _Stop  # anything else: recorded, never imported

    return Recording


_C = _recording(pickle.Unpickler)
_PY = _recording(pickle._Unpickler)


def reached_globals(data: bytes) -> set[tuple[str, str]]:
    """Globals the real C and pure-Python unpicklers reach, stacked pickles until the end.

    Only harmless allowlisted globals are really resolved; the first other one stops the
    run after it is recorded. EXT opcodes count as ("<ext>", code).
    """
    out: set[tuple[str, str]] = set()
    for cls in (_C, _PY):
        f = io.BytesIO(data)
        while f.tell() < len(data):
            u = cls(f, encoding="latin1")
            u.seen = []
            try:
                u.load()
            except ValueError as exc:
                if "extension code" in str(exc):
                    out.add(("<ext>", str(exc)))
                out.update(u.seen)
                break
            except BaseException:  # any failure ends the real load too
                out.update(u.seen)
                break
            out.update(u.seen)
    return out


def importable(module: str) -> bool:
    """Does the real import system find the module's top-level package (nothing is run)?"""
    top = module.split(".", 1)[0]
    if not top.isidentifier():
        return False
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return True


def runs_unlisted(data: bytes) -> bool:
    """Would a real unpickler import something outside the allowlist (that exists here)?"""
    return any(
        m == "<ext>" or (not is_allowed(m, n) and importable(m)) for m, n in reached_globals(data)
    )
