"""Delayed smudges answered before git-lfs answers, for the filter proxy.

When git may delay a smudge (``can-delay=1``), the object is allowed and the
local store has no file for it, git-lfs answers ``delayed`` and queues a
download. The filter proxy then tells git ``delayed`` at once and sends the
request on to git-lfs without waiting (:class:`EarlyDelays`): git goes on
with the next file while git-lfs takes the requests in bulk. A thread reads
git-lfs's answers as they come (so git-lfs never waits to write one, and so
never stops reading our requests); before git-lfs is asked anything else,
the proxy waits until every answer is in (:meth:`EarlyDelays.settle`). An
object already asked for is not sent ahead again.

An answer other than ``delayed`` (the object arrived meanwhile, from a
reference repository for instance, or git-lfs failed) is kept: git is told
that the path is available, and its request is then served from the store,
or sent to git-lfs again as an ordinary smudge (its content, or its error,
reaches git as git-lfs gives it). Nothing is written on git-lfs's word alone:
the proxy checks every content as before.

For ``list_available_blobs``, :meth:`EarlyDelays.ready` names the delayed
paths that need no wait: those git-lfs did not delay, and the oldest few
whose download is in the store (downloads finish in about the order asked),
so that git gets them in batches instead of one per question.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import IO, Protocol

from ml_integrity.core.lfs import Pointer
from ml_integrity.git.pktline import FLUSH, PktError, parse_meta, read_list, read_pkt

__all__ = ["LOOK_AHEAD", "EarlyDelays"]

LOOK_AHEAD = 64
"""How many of the oldest delayed paths are looked up in the store per question."""


class _Waiting(Protocol):
    @property
    def pointer(self) -> Pointer: ...


def _pkt(data: bytes) -> bytes:
    return b"%04x" % (len(data) + 4) + data


class EarlyDelays:
    """The smudge requests git was told are delayed, whose git-lfs answer is not read yet."""

    def __init__(self) -> None:
        self.asked: set[str] = set()
        """The oids sent ahead (a second path with the same object is asked the usual way)."""
        self.answered: dict[str, str] = {}
        """path -> git-lfs's answer when it was not ``delayed`` (``success``, ``error``)."""
        self.waiting: set[str] = set()
        """Paths git-lfs delayed and has not listed as available yet."""
        self._in_flight: deque[str] = deque()
        self._cv = threading.Condition()
        self._reader: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._closed = False

    @property
    def in_flight(self) -> bool:
        with self._cv:
            return bool(self._in_flight)

    def may_send(self, pointer: Pointer) -> bool:
        return pointer.oid not in self.asked and self._failure is None

    def send(
        self, cin: IO[bytes], cout: IO[bytes], lines: list[str], content: bytes, path: str, oid: str
    ) -> None:
        """Write one smudge request ahead (buffered: git-lfs gets them in bulk, and all of
        them by :meth:`settle`); its answer is read by the reader thread."""
        request = b"".join(_pkt(x.encode("utf-8", "surrogateescape") + b"\n") for x in lines)
        with self._cv:
            self._in_flight.append(path)
            self._cv.notify()
        if self._reader is None:
            self._reader = threading.Thread(
                target=self._read, args=(cout,), name="git-lfs answers", daemon=True
            )
            self._reader.start()
        self.asked.add(oid)
        try:
            cin.write(request + FLUSH + _pkt(content) + FLUSH)
        except (OSError, ValueError) as exc:
            raise PktError(f"git-lfs stopped reading ({exc})") from exc

    def settle(self, cin: IO[bytes]) -> None:
        """Send what is buffered and wait for every answer in flight (PktError if git-lfs
        stops)."""
        try:
            cin.flush()
        except (OSError, ValueError) as exc:
            raise PktError(f"git-lfs stopped reading ({exc})") from exc
        with self._cv:
            while self._in_flight and self._failure is None:
                self._cv.wait()
            if self._failure is not None:
                raise PktError(f"git-lfs stopped ({self._failure})")

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    def _read(self, cout: IO[bytes]) -> None:
        """The reader thread: one answer per request in flight, in order."""
        while True:
            with self._cv:
                while not self._in_flight and not self._closed:
                    self._cv.wait()
                if not self._in_flight:
                    return
            try:
                state = _read_answer(cout)
            except BaseException as exc:  # git-lfs went away: settle() says so
                with self._cv:
                    self._failure = exc
                    self._cv.notify_all()
                return
            with self._cv:
                path = self._in_flight.popleft()
                if state == "delayed":
                    self.waiting.add(path)
                else:
                    self.answered[path] = state
                self._cv.notify_all()

    def ready(
        self, delayed: Mapping[str, _Waiting], present: Callable[[Pointer], bool] | None
    ) -> list[str]:
        """Delayed paths (of ``delayed``) that need no wait; see the module docstring.
        Call after :meth:`settle`."""
        out = [p for p in self.answered if p in delayed]
        if present is not None:
            for path, waiting in itertools.islice(delayed.items(), LOOK_AHEAD):
                if path not in self.answered and present(waiting.pointer):
                    out.append(path)
        return out


def _read_answer(cout: IO[bytes]) -> str:
    """One smudge answer: ``delayed``; or ``success`` (its content is not needed: the
    object is in the store now, and is read and checked from there); or the error."""
    status = parse_meta(read_list(cout)).get("status", "error")
    if status != "success":
        return status
    while read_pkt(cout) is not None:
        pass
    return parse_meta(read_list(cout)).get("status", "success")
