"""Delayed smudges answered before git-lfs answers, for the filter proxy.

When git may delay a smudge (``can-delay=1``), the object is allowed and the
local store does not have it, git-lfs answers ``delayed`` and queues a
download. The filter proxy then tells git ``delayed`` at once and sends the
request on to git-lfs without waiting for its answer (:class:`EarlyDelays`
keeps the paths in flight): git goes on with the next file while git-lfs
reads the requests in bulk. The answers are read before anything else is
asked of git-lfs, and at most :data:`IN_FLIGHT` are outstanding (so neither
pipe fills up while the other side waits).

An answer other than ``delayed`` (the object arrived meanwhile, or git-lfs
failed) is kept: git is told that the path is available, and its request is
then served from the store, or sent to git-lfs again as an ordinary smudge
(its content, or its error, reaches git as git-lfs gives it). Nothing is
written to the work tree on git-lfs's word alone: every content is checked
by the proxy as before.
"""

from __future__ import annotations

from collections import deque
from typing import IO

from ml_integrity.git.pktline import parse_meta, read_list, read_pkt

__all__ = ["IN_FLIGHT", "EarlyDelays"]

IN_FLIGHT = 256
"""Requests sent ahead at most (their requests fill git-lfs's stdin pipe, 64 KiB,
long before their answers, about 20 bytes each, fill its stdout)."""


class EarlyDelays:
    """The smudge requests git was told are delayed, whose git-lfs answer is not read yet."""

    def __init__(self, limit: int = IN_FLIGHT) -> None:
        self.limit = limit
        self.in_flight: deque[str] = deque()
        self.answered: dict[str, str] = {}
        """path -> git-lfs's answer when it was not ``delayed`` (``success``, ``error``)."""

    def sent(self, path: str) -> bool:
        """Record a request sent ahead; True when the answers must be read now."""
        self.in_flight.append(path)
        return len(self.in_flight) >= self.limit

    def read_answers(self, cout: IO[bytes]) -> None:
        """Read git-lfs's answers to the requests in flight (raises PktError if it stops)."""
        while self.in_flight:
            state = _read_answer(cout)
            path = self.in_flight.popleft()
            if state != "delayed":
                self.answered[path] = state


def _read_answer(cout: IO[bytes]) -> str:
    """One smudge answer: ``delayed``; or ``success`` (its content is not needed: the
    object is in the store now, and is read and checked from there); or the error."""
    status = parse_meta(read_list(cout)).get("status", "error")
    if status != "success":
        return status
    while read_pkt(cout) is not None:
        pass
    return parse_meta(read_list(cout)).get("status", "success")
