"""Read-ahead for ``read_bytes``: a helper process reads and hashes the next items.

Hashing a 10 KB item costs about as much as opening and reading it, so one
thread doing both takes about twice a plain read. Read-ahead threads do not
help: each system call and each hash releases the GIL for a few
microseconds, and threads that open, read and hash small files mostly hand
the GIL to each other instead of running side by side (``docs/benchmarks.md``,
"Data loader": two such threads take longer than one; two threads that only
hash 10 KB buffers do run side by side).
:class:`Prefetcher` therefore starts one helper *process*
(:mod:`.prefetch_child`, the standard library only) that opens, stats and
reads the items expected next into shared memory, on the other core, and
hashes each there, in place.

What ``read_bytes`` returns from it: the caller compares the digest the
helper computed of those bytes with the *signed* digest, and copies exactly
those bytes out of the shared memory into its own ``bytes``; the helper
never writes a slot again before the caller gives it back, so the bytes
returned are the bytes that were hashed, and nothing is read again after the
check. The helper decides nothing: a digest that differs, an item it could
not open as a regular file of the signed size, or one it has not reached,
is read and checked on the caller's own path, which raises the
``IntegrityError`` naming the item. For BLAKE3 and shard bundles the helper
only reads, and the caller hashes the copy in the bundle's terms. What this
trusts beyond the caller's own thread: that only the two processes can write
the shared memory (an anonymous ``memfd``, passed to the helper only) and that
the helper, our own code run by this interpreter, hashes what it reports.

The plan, the items expected next, in order: an explicit one
(:meth:`Prefetcher.plan` from ``VerifiedDataset.prefetch``, ``iter_bytes``,
the torch adapter's ``__getitems__``), or, after two consecutive items of
the signed order read on the caller's path, the rest of the signed order.
The caller never waits for the helper: when the next item is not there yet,
the caller reads the next :data:`LEAD` items itself and the helper goes on
after them, so the two take turns instead of reading the same items. A
read that leaves a predicted plan ends it; one outside an explicit plan is
served on the caller's path and the plan stays (a read found a little ahead
skips to it).

Bounded: ``slots`` slots of ``slot_size`` bytes (a little over 1 MiB; 2 to
64 of them, as many as ``memory`` holds: less than 2 turns read-ahead off)
of shared memory (the helper waits for a free slot); jobs run at most
``window`` plan positions ahead of the caller; only items of at most
:data:`MAX_ITEM` are read ahead. Linux
only (``os.memfd_create``); elsewhere, or when the helper cannot be started,
nothing is read ahead. The helper ends when the caller closes its pipes
(:meth:`Prefetcher.close`, also at garbage collection and at exit) or dies; a
forked child never uses its parent's helper (its copies of the pipes are
closed at fork) and makes its own when it needs one.
"""

from __future__ import annotations

import mmap
import os
import struct
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ml_integrity.data.prefetch_child import (
    CONTROL,
    CONTROL_SIZE,
    DIGEST_SIZE,
    ENTRY,
    IDLE_SECONDS,
    JOB,
    RECORD,
    SLOT_HEAD,
)

if TYPE_CHECKING:
    from ml_integrity.data.dataset import VerifiedDataset

__all__ = ["MAX_ITEM", "Fetched", "Prefetcher", "available"]

MAX_ITEM = 1 << 20
"""Items larger than this (1 MiB) are never read ahead; ``read_bytes`` streams them."""
PER_SLOT = 8
"""Items per slot, and per job."""
LEAD = 32
"""Items the caller reads itself when the helper has not read the next one yet."""
MIN_PLAN = 32
"""Plans shorter than this are not read ahead (measured: a DataLoader batch of 16
was a little slower with a helper than without)."""
MAX_LEAD = 4096
"""The most items the caller reads itself before it looks at the helper again."""
SKIP_AHEAD = 8
"""How far ahead in an explicit plan a read is looked for (the caller skipped a few
items); a read found further on is one outside the plan."""
_DIGESTS = SLOT_HEAD.size + PER_SLOT * RECORD.size  # where a slot's digest fields start
_SLOT_DATA = _DIGESTS + PER_SLOT * DIGEST_SIZE
_POS = struct.Struct(ENTRY.format[:2])  # an entry is its position, then this tail:
_TAIL = struct.Struct("<" + ENTRY.format[2:])  # size, path length (then the path)
_F_SETPIPE_SZ = 1031  # Linux fcntl

