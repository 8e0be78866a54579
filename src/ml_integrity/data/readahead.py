"""Verified read-ahead: threads that read and hash the items a caller will read next.

:class:`ReadAhead` serves :meth:`VerifiedDataset.read_bytes
<ml_integrity.data.VerifiedDataset.read_bytes>` for small items (up to
1 MiB). A few threads follow a *plan*, the items expected next, in order:

- an explicit one, given by :meth:`ReadAhead.plan` (``VerifiedDataset.prefetch``,
  ``iter_bytes``, the torch adapter's ``__getitems__`` with a sampler's batch);
- or one it predicts: when the caller's last reads of items that needed
  hashing walked the signed list (``.files``) with a constant step (1: in
  order; ``k``: one of ``k`` workers, ``files[i::k]``), the next items along
  that step, up to :data:`STRIDE_PLAN` of them.

Each thread opens an item (``O_NOFOLLOW``), checks it is a regular file of
the signed size, reads it whole and hashes those bytes; only when the digest
is the signed one are *those bytes* kept, with the stat taken before the
read. :meth:`ReadAhead.take` hands them to the caller, so every byte served
was hashed and matched, whatever happened to the file afterwards. Anything
else (a mismatch, an error, a changed size, an item the stat cache already
vouches for, a plan the caller left) keeps nothing: the caller reads the
item itself, on the synchronous path that raises the ``IntegrityError``
naming it. No stat-key shortcut is taken here.

With ``spare_cpu_only`` (the dataset's default) no plan is followed while
the machine has no core to spare (see :meth:`ReadAhead._paused`): threads
then only compete with the caller for the CPUs and the GIL.

Bounded: the bytes kept or being read never exceed ``max_bytes`` and the
threads never run more than ``max_items`` ahead of the caller's position in
the plan. Threads start when there is a plan, end after
:data:`IDLE_SECONDS` without work, and are stopped and joined by
:meth:`ReadAhead.close` (the dataset's ``close()``, its garbage collection,
or interpreter exit through :func:`weakref.finalize`). A forked child never
touches its parent's read-ahead (no threads survive a fork, and its locks may
be held): every method checks the process id first, and the dataset makes a
new one in the child when first needed.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from ml_integrity.data.reader import O_FLAGS

__all__ = ["IDLE_SECONDS", "MAX_ITEM", "STRIDE_PLAN", "Fetched", "ReadAhead"]

IDLE_SECONDS = 1.0
"""A thread without work for this long ends (a new plan starts threads again)."""
MAX_ITEM = 1 << 20
"""Items larger than this (1 MiB) are never read ahead; ``read_bytes`` streams them."""
STRIDE_PLAN = 4096
"""How many items a predicted plan lists at most."""

Fetched = tuple[bytes, os.stat_result, int]
"""What a thread kept: the hashed bytes, the stat before the read, the time before that stat."""

Probe = Callable[[str, os.stat_result], bool]


class ReadAhead:
    """Read-ahead threads over one dataset folder (see the module doc).

    ``prefix`` is the folder path with a trailing separator; ``resources``
    maps each signed path to its SHA-256 (hex), ``sizes`` to its signed
    size; ``files`` is the signed order the predictor walks. An item in
    ``skip`` (the dataset's verified map) is not read ahead, nor one for
    which ``probe(rel, stat)`` is true (the stat cache vouches for it): the
    caller's own path serves those without hashing.
    """

    def __init__(
        self,
        *,
        prefix: str,
        resources: Mapping[str, str],
        sizes: Mapping[str, int],
        files: Sequence[str],
        skip: Mapping[str, object],
        probe: Probe | None = None,
        threads: int = 2,
        max_bytes: int = 64 << 20,
        max_items: int = 256,
        spare_cpu_only: bool = False,
    ) -> None:
        self._pid = os.getpid()
        self._prefix = prefix
        self._resources = resources
        self._sizes = sizes
        self._files = files
        self._skip = skip
        self._probe = probe
        self._threads = max(0, threads)
        self._spare_cpu_only = spare_cpu_only
        self._paused_until = 0.0
        self.max_bytes = max(0, max_bytes)
        self.max_items = max(1, max_items)
        self._max_item = min(MAX_ITEM, self.max_bytes)
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # threads wait for a plan or room
        self._done = threading.Condition(self._lock)  # callers wait for an item in flight
        self._workers: list[threading.Thread] = []
        self._alive = 0
        self._idle = 0
        self._waiters = 0
        self._closed = False
        # the plan
        self._gen = 0
        self._order: Sequence[str] = ()
        self._explicit = False
        self._next = 0  # the plan's next item to read
        self._pos = 0  # the caller's position: items before it are served or passed
        self._ready: dict[str, tuple[int, bytes, os.stat_result, int]] = {}
        self._inflight: dict[str, tuple[int, int]] = {}  # rel -> (plan generation, index)
        self.reserved = 0
        """Bytes kept or being read (signed sizes), never above ``max_bytes``."""
        self.peak = 0
        """The most ``reserved`` ever was."""
        # the predictor (the caller's thread only)
        self._index: dict[str, int] | None = None
        self._last = -1
        self._step = 0

    # --- the caller's side -------------------------------------------------------

    def plan(self, order: Sequence[str], *, explicit: bool = True) -> None:
        """Read ``order`` ahead, in that order, instead of any earlier plan."""
        if self._pid != os.getpid() or self._threads == 0 or self._paused():
            return
        with self._lock:
            if self._closed:
                return
            self._reset_plan()
            self._order = list(order)
            self._explicit = explicit
            self._start_threads()
            self._work.notify_all()

    def take(self, rel: str) -> Fetched | None:
        """The hashed, matching bytes of ``rel`` if a thread has (or is getting) them.

        Waits for an item in flight; returns None when the caller must read
        the item itself (it then counts as read for the plan).
        """
        if self._pid != os.getpid():
            return None
        if self._order:
            with self._lock:
                got = self._ready.pop(rel, None)
                if got is None and rel in self._inflight:
                    self._waiters += 1
                    while rel in self._inflight:
                        self._done.wait()
                    self._waiters -= 1
                    got = self._ready.pop(rel, None)
                if got is not None:
                    index, data, st, ns = got
                    self.reserved -= len(data)
                    if index >= self._pos:
                        self._pos = index + 1
                    self._wake()
                    return data, st, ns
                order = self._order
                if self._next < len(order) and order[self._next] == rel:
                    self._next += 1  # the caller reads it itself; the threads go on after it
                    self._pos = self._next
                    self._wake()
                    return None
                if self._next < len(order):
                    if self._explicit:
                        return None  # an explicit plan stays until it is done or replaced
                elif not self._ready and not self._inflight:
                    self._order = ()  # done: no lock for the next reads
        self._observe(rel)
        return None

    def _paused(self) -> bool:
        """With ``spare_cpu_only``: no CPU to spare now (checked at most once a second).

        Read-ahead threads only help with a core to spare; on a machine whose
        load average is at or above its CPU count plus one (our own reader),
        they would only add contention for the CPUs and the GIL.
        """
        if not self._spare_cpu_only:
            return False
        now = time.monotonic()
        if now < self._paused_until:
            return True
        try:
            load = os.getloadavg()[0]
        except OSError:  # not on this platform: assume a core to spare
            return False
        if load >= (os.cpu_count() or 1) + 1:
            self._paused_until = now + 1.0
            return True
        return False

    def _observe(self, rel: str) -> None:
        """Predict: two equal steps along ``files`` make a plan of the next ones."""
        if self._paused_until and time.monotonic() < self._paused_until:
            return
        index = self._index
        if index is None:
            index = self._index = {p: i for i, p in enumerate(self._files)}
        i = index.get(rel)
        if i is None:
            return
        step = i - self._last if self._last >= 0 else 0
        self._last = i
        if step == 0 or step != self._step:
            self._step = step
            return
        stop = len(self._files) if step > 0 else -1
        files = self._files
        ahead = range(i + step, stop, step)[:STRIDE_PLAN]
        if ahead:
            self.plan([files[j] for j in ahead], explicit=False)
            self._last = ahead[-1]  # where the caller is once it followed the plan

    def close(self) -> None:
        """Stop the threads, drop what they kept, and wait for them to end."""
        if self._pid != os.getpid():
            return  # a forked child: the parent's threads do not exist here
        with self._lock:
            self._closed = True
            self._reset_plan()
            workers = list(self._workers)
            self._workers.clear()
            self._work.notify_all()
        me = threading.current_thread()
        for t in workers:
            if t is not me:
                t.join(timeout=5.0)

    def settled(self) -> bool:
        """Nothing in flight, and no thread could start an item now (for tests and bench)."""
        with self._lock:
            if self._inflight:
                return False
            order = self._order
            j = self._next
            while j < len(order) and j < self._pos + self.max_items:
                rel = order[j]
                size = self._sizes.get(rel)
                if size is None or size > self._max_item or rel in self._skip or rel in self._ready:
                    j += 1
                    continue
                return self.reserved + size > self.max_bytes
            return True

    def alive(self) -> int:
        """How many threads are running (for tests and the docs' claims)."""
        with self._lock:
            return sum(t.is_alive() for t in self._workers)

    # --- under the lock -----------------------------------------------------------

    def _reset_plan(self) -> None:
        self._gen += 1
        self._order = ()
        self._next = self._pos = 0
        for _index, data, _st, _ns in self._ready.values():
            self.reserved -= len(data)
        self._ready.clear()
        self._inflight.clear()  # their threads give the bytes back when they finish
        if self._waiters:
            self._done.notify_all()

    def _wake(self) -> None:
        """Wake a thread once the window is half empty (not at every item read)."""
        if (
            self._next < len(self._order)
            and self._next - self._pos <= self.max_items // 2
            and self.reserved <= self.max_bytes // 2
        ):
            if self._idle:
                self._work.notify()
            elif self._alive < self._threads and not self._closed:
                self._start_threads()  # they ended while the window was full

    def _start_threads(self) -> None:
        self._workers = [t for t in self._workers if t.is_alive()]
        while self._alive < self._threads:
            t = threading.Thread(target=self._run, name="ml-integrity-readahead", daemon=True)
            self._alive += 1
            self._workers.append(t)
            t.start()

    def _claim(self) -> tuple[int, int, str, int] | None:
        """The next item of the plan to read: (generation, index, rel, size)."""
        order = self._order
        sizes = self._sizes
        while self._next < len(order):
            if self._next >= self._pos + self.max_items:
                return None
            rel = order[self._next]
            size = sizes.get(rel)
            if (
                size is None
                or size > self._max_item
                or rel in self._skip
                or rel in self._ready
                or rel in self._inflight
            ):
                self._next += 1  # not read ahead: the caller's path serves it
                continue
            if self.reserved + size > self.max_bytes:
                self._drop_passed()
                if self.reserved + size > self.max_bytes:
                    return None
            index = self._next
            self._next += 1
            self.reserved += size
            if self.reserved > self.peak:
                self.peak = self.reserved
            self._inflight[rel] = (self._gen, index)
            return self._gen, index, rel, size
        return None

    def _drop_passed(self) -> None:
        """Forget kept items the caller went past (read them itself, or skipped them)."""
        pos = self._pos
        for rel in [r for r, got in self._ready.items() if got[0] < pos]:
            self.reserved -= len(self._ready.pop(rel)[1])

    # --- the threads ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    job = self._wait_for_job()
                    if job is None:
                        self._alive -= 1
                        return
                gen, index, rel, size = job
                got: Fetched | None = None
                try:
                    got = self._fetch(rel, size)
                finally:
                    with self._lock:
                        current = self._inflight.get(rel) == (gen, index)
                        if current:
                            del self._inflight[rel]
                        if current and got is not None and index >= self._pos:
                            self._ready[rel] = (index, *got)
                        else:
                            self.reserved -= size
                        if self._waiters:
                            self._done.notify_all()
        except BaseException:  # pragma: no cover - only a bug gets here
            with self._lock:
                self._alive -= 1
            raise

    def _wait_for_job(self) -> tuple[int, int, str, int] | None:
        """The next job, waiting for one; None when closed or idle for IDLE_SECONDS."""
        while not self._closed:
            job = self._claim()
            if job is not None:
                return job
            self._idle += 1
            woken = self._work.wait(IDLE_SECONDS)
            self._idle -= 1
            if not woken and not self._closed:
                return self._claim()
        return None

    def _fetch(self, rel: str, size: int) -> Fetched | None:
        """``rel``'s bytes if they hash to the signed digest, else None (never raises)."""
        recorded_ns = time.time_ns()
        try:
            fd = os.open(self._prefix + rel, O_FLAGS)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size != size:
                return None
            if self._probe is not None and self._probe(rel, st):
                return None
            data = os.read(fd, size + 1)
        except Exception:  # the caller's own read reports it
            return None
        finally:
            os.close(fd)
        if len(data) != size or hashlib.sha256(data).hexdigest() != self._resources.get(rel):
            return None
        return data, st, recorded_ns
