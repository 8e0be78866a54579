"""Reading and hashing one file: safe opens, bounded buffers, read-ahead, BLAKE3 maps.

- A file is opened once, without following a symbolic link (unless asked),
  and must be a regular file (a FIFO never blocks the open). Its ``fstat``
  before and after hashing must agree, or the file "changed while it was
  being hashed".
- SHA-256 and BLAKE2b stream: ``readinto`` into reused, page-aligned
  buffers of :data:`DEFAULT_CHUNK_SIZE` bytes; a file is never read whole.
  A large file can get a read-ahead thread (a bounded ring of
  :data:`READAHEAD_BUFFERS` buffers), so that reading overlaps hashing,
  when a thread would otherwise be idle (:class:`Budget`).
- BLAKE3 maps the file read-only (no copy out of the page cache) and hashes
  it in windows of :data:`MMAP_WINDOW` bytes, on every core when a thread is
  free for it. A mapped file that another process truncates while it is
  hashed ends the process (SIGBUS) instead of raising an error: the
  verdict is never "OK" then, but the exit code is not one of ours. Use
  SHA-256 where files may be truncated under the verifier.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import queue
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ml_integrity.core.hashing_algorithms import BLAKE3_AUTO, Hasher, new_hasher
from ml_integrity.errors import OperationalError

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done_bytes, total_bytes)``; see :func:`hashing.hash_files`."""

DEFAULT_CHUNK_SIZE = 1 << 20
"""Bytes per read (1 MiB): big enough to make syscalls negligible, small
enough that a chunk is still in the CPU cache when it is hashed."""

READAHEAD_MIN_SIZE = 32 << 20
"""Files at least this big get a read-ahead thread (I/O overlapped with
hashing) when a thread is free for it."""

READAHEAD_BUFFERS = 4
"""Chunks in flight per read-ahead file (bounded memory: this times the chunk size)."""

MMAP_WINDOW = 64 << 20
"""Bytes of a mapped file handed to BLAKE3 at once (progress and cancellation
are checked between windows; each window is big enough for every core)."""

PROGRESS_INTERVAL_S = 0.1
"""Minimum time between two progress calls (the last call is never skipped)."""

_O_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# O_NONBLOCK: opening a FIFO must not hang. Linux ignores it for regular files;
# elsewhere it is cleared after the open.
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLEAR_NONBLOCK = bool(_O_NONBLOCK) and not sys.platform.startswith("linux")
_HAVE_FADVISE = hasattr(os, "posix_fadvise")
_FADVISE_MIN_SIZE = 4 << 20


@dataclass(frozen=True)
class FileDigest:
    """Size in bytes and lowercase hex digest of one file's content."""

    size: int
    hexdigest: str
    algorithm: str = "sha256"

    @property
    def sha256(self) -> str:
        """The SHA-256 hex digest; a digest of another algorithm is never taken for one."""
        if self.algorithm != "sha256":
            raise ValueError(f"this is a {self.algorithm} digest, not a sha256 one")
        return self.hexdigest


# --- errors ------------------------------------------------------------------


def error_for(exc: OSError, path: str | Path) -> OperationalError:
    """Translate an OSError about ``path`` into an error with a hint."""
    if isinstance(exc, FileNotFoundError) or exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return OperationalError(
            "file not found",
            path=path,
            hint="check the path; if the file existed a moment ago, something is changing "
            "the folder: let it finish, then run the command again",
        )
    if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM):
        return OperationalError(
            "permission denied: the file cannot be read",
            path=path,
            hint="give the current user read access (for example chmod u+r) and retry",
        )
    if isinstance(exc, IsADirectoryError):
        return not_regular(path, "a directory")
    if exc.errno == errno.ELOOP:
        return not_regular(path, "a symbolic link")
    return OperationalError(
        f"cannot read the file: {exc.strerror or exc}",
        path=path,
        hint="check the disk and the file system, then retry",
    )


def not_regular(path: str | Path, what: str) -> OperationalError:
    if what == "a symbolic link":
        hint = "replace the link by the file it points to; symbolic links are not followed"
    else:
        hint = "only regular files can be hashed; remove it from the list of artifacts"
    return OperationalError(f"not a regular file: it is {what}", path=path, hint=hint)