Key = tuple[int, int, int, int, int]
Fetched = tuple[bytes, Key, int, bytes | None]
"""What the helper read: the bytes (copied), their stat key, the time before its stat,
and the hex digest (ASCII) it computed of exactly those bytes, or None."""

_live: weakref.WeakSet[Prefetcher] = weakref.WeakSet()


def available() -> bool:
    """Can a helper be started here (shared memory by memfd, a Python to run it)?"""
    return hasattr(os, "memfd_create") and bool(sys.executable)


def _child_source() -> str | None:
    try:
        return Path(__file__).with_name("prefetch_child.py").read_text(encoding="utf-8")
    except OSError:
        return None


class Prefetcher:
    """One helper process reading ahead in one dataset folder (see the module doc).

    ``prefix`` is the folder with a trailing separator; ``wanted(rel)`` says
    whether an item should be read ahead (signed, small enough, not already
    verified), ``sizes`` gives signed sizes.
    """

    def __init__(
        self,
        prefix: str,
        sizes: dict[str, int],
        wanted: Callable[[str], bool],
        *,
        memory: int = 64 << 20,
        window: int = 256,
        hash_name: str = "",
    ) -> None:
        self._pid = os.getpid()
        self._prefix = prefix
        self._sizes = sizes
        self._wanted = wanted
        self.slot_size = _SLOT_DATA + MAX_ITEM
        self.slots = max(2, min(64, memory // self.slot_size))
        self.window = max(PER_SLOT, window)
        self.hash_name = hash_name if hash_name in ("sha256", "blake2b") else ""
        """The hash the helper computes of each item (empty: none, the caller hashes)."""
        self._digest_len = {"sha256": 64, "blake2b": 128}.get(self.hash_name, 0)
        self._proc: subprocess.Popen[bytes] | None = None
        self._fds: list[int] = []
        self._dead = False
        # the plan
        self._gen = 0
        self._order: Sequence[str] = ()
        self._explicit = False
        self._pos = 0  # the caller's next position in the plan
        self._sent = 0  # the next position to put in a job
        self._jobs: list[bytes] = []  # whole jobs the pipe did not take yet
        self._partial = b""  # the rest of a job the pipe took only a part of
        self._lock = threading.RLock()
        """One caller at a time: a slot is given back only once what was taken from it
        (digest and bytes) is copied out, whichever thread reads the dataset."""
        self._tails: dict[str, bytes] = {}  # the job entry of each item, but its position
        self._freed = bytearray()  # slots consumed, given back in batches
        self._njobs = 0  # jobs sent for the current plan
        self._mine = 0  # plan positions below this the caller reads itself
        self._lead = LEAD
        self._served_before = -1
        self._ready: list[int] = []  # slots the helper filled, in order
        self._slot = -1  # the slot being consumed
        self._base = 0
        self._count = 0
        self._k = 0
        self._plan_ns = 0
        self.served = 0
        """Items handed to the caller (who then checked their digest against the signed one)."""

    @classmethod
    def for_dataset(cls, ds: VerifiedDataset) -> Prefetcher | None:
        """A prefetcher for ``ds``'s items, or None where its ``readahead`` option rules it out.

        The default (``readahead=None``) wants a second CPU and stays out of
        ``DataLoader`` worker processes (the workers already use the CPUs).
        """
        mode, memory, items = ds._readahead_options
        if mode == 0 or not available() or memory < 2 * (_SLOT_DATA + MAX_ITEM):
            return None
        if mode < 0 and not _worth_a_helper():
            return None
        verified, sizes, resources = ds._verified, ds._sizes, ds._resources
        cache = ds._cache if ds._cache_on_disk else None
        root = ds._cache_root

        def wanted(rel: str) -> bool:
            return (
                rel in resources
                and sizes.get(rel, MAX_ITEM + 1) <= MAX_ITEM
                and rel not in verified
                and (cache is None or not cache.has_entry(root, rel))
            )

        check = ds._check
        hash_name = check.algorithm if check.method == "files" else ""
        return cls(ds._prefix, sizes, wanted, memory=memory, window=items, hash_name=hash_name)

    # --- the helper process -----------------------------------------------------------

    def _ended(self) -> None:
        """The helper ended by itself: idle (a new one for the next plan), or it failed."""
        self._stop(restartable=time.monotonic() - self._started > 1.0)

    def _start(self) -> bool:
        if self._proc is not None:
            if self._proc.poll() is None:
                return True
            self._ended()  # it ended while no plan was followed
        source = _child_source() if available() else None
        if source is None or self._dead:
            self._dead = True
            return False
        mfd = jr = jw = nr = nw = br = bw = -1
        try:
            mfd = os.memfd_create("ml-integrity-prefetch", os.MFD_CLOEXEC)
            size = CONTROL_SIZE + self.slots * self.slot_size
            os.ftruncate(mfd, size)
            self._mem = mmap.mmap(mfd, size)
            jr, jw = os.pipe()
            nr, nw = os.pipe()
            br, bw = os.pipe()
            try:
                import fcntl

                fcntl.fcntl(jw, _F_SETPIPE_SZ, 1 << 20)
            except OSError:
                pass
            args = [str(fd) for fd in (mfd, jr, nw, br)]
            args += [str(self.slots), str(self.slot_size), str(PER_SLOT), self._prefix]
            args += [self.hash_name or "-", str(IDLE_SECONDS)]
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", source, *args],
                pass_fds=(mfd, jr, nw, br),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                close_fds=True,
            )
        except (OSError, ValueError, subprocess.SubprocessError):
            for fd in (jw, nr, bw):
                if fd >= 0:
                    os.close(fd)
            self._dead = True
            return False
        finally:
            for fd in (mfd, jr, nw, br):
                if fd >= 0:
                    os.close(fd)
        _lower_priority(self._proc.pid)
        os.set_blocking(jw, False)
        os.set_blocking(nr, False)
        self._job_fd, self._notes, self._back = jw, nr, bw
        self._fds = [jw, nr, bw]
        self._mapped = True
        self._started = time.monotonic()
        _live.add(self)
        return True

    def _stop(self, *, restartable: bool = False) -> None:
        """Let the helper end (its pipes closed), reap it, drop the shared memory."""
        self._dead = not restartable
        self._order = ()
        self._ready.clear()
        self._slot, self._count, self._k = -1, 0, 0
        self._freed.clear()
        self._jobs.clear()
        self._partial = b""
        fds, self._fds = self._fds, []
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if getattr(self, "_mapped", False):
            self._mem.close()
            self._mapped = False

    def close(self) -> None:
        """End the helper process and drop what it read (a no-op in a forked child)."""
        with self._lock:
            if self._pid != os.getpid():
                return
            self._stop(restartable=True)  # usable again: a new helper on the next plan

    def _forked(self) -> None:
        """In a forked child: close the inherited pipe ends, never touch the helper."""
        self._lock = threading.RLock()  # another thread may have held the parent's
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = []
        self._order = ()
        self._proc = None  # the parent's: every use checks this, and the child's own pid

    # --- the plan ---------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """True while a plan is being followed."""
        return bool(self._order)

    def plan(self, order: Sequence[str], start: int = 0, *, explicit: bool = True) -> None:
        """Read ``order[start:]`` ahead, in that order, instead of any earlier plan.

        A plan of fewer than :data:`MIN_PLAN` items only ends the earlier one:
        the caller reads it faster than a helper could start on it.
        """
        with self._lock:
            if self._pid != os.getpid():
                return
            if len(order) - start < MIN_PLAN:
                if self._order:
                    self._order = ()
                    self._gen += 1
                    self._publish()
                return
            if not self._start():
                return
            self._plan_ns = time.time_ns()  # before any stat of this plan (the racy rule)
            self._gen += 1
            self._order = order
            self._explicit = explicit
            self._pos = self._sent = start
            self._njobs = 0
            self._mine = start
            self._lead = LEAD
            self._served_before = -1
            self._jobs.clear()  # never a job already begun: _partial goes out whole first
            if self._slot >= 0:  # what is left of the last plan's slot
                self._give_back(self._slot)
                self._slot = -1
                self._count = self._k = 0
            self._publish()
            self._feed()

    def _publish(self) -> None:
        if self._proc is not None:
            CONTROL.pack_into(self._mem, 0, self._gen, max(self._pos, self._mine))

    def _feed(self) -> None:
        """Send jobs up to ``window`` positions ahead of the caller."""
        order = self._order
        end = min(len(order), self._pos + self.window)
        if self._sent < self._mine:
            self._sent = self._mine  # the caller reads those itself
        wanted, tails, pack = self._wanted, self._tails, _POS.pack
        while self._sent < end and not self._dead:
            # small first jobs: the helper's first items come back sooner
            stop = min(end, self._sent + min(PER_SLOT, 4 << self._njobs))
            self._njobs += 1
            parts: list[bytes] = []
            n = 0
            for pos in range(self._sent, stop):
                rel = order[pos]
                if wanted(rel):
                    tail = tails.get(rel)
                    if tail is None:
                        path = os.fsencode(rel)
                        tail = tails[rel] = _TAIL.pack(self._sizes[rel], len(path)) + path
                    parts.append(pack(pos))
                    parts.append(tail)
                    n += 1
            self._sent = stop
            if n:
                payload = b"".join(parts)
                self._jobs.append(JOB.pack(self._gen, n, len(payload)) + payload)
        self._flush()

    def _flush(self) -> None:
        """Write what the job pipe takes; remember where a job was cut (the helper reads
        whole jobs: a plan change drops only jobs of which nothing was sent)."""
        if not (self._partial or self._jobs) or self._proc is None:  # (pipes closed then)
            return
        try:
            written = os.write(self._job_fd, self._partial + b"".join(self._jobs))
        except BlockingIOError:
            return
        except OSError:
            self._ended()
            return
        if written < len(self._partial):
            self._partial = self._partial[written:]
            return
        rest, jobs = written - len(self._partial), self._jobs
        i = 0
        while i < len(jobs) and rest >= len(jobs[i]):
            rest -= len(jobs[i])
            i += 1
        self._partial = jobs[i][rest:] if rest else b""
        del jobs[: i + 1 if rest else i]

    # --- the caller's side ------------------------------------------------------------

    def take(self, rel: str) -> Fetched | None:
        """The helper's copy of ``rel`` if it has read it as the plan's next item.

        None: read it on the caller's path (not read ahead, not there yet,
        not what the plan expected, or the helper could not read it).
        """
        with self._lock:
            order = self._order
            pos = self._pos
            if pos >= len(order) or order[pos] != rel:
                pos = self._miss(rel)
                if pos < 0:
                    return None
            self._pos = pos + 1
            if pos + 1 == len(order):
                self._order = ()  # done
            elif self._sent - pos < self.window // 4:
                self._feed()
                if self._proc is None:
                    return None  # the helper ended
            if pos < self._mine:
                return None  # a stretch the caller reads itself
            while True:
                k = self._k
                if k < self._count:
                    mem = self._mem
                    at = self._base + SLOT_HEAD.size + k * RECORD.size
                    rpos, size, dev, ino, mtime, ctime, offset = RECORD.unpack_from(mem, at)
                    if rpos < pos:
                        self._k = k + 1
                        continue
                    if rpos > pos:
                        return None  # not one the helper was asked for (or it skipped it)
                    self._k = k + 1
                    if size != self._sizes.get(rel) or not (
                        offset >= _SLOT_DATA and offset + size <= self.slot_size
                    ):
                        return None  # it could not read it whole, as signed (or a bad record)
                    start = self._base + offset
                    self.served += 1
                    digest = None
                    if self._digest_len:
                        at = self._base + _DIGESTS + k * DIGEST_SIZE
                        digest = mem[at : at + self._digest_len]
                    data = mem[start : start + size]  # a copy: the bytes that digest is of
                    return data, (dev, ino, size, mtime, ctime), self._plan_ns, digest
                if not self._next_slot():
                    break
            # Not there yet: the caller reads the next items itself, the helper goes on after
            # them (never both on the same items, and the caller never waits). A helper
            # that served nothing since the last time gets twice as many (it has no core).
            if self.served == self._served_before:
                self._lead = min(2 * self._lead, MAX_LEAD)
            else:
                self._lead = LEAD
            self._served_before = self.served
            # (a short plan, a DataLoader batch: the caller takes at most half of what is left)
            self._mine = pos + min(self._lead, max(4, (len(order) - pos) // 2))
            if self._proc is not None:  # (not if the helper just ended)
                CONTROL.pack_into(self._mem, 0, self._gen, self._mine)
            return None

    def settle(self, items: int = 1, timeout: float = 10.0) -> bool:
        """Wait until the helper has read ``items`` items of the plan (for tests and benchmarks)."""
        with self._lock:
            import select

            deadline = time.monotonic() + timeout
            while self._proc is not None and self._order:
                ready = self._count - self._k
                for slot in self._ready:
                    gen, count = SLOT_HEAD.unpack_from(
                        self._mem, CONTROL_SIZE + slot * self.slot_size
                    )
                    ready += count if gen == self._gen else 0
                if ready >= items:
                    return True
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self._notes], [], [], left)[0]:
                    return False
                self._flush()
                got = os.read(self._notes, 256)
                if not got:
                    self._ended()
                    return False
                self._ready.extend(got)
            return False

    @property
    def pid(self) -> int | None:
        """The helper's process id while it runs."""
        return None if self._proc is None else self._proc.pid

    def _next_slot(self) -> bool:
        """Give the consumed slot back and open the next filled one (never waits)."""
        if self._proc is None:
            return False
        if self._slot >= 0:
            self._give_back(self._slot)
            self._slot = -1
            self._count = self._k = 0
        if self._partial or self._jobs:
            self._flush()
        if not self._ready:
            try:
                got = os.read(self._notes, 256)
            except BlockingIOError:
                return False
            except OSError:
                got = b""
            if not got:
                self._ended()
                return False
            self._ready.extend(got)
        while self._ready:
            slot = self._ready.pop(0)
            base = CONTROL_SIZE + slot * self.slot_size
            gen, count = SLOT_HEAD.unpack_from(self._mem, base)
            if gen != self._gen:
                self._give_back(slot)
                continue
            self._slot, self._base, self._count, self._k = slot, base, count, 0
            return True
        return False

    def _give_back(self, slot: int) -> None:
        """Return ``slot`` to the helper: in batches (it rarely waits for one)."""
        freed = self._freed
        freed.append(slot)
        if 2 * len(freed) >= self.slots and self._proc is not None:
            try:
                os.write(self._back, freed)
            except OSError:
                self._ended()
            freed.clear()

    def _miss(self, rel: str) -> int:
        """A read that is not the plan's next item: its position a little further, or -1.

        A predicted plan the caller leaves ends. An explicit one goes on: a read
        found a few items ahead skips to it (the caller left some out); any
        other read is served on the caller's path and the plan stays.
        """
        order = self._order
        if not order:
            return -1
        if not self._explicit or self._pos >= len(order):  # left, or done
            self._order = ()
            self._gen += 1
            self._publish()
            return -1
        pos = self._pos
        for j in range(pos + 1, min(len(order), pos + SKIP_AHEAD)):
            if order[j] == rel:
                return j
        return -1


NICER = 10
"""How much lower the helper's priority is than the caller's: it runs on a core no one
else wants, and yields to the caller and to other work when there is none to spare."""


def _lower_priority(pid: int) -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, pid, min(19, os.getpriority(os.PRIO_PROCESS, 0) + NICER))
    except (AttributeError, OSError):
        pass


def _worth_a_helper() -> bool:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    if cpus < 2:
        return False
    torch_data = sys.modules.get("torch.utils.data")
    return torch_data is None or torch_data.get_worker_info() is None


def _after_fork_in_child() -> None:
    for p in list(_live):
        p._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
