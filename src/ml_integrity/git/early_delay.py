"""Delayed smudges answered before git-lfs answers, for the filter proxy.

When git may delay a smudge (``can-delay=1``), the object is allowed and the
local store has no file for it, git-lfs answers ``delayed`` and queues a
download. The filter proxy then tells git ``delayed`` at once and sends the
request on to git-lfs without waiting (:class:`EarlyDelays`): git goes on
with the next file while git-lfs reads the requests in bulk. The answers are
read before git-lfs is asked anything else, and whenever the requests sent
ahead reach :data:`AHEAD_BYTES` (less than any pipe holds: git-lfs can
always take them in while it waits for us to read a long answer, so neither
side waits for the other forever). An object already asked for is not sent
ahead again (its second request could be answered with its whole content).

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
from collections import deque
from collections.abc import Callable, Mapping
from typing import IO, Protocol

from ml_integrity.core.lfs import Pointer
from ml_integrity.git.pktline import FLUSH, parse_meta, read_list, read_pkt

__all__ = ["AHEAD_BYTES", "LOOK_AHEAD", "EarlyDelays"]

AHEAD_BYTES = 4096
"""Request bytes sent ahead at most: one page, the least a pipe holds."""
LOOK_AHEAD = 64
"""How many of the oldest delayed paths are looked up in the store per question."""


class _Waiting(Protocol):
    @property
    def pointer(self) -> Pointer: ...


def _pkt(data: bytes) -> bytes:
    return b"%04x" % (len(data) + 4) + data


class EarlyDelays:
    """The smudge requests git was told are delayed, whose git-lfs answer is not read yet."""

    def __init__(self, limit: int = AHEAD_BYTES) -> None:
        self.limit = limit
        self.in_flight: deque[str] = deque()
        self.pending = 0
        """Bytes written since the answers were last read."""
        self.asked: set[str] = set()
        """The oids sent ahead (a second path with the same object is asked the usual way)."""
        self.answered: dict[str, str] = {}
        """path -> git-lfs's answer when it was not ``delayed`` (``success``, ``error``)."""
        self.waiting: set[str] = set()
        """Paths git-lfs delayed and has not listed as available yet."""

    def may_send(self, pointer: Pointer) -> bool:
        return pointer.oid not in self.asked

    def send(
        self, cin: IO[bytes], cout: IO[bytes], lines: list[str], content: bytes, path: str, oid: str
    ) -> None:
        """Write one smudge request ahead; read the answers first when the bytes sent
        ahead would pass the limit."""
        request = b"".join(
            _pkt(x.encode("utf-8", "surrogateescape") + b"\n") for x in lines
        ) + b"".join((FLUSH, _pkt(content), FLUSH))
        if self.pending + len(request) > self.limit:
            self.settle(cin, cout)
        cin.write(request)  # into the pipe's buffer: flushed by settle()
        self.pending += len(request)
        self.in_flight.append(path)
        self.asked.add(oid)

    def settle(self, cin: IO[bytes], cout: IO[bytes]) -> None:
        """Send what is buffered and read every answer in flight (PktError if git-lfs stops)."""
        cin.flush()
        while self.in_flight:
            state = _read_answer(cout)
            path = self.in_flight.popleft()
            if state == "delayed":
                self.waiting.add(path)
            else:
                self.answered[path] = state
        self.pending = 0

    def ready(
        self, delayed: Mapping[str, _Waiting], present: Callable[[Pointer], bool] | None
    ) -> list[str]:
        """Delayed paths (of ``delayed``) that need no wait; see the module docstring."""
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