def describe_mode(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def changed_error(path: str | Path) -> OperationalError:
    return OperationalError(
        "the file changed while it was being hashed",
        path=path,
        hint="wait until whatever writes the file has finished, then run the command again",
    )


class Cancelled(Exception):
    """Internal: another file failed (or the run was interrupted); stop reading."""


# --- reading and hashing one file -------------------------------------------


class Counter:
    """Thread-safe byte counter that calls a progress callback, throttled."""

    def __init__(self, total: int, callback: ProgressCallback) -> None:
        self.total = total
        self._callback = callback
        self._done = 0
        self._reported = -1
        self._next_time = 0.0
        self._lock = threading.Lock()
        self._report_lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self._done += n
        now = time.monotonic()
        if now < self._next_time:
            return
        # Only one thread reports at a time; the others just skip the call.
        if not self._report_lock.acquire(blocking=False):
            return
        try:
            self._next_time = now + PROGRESS_INTERVAL_S
            self._report()
        finally:
            self._report_lock.release()

    def _report(self) -> None:
        done = self._done
        if done > self._reported:
            self._reported = done
            self._callback(done, self.total)

    def finish(self) -> None:
        with self._report_lock:
            if self._reported != self._done or self._done == 0:
                self._reported = self._done
                self._callback(self._done, self.total)


def noop(_n: int) -> None:
    return None


if hasattr(os, "readv"):

    def readinto(fd: int, buf: memoryview) -> int:
        return os.readv(fd, [buf])

else:  # pragma: no cover - Windows

    def readinto(fd: int, buf: memoryview) -> int:
        data = os.read(fd, len(buf))
        buf[: len(data)] = data
        return len(data)


def open_regular(
    path: str, display: str | Path, follow_symlinks: bool
) -> tuple[int, os.stat_result]:
    """Open ``path`` for reading; it must be a regular file. Returns (fd, fstat)."""
    flags = _O_FLAGS | _O_NONBLOCK | (0 if follow_symlinks else _O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK) and not follow_symlinks:
            # O_NOFOLLOW reports a symlink as ELOOP (EMLINK on FreeBSD).
            with contextlib.suppress(OSError):
                if stat.S_ISLNK(os.lstat(path).st_mode):
                    raise not_regular(display, "a symbolic link") from exc
        raise error_for(exc, display) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise not_regular(display, describe_mode(st.st_mode))
        if _CLEAR_NONBLOCK:
            os.set_blocking(fd, True)
        if _HAVE_FADVISE and st.st_size >= _FADVISE_MIN_SIZE:
            with contextlib.suppress(OSError):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


class Budget:
    """How many threads a run may use, and how many it uses now.

    Every task (a file, or a batch of small files) being hashed holds one
    thread. A read-ahead thread is started only when no task is waiting for a
    worker and fewer than ``limit`` threads are busy, i.e. when a core would
    otherwise sit idle (one large file, or the tail of a run whose last large
    file is still being hashed).
    """

    def __init__(self, limit: int, pending: int) -> None:
        self.limit = limit
        self.pending = pending
        self.active = 0
        self._lock = threading.Lock()

    def start_task(self) -> None:
        with self._lock:
            self.pending -= 1
            self.active += 1

    def end_task(self) -> None:
        with self._lock:
            self.active -= 1

    def end_reader(self) -> None:
        self.end_task()

    def try_reader(self) -> bool:
        if self.pending > 0 or self.active >= self.limit:  # cheap unlocked pre-check
            return False
        with self._lock:
            if self.pending > 0 or self.active >= self.limit:
                return False
            self.active += 1
            return True


def hash_fd(
    fd: int,
    buf: memoryview,
    size: int,
    budget: Budget,
    stop: threading.Event | None,
    on_bytes: Callable[[int], None],
    algorithm: str = "sha256",
) -> tuple[int, str]:
    """Hash the file from its current offset; switch to read-ahead when a
    thread becomes free and enough of the file is left."""
    h = new_hasher(algorithm)
    full = len(buf)
    total = 0
    while True:
        if stop is not None and stop.is_set():
            raise Cancelled
        if size - total >= READAHEAD_MIN_SIZE and budget.try_reader():
            try:
                total += hash_rest_readahead(fd, h, full, stop, on_bytes)
            finally:
                budget.end_reader()
            break
        n = readinto(fd, buf)
        if not n:
            break
        h.update(buf if n == full else buf[:n])
        total += n
        on_bytes(n)
        if total == size:
            # No read to confirm EOF: the fstat after hashing catches a file
            # that grew meanwhile (an empty file still gets one read).
            break
    return total, h.hexdigest()


def hash_rest_readahead(
    fd: int,
    h: Hasher,
    chunk_size: int,
    stop: threading.Event | None,
    on_bytes: Callable[[int], None],
) -> int:
    """Feed the rest of the file into ``h``; a reader thread keeps up to
    READAHEAD_BUFFERS chunks in flight. Returns the number of bytes read."""
    free: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()
    filled: queue.SimpleQueue[tuple[memoryview, int] | BaseException] = queue.SimpleQueue()
    for _ in range(READAHEAD_BUFFERS):
        free.put(new_buffer(chunk_size))
    quit_reader = threading.Event()

    def reader() -> None:
        try:
            while True:
                buf = free.get()
                if buf is None or quit_reader.is_set():
                    return
                n = readinto(fd, buf)
                filled.put((buf, n))
                if not n:
                    return
        except BaseException as exc:  # handed to the hashing thread
            filled.put(exc)

    thread = threading.Thread(target=reader, name="ml-integrity-readahead", daemon=True)
    thread.start()
    total = 0
    try:
        while True:
            if stop is not None and stop.is_set():
                raise Cancelled
            item = filled.get()
            if isinstance(item, BaseException):
                raise item
            buf, n = item
            if not n:
                break
            h.update(buf if n == chunk_size else buf[:n])
            total += n
            free.put(buf)
            on_bytes(n)
    finally:
        quit_reader.set()
        free.put(None)  # wakes the reader if it waits for a buffer
        thread.join()
    return total


def hash_path(
    path: str,
    display: str | Path,
    *,
    chunk_size: int,
    follow_symlinks: bool,
    budget: Budget,
    buffers: queue.SimpleQueue[memoryview] | None = None,
    stop: threading.Event | None = None,
    on_bytes: Callable[[int], None] = noop,
    algorithm: str = "sha256",
) -> tuple[FileDigest, os.stat_result, int]:
    """Hash one file. Returns the digest, the stat taken before reading, and
    the time (ns) just before that stat, for the stat cache."""
    recorded_ns = time.time_ns()
    fd, before = open_regular(path, display, follow_symlinks)
    try:
        if algorithm == "blake3":
            try:
                size, hexdigest = hash_fd_mapped(fd, before.st_size, budget, stop, on_bytes)
                after = os.fstat(fd)
            except OSError as exc:
                raise error_for(exc, display) from exc
        else:
            buf = take_buffer(buffers, chunk_size)
            try:
                size, hexdigest = hash_fd(
                    fd, buf, before.st_size, budget, stop, on_bytes, algorithm
                )
                after = os.fstat(fd)
            except OSError as exc:
                raise error_for(exc, display) from exc
            finally:
                if buffers is not None:
                    buffers.put(buf)
    finally:
        os.close(fd)
    if size != before.st_size or stat_key(after) != stat_key(before):
        raise changed_error(display)
    return FileDigest(size, hexdigest, algorithm), before, recorded_ns


def hash_fd_mapped(
    fd: int,
    size: int,
    budget: Budget,
    stop: threading.Event | None,
    on_bytes: Callable[[int], None],
) -> tuple[int, str]:
    """BLAKE3 over a read-only mapping of the first ``size`` bytes of ``fd``.

    Every core hashes this file when a thread is free for it (the same rule
    as the read-ahead thread: :meth:`Budget.try_reader`), else one.
    """
    wide = size >= READAHEAD_MIN_SIZE and budget.try_reader()
    try:
        h = new_hasher("blake3", threads=BLAKE3_AUTO if wide else 1)
        if size == 0:
            return 0, h.hexdigest()
        with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as mapped:
            with contextlib.suppress(AttributeError, OSError):
                mapped.madvise(mmap.MADV_SEQUENTIAL)
            view = memoryview(mapped)
            try:
                for start in range(0, size, MMAP_WINDOW):
                    if stop is not None and stop.is_set():
                        raise Cancelled
                    window = view[start : start + MMAP_WINDOW]
                    h.update(window)
                    window.release()
                    on_bytes(min(MMAP_WINDOW, size - start))
            finally:
                view.release()
        return size, h.hexdigest()
    finally:
        if wide:
            budget.end_reader()


def take_buffer(buffers: queue.SimpleQueue[memoryview] | None, chunk_size: int) -> memoryview:
    if buffers is not None:
        try:
            return buffers.get_nowait()
        except queue.Empty:
            pass
    return new_buffer(chunk_size)


def new_buffer(size: int) -> memoryview:
    """A page-aligned read buffer (an anonymous mapping).

    The kernel copies file data into a page-aligned destination several times
    faster, on some CPUs, than into a ``bytearray``, whose data malloc places
    16 bytes past a page boundary (measured: about 0.2 instead of 1 CPU-second
    of system time per 2 GB, see docs/benchmarks.md).
    """
    return memoryview(mmap.mmap(-1, size))


def check_chunk_size(chunk_size: int) -> None:
    if chunk_size < 4096:
        raise ValueError(f"chunk_size must be at least 4096 bytes, not {chunk_size}")


Key = tuple[int, int, int, int, int]


def stat_key(st: os.stat_result) -> Key:
    """(device, inode, size, mtime_ns, ctime_ns): what identifies one version of a file."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
