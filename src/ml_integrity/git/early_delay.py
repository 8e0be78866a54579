"""Delayed smudges answered before git-lfs answers, for the filter proxy.

When git may delay a smudge (``can-delay=1``), the object is allowed and the
local store has no file for it, git-lfs answers ``delayed`` and queues a
download. The filter proxy then tells git ``delayed`` at once and queues the
request for git-lfs (:class:`EarlyDelays`): git goes on with the next file,
and git-lfs gets the requests in bulk, about one batch of downloads at a
time (:data:`AHEAD_BYTES`), whose answers are then read together
(:meth:`EarlyDelays.settle`; also before git-lfs is asked anything else).
Nothing is written to git-lfs between two settles, so its stdin pipe is
empty at each: a page is written at once, more by a thread while the answers
are read (git-lfs may be writing a long answer meanwhile). An object already
asked for is not sent ahead again.

An answer other than ``delayed`` (the object arrived meanwhile, from a
reference repository for instance, or git-lfs failed) is kept: git is told
that the path is available, and its request is then served from the store,
or sent to git-lfs again as an ordinary smudge (its content, or its error,
reaches git as git-lfs gives it). Nothing is written on git-lfs's word alone:
the proxy checks every content as before.

``list_available_blobs`` (:meth:`EarlyDelays.available`) names first the
delayed paths that need no wait: those git-lfs did not delay, and the
oldest few whose download is in the store (downloads finish in about the
order asked), so that git gets them in batches; git-lfs itself answers one
path or two per question.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import IO, Protocol

from ml_integrity.core.lfs import Pointer
from ml_integrity.git.pktline import (
    FLUSH,
    PktError,
    parse_meta,
    read_list,
    read_pkt,
    write_list,
)

__all__ = ["AHEAD_BYTES", "LOOK_AHEAD", "EarlyDelays"]

LOOK_AHEAD = 64
"""How many of the oldest delayed paths are looked up in the store per question."""
AHEAD_BYTES = 32 << 10
"""Requests queued before they are sent (about 100, git-lfs's batch of downloads)."""
_PAUSES = (0.001, 0.002, 0.004, 0.008)
"""How long to wait for the store (in seconds, one after the other) before git-lfs is
asked: when its downloads are fast, a few milliseconds bring many files at once."""
_PAGE = 4096
"""The least a pipe holds (and PIPE_BUF): a write this size into an empty pipe never waits."""


class _Waiting(Protocol):
    @property
    def pointer(self) -> Pointer: ...


class EarlyDelays:
    """The smudge requests git was told are delayed, whose git-lfs answer is not read yet."""

    def __init__(self, limit: int = AHEAD_BYTES) -> None:
        self.limit = limit
        self.asked: set[str] = set()
        """The oids sent ahead (a second path with the same object is asked the usual way)."""
        self.answered: dict[str, str] = {}
        """path -> git-lfs's answer when it was not ``delayed`` (``success``, ``error``)."""
        self.waiting: set[str] = set()
        """Paths git-lfs delayed and has not listed as available yet."""
        self.in_flight: deque[str] = deque()
        self._out = bytearray()
        self._asked_list = False

    def may_send(self, pointer: Pointer) -> bool:
        return pointer.oid not in self.asked

    def send(
        self, cin: IO[bytes], cout: IO[bytes], lines: list[str], content: bytes, path: str, oid: str
    ) -> None:
        """Queue one smudge request; :meth:`settle` once :data:`AHEAD_BYTES` are queued."""
        out = self._out
        for line in lines:
            data = line.encode("utf-8", "surrogateescape") + b"\n"
            out += b"%04x" % (len(data) + 4)
            out += data
        out += FLUSH + b"%04x" % (len(content) + 4) + content + FLUSH
        self.in_flight.append(path)
        self.asked.add(oid)
        if len(out) >= self.limit:
            self.settle(cin, cout)

    def settle(self, cin: IO[bytes], cout: IO[bytes]) -> None:
        """Send the queued requests and read every answer (PktError if git-lfs stops).

        Nothing was written to git-lfs since it answered the last request, so its stdin
        pipe is empty: up to one page is written at once (it cannot block); more is
        written by a thread while the answers are read (git-lfs may be writing a long
        answer and not reading)."""
        data = bytes(self._out)
        self._out.clear()
        failed: list[BaseException] = []
        writer = None
        if len(data) <= _PAGE:
            _write(cin, data, failed)
        else:
            writer = threading.Thread(target=_write, args=(cin, data, failed), daemon=True)
            writer.start()
        try:
            while self.in_flight:
                state = _read_answer(cout)
                path = self.in_flight.popleft()
                if state == "delayed":
                    self.waiting.add(path)
                else:
                    self.answered[path] = state
        finally:
            if writer is not None:
                writer.join()
        if failed:
            raise PktError(f"git-lfs stopped reading ({failed[0]})")

    def ready(
        self, delayed: Mapping[str, _Waiting], present: Callable[[Pointer], bool] | None
    ) -> list[str]:
        """Delayed paths (of ``delayed``) that need no wait: git-lfs did not delay them,
        or the store holds their object (the oldest few). Call after :meth:`settle`."""
        out = [p for p in self.answered if p in delayed]
        if present is not None:
            for path, waiting in itertools.islice(delayed.items(), LOOK_AHEAD):
                if path not in self.answered and present(waiting.pointer):
                    out.append(path)
        return out

    def available(
        self,
        cin: IO[bytes],
        cout: IO[bytes],
        lines: list[str],
        delayed: Mapping[str, _Waiting],
        present: Callable[[Pointer], bool] | None,
    ) -> tuple[list[str], list[str]]:
        """The answer to git's ``list_available_blobs``: the paths, and the status list.

        :meth:`ready`, waiting a little for the store when nothing is (each question
        to git-lfs returns one path or two); then git-lfs's own list less the paths
        served already. git-lfs is asked only while a path git waits for is delayed
        by it and not listed yet (asked after its last list, it fails): the first
        time (which starts its last batch), and when nothing else became ready. Its
        last list names every path it delayed and did not smudge itself (downloads
        that failed among them)."""
        ready = self.ready(delayed, present)
        if not ready and self._asked_list and present is not None:
            for pause in _PAUSES:
                time.sleep(pause)
                ready = self.ready(delayed, present)
                if ready:
                    break
        paths: list[str] = []
        status = ["status=success"]
        if self._lfs_has(delayed) and (not ready or not self._asked_list):
            self._asked_list = True
            while True:
                write_list(cin, lines)
                cin.flush()
                got = [p[9:] for p in read_list(cout) if p.startswith("pathname=")]
                status = read_list(cout)
                self.waiting.difference_update(got)
                paths = [p for p in got if p in delayed and p not in ready]
                if paths or ready or not got or not self._lfs_has(delayed):
                    break
                if parse_meta(status).get("status") != "success":
                    break
        return [*ready, *paths], status

    def _lfs_has(self, delayed: Mapping[str, _Waiting]) -> bool:
        """Does git-lfs still owe a list entry for a path git waits for? (The paths
        served from the store meanwhile are still on its list: they are not asked for.)"""
        waiting = self.waiting
        return any(p in waiting for p in delayed)


def _write(cin: IO[bytes], data: bytes, failed: list[BaseException]) -> None:
    try:
        cin.write(data)
        cin.flush()
    except (OSError, ValueError) as exc:  # git-lfs went away: the reader says so too
        failed.append(exc)


def _read_answer(cout: IO[bytes]) -> str:
    """One smudge answer: ``delayed``; or ``success`` (its content is not needed: the
    object is in the store now, and is read and checked from there); or the error."""
    status = parse_meta(read_list(cout)).get("status", "error")
    if status != "success":
        return status
    while read_pkt(cout) is not None:
        pass
    return parse_meta(read_list(cout)).get("status", "success")
