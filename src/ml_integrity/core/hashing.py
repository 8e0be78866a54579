"""The SHA-256 engine: parallel across files, streaming, incremental.

What it does
------------
- :func:`hash_file` and :func:`hash_files` compute SHA-256 with :mod:`hashlib`
  (OpenSSL, SHA-NI where the CPU has it). ``hashlib`` releases the GIL while it
  hashes, so threads hash on all cores at once.
- Memory is bounded: files are read with ``readinto`` into reused,
  page-aligned buffers of :data:`DEFAULT_CHUNK_SIZE` bytes; a file is never
  read whole.
- Across files, a pool of ``workers`` threads hashes several files at once.
  The biggest files are scheduled first, so one large file that happens to
  come last in path order cannot leave the other cores idle at the end.
  Small files go to the workers in batches (:data:`BATCH_BYTES`,
  :data:`BATCH_FILES`), so that thread hand-offs do not dominate.
- Within one file there is no parallel hashing, and there cannot be: a SHA-256
  digest is one sequential chain of compression-function calls, each
  depending on the previous one. What *is* parallel within a large file is
  I/O: a read-ahead thread reads the next chunks while the current one is
  hashed (a bounded ring of :data:`READAHEAD_BUFFERS` buffers), so reading
  from disk or copying from the page cache overlaps hashing instead of
  alternating with it. The read-ahead thread counts against ``workers`` and
  starts only when a thread would otherwise be idle: for a lone large file,
  or for the last large files of a run (a running file can switch to
  read-ahead mid-way). The speed of a single large file is therefore capped
  by one core's SHA-256 speed (``openssl speed -evp sha256``, single-threaded);
  only a model made of several files can use several cores for hashing.
- Incremental: with a :class:`StatCache`, a file whose ``lstat`` still shows
  the same (device, inode, size, mtime_ns, ctime_ns) as when its digest was
  recorded is not read again, like git's index. ``ctime`` cannot be set by
  ordinary users, so restoring an mtime (``touch -r``, ``cp -p``) after an edit
  does not hide the edit.
- Racy entries: a file changed within the same timestamp tick as the moment
  its entry was recorded could keep an identical stat key. So, like git's
  "racy git" rule, an entry is trusted only when the file's mtime and ctime
  (both: ctime moves even when an mtime is restored) are strictly older than
  the time the entry was recorded, minus a margin for coarse filesystem
  clocks (:data:`RACY_MARGIN_NS`, or :data:`RACY_MARGIN_COARSE_NS` for
  timestamps with whole-millisecond granularity). Such files are simply
  hashed again next time.

What the cache does not protect against: someone who can write the cache file
itself (it lives in the repository's git directory or the user's cache
directory), or a changed system clock. Verification that matters (CI, a
release) should pass ``rehash=True`` or use no cache.

This is a core module: it never prints, never runs subprocesses, and reports
every failure as an :class:`~ml_integrity.errors.OperationalError` naming the
file and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import mmap
import os
import queue
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ml_integrity.core.fileio import write_atomic
from ml_integrity.errors import OperationalError

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "READAHEAD_MIN_SIZE",
    "FileDigest",
    "ProgressCallback",
    "StatCache",
    "default_cache_path",
    "hash_file",
    "hash_files",
]

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done_bytes, total_bytes)``; see :func:`hash_files`."""

DEFAULT_CHUNK_SIZE = 1 << 20
"""Bytes per read (1 MiB): big enough to make syscalls negligible, small
enough that a chunk is still in the CPU cache when it is hashed."""

READAHEAD_MIN_SIZE = 32 << 20
"""Files at least this big get a read-ahead thread (I/O overlapped with
hashing) when a thread is free for it."""

READAHEAD_BUFFERS = 4
"""Chunks in flight per read-ahead file (bounded memory: this times the chunk size)."""

RACY_MARGIN_NS = 100_000_000
"""Safety margin (100 ms) for the racy-entry rule on filesystems with fine
timestamps: the kernel stamps files from a clock that may lag the system clock
by a timer tick."""

RACY_MARGIN_COARSE_NS = 2_100_000_000
"""Safety margin for timestamps with whole-millisecond (typically 1 s or 2 s:
FAT, some network filesystems) granularity."""

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

BATCH_BYTES = 8 << 20
"""Files smaller than this are handed to the workers in batches of up to this
many bytes (or :data:`BATCH_FILES` files), so that thread hand-offs do not
dominate the cost of small files."""

BATCH_FILES = 64

_CACHE_FORMAT = "ml-integrity/statcache"
_CACHE_VERSION = 1


@dataclass(frozen=True)
class FileDigest:
    """Size in bytes and lowercase hex SHA-256 of one file's content."""

    size: int
    sha256: str


# --- errors ------------------------------------------------------------------


def _error_for(exc: OSError, path: str | Path) -> OperationalError:
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
        return _not_regular(path, "a directory")
    if exc.errno == errno.ELOOP:
        return _not_regular(path, "a symbolic link")
    return OperationalError(
        f"cannot read the file: {exc.strerror or exc}",
        path=path,
        hint="check the disk and the file system, then retry",
    )


def _not_regular(path: str | Path, what: str) -> OperationalError:
    if what == "a symbolic link":
        hint = "replace the link by the file it points to; symbolic links are not followed"
    else:
        hint = "only regular files can be hashed; remove it from the list of artifacts"
    return OperationalError(f"not a regular file: it is {what}", path=path, hint=hint)


def _describe_mode(mode: int) -> str:
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


def _changed(path: str | Path) -> OperationalError:
    return OperationalError(
        "the file changed while it was being hashed",
        path=path,
        hint="wait until whatever writes the file has finished, then run the command again",
    )


class _Cancelled(Exception):
    """Internal: another file failed (or the run was interrupted); stop reading."""


# --- reading and hashing one file -------------------------------------------


class _Counter:
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


def _noop(_n: int) -> None:
    return None


if hasattr(os, "readv"):

    def _readinto(fd: int, buf: memoryview) -> int:
        return os.readv(fd, [buf])

else:  # pragma: no cover - Windows

    def _readinto(fd: int, buf: memoryview) -> int:
        data = os.read(fd, len(buf))
        buf[: len(data)] = data
        return len(data)


def _open_regular(
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
                    raise _not_regular(display, "a symbolic link") from exc
        raise _error_for(exc, display) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(display, _describe_mode(st.st_mode))
        if _CLEAR_NONBLOCK:
            os.set_blocking(fd, True)
        if _HAVE_FADVISE and st.st_size >= _FADVISE_MIN_SIZE:
            with contextlib.suppress(OSError):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


class _Budget:
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


def _hash_fd(
    fd: int,
    buf: memoryview,
    size: int,
    budget: _Budget,
    stop: threading.Event | None,
    on_bytes: Callable[[int], None],
) -> tuple[int, str]:
    """Hash the file from its current offset; switch to read-ahead when a
    thread becomes free and enough of the file is left."""
    h = hashlib.sha256()
    full = len(buf)
    total = 0
    readinto = _readinto
    while True:
        if stop is not None and stop.is_set():
            raise _Cancelled
        if size - total >= READAHEAD_MIN_SIZE and budget.try_reader():
            try:
                total += _hash_rest_readahead(fd, h, full, stop, on_bytes)
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


def _hash_rest_readahead(
    fd: int,
    h: hashlib._Hash,
    chunk_size: int,
    stop: threading.Event | None,
    on_bytes: Callable[[int], None],
) -> int:
    """Feed the rest of the file into ``h``; a reader thread keeps up to
    READAHEAD_BUFFERS chunks in flight. Returns the number of bytes read."""
    free: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()
    filled: queue.SimpleQueue[tuple[memoryview, int] | BaseException] = queue.SimpleQueue()
    for _ in range(READAHEAD_BUFFERS):
        free.put(_new_buffer(chunk_size))
    quit_reader = threading.Event()

    def reader() -> None:
        try:
            while True:
                buf = free.get()
                if buf is None or quit_reader.is_set():
                    return
                n = _readinto(fd, buf)
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
                raise _Cancelled
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


def _hash_path(
    path: str,
    display: str | Path,
    *,
    chunk_size: int,
    follow_symlinks: bool,
    budget: _Budget,
    buffers: queue.SimpleQueue[memoryview] | None = None,
    stop: threading.Event | None = None,
    on_bytes: Callable[[int], None] = _noop,
) -> tuple[FileDigest, os.stat_result, int]:
    """Hash one file. Returns the digest, the stat taken before reading, and
    the time (ns) just before that stat, for the stat cache."""
    recorded_ns = time.time_ns()
    fd, before = _open_regular(path, display, follow_symlinks)
    try:
        buf = _take_buffer(buffers, chunk_size)
        try:
            size, hexdigest = _hash_fd(fd, buf, before.st_size, budget, stop, on_bytes)
            after = os.fstat(fd)
        except OSError as exc:
            raise _error_for(exc, display) from exc
        finally:
            if buffers is not None:
                buffers.put(buf)
    finally:
        os.close(fd)
    if size != before.st_size or _stat_key(after) != _stat_key(before):
        raise _changed(display)
    return FileDigest(size, hexdigest), before, recorded_ns


def _take_buffer(buffers: queue.SimpleQueue[memoryview] | None, chunk_size: int) -> memoryview:
    if buffers is not None:
        try:
            return buffers.get_nowait()
        except queue.Empty:
            pass
    return _new_buffer(chunk_size)


def _new_buffer(size: int) -> memoryview:
    """A page-aligned read buffer (an anonymous mapping).

    The kernel copies file data into a page-aligned destination several times
    faster, on some CPUs, than into a ``bytearray``, whose data malloc places
    16 bytes past a page boundary (measured: about 0.2 instead of 1 CPU-second
    of system time per 2 GB, see docs/benchmarks.md).
    """
    return memoryview(mmap.mmap(-1, size))


def _check_chunk_size(chunk_size: int) -> None:
    if chunk_size < 4096:
        raise ValueError(f"chunk_size must be at least 4096 bytes, not {chunk_size}")


def hash_file(
    path: Path,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    follow_symlinks: bool = False,
) -> FileDigest:
    """Size and SHA-256 of one regular file, streamed with bounded memory.

    A symbolic link is refused unless ``follow_symlinks`` is true. A large
    file is read by a read-ahead thread while this thread hashes (when the
    machine has more than one core).

    Raises:
        OperationalError: the file is missing, unreadable, not a regular file,
            or changed while it was read.
    """
    _check_chunk_size(chunk_size)
    budget = _Budget(os.cpu_count() or 1, pending=1)
    budget.start_task()
    digest, _, _ = _hash_path(
        os.fspath(path), path, chunk_size=chunk_size, follow_symlinks=follow_symlinks, budget=budget
    )
    return digest


# --- the stat cache -----------------------------------------------------------

_Key = tuple[int, int, int, int, int]
_Batch = list[tuple[int, str, str, _Key]]  # (size, rel, full path, stat key)


def _stat_key(st: os.stat_result) -> _Key:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def is_racy(mtime_ns: int, ctime_ns: int, recorded_ns: int) -> bool:
    """True when a file with these times may have changed in the same timestamp tick as
    a digest recorded at ``recorded_ns``: such an entry must not be trusted."""
    return _is_racy(mtime_ns, ctime_ns, recorded_ns)


def _is_racy(mtime_ns: int, ctime_ns: int, recorded_ns: int) -> bool:
    """True when the file may have changed in the same timestamp tick as the record."""
    coarse = mtime_ns % 1_000_000 == 0 or ctime_ns % 1_000_000 == 0
    margin = RACY_MARGIN_COARSE_NS if coarse else RACY_MARGIN_NS
    return max(mtime_ns, ctime_ns) >= recorded_ns - margin


@dataclass(frozen=True)
class _Entry:
    key: _Key
    recorded_ns: int
    digest: FileDigest

    def to_json(self) -> list[Any]:
        return [*self.key, self.recorded_ns, self.digest.sha256]

    @classmethod
    def from_json(cls, value: object) -> _Entry:
        if not (isinstance(value, list) and len(value) == 7):
            raise ValueError("entry is not a 7-element list")
        *numbers, hexdigest = value
        if not all(type(n) is int and n >= 0 for n in numbers):
            raise ValueError("entry has a non-integer or negative stat field")
        if not _is_hex_digest(hexdigest):
            raise ValueError("entry has an invalid sha256")
        dev, ino, size, mtime_ns, ctime_ns, recorded_ns = numbers
        return cls((dev, ino, size, mtime_ns, ctime_ns), recorded_ns, FileDigest(size, hexdigest))


def _is_hex_digest(value: object) -> bool:
    return (
        isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    )


class StatCache:
    """Remembers digests by stat key so that unchanged files are not re-read.

    Entries are grouped by the resolved root folder they were hashed under, so
    one cache file can serve several folders of the same repository. Use
    :meth:`load` and :meth:`save`; pass the cache to :func:`hash_files`.
    ``hits`` and ``misses`` count lookups since the cache was loaded.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.hits = 0
        self.misses = 0
        self._roots: dict[str, dict[str, _Entry]] = {}
        self._dirty = False
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path) -> StatCache:
        """Load the cache at ``path``. A missing, unreadable or corrupt file gives
        an empty cache (never a partly trusted one)."""
        cache = cls(path)
        try:
            raw = Path(path).read_bytes()
        except FileNotFoundError:
            return cache
        except OSError as exc:
            log.debug("stat cache %s unreadable, starting empty: %s", path, exc)
            return cache
        try:
            cache._roots = _parse_cache(raw)
        except ValueError as exc:  # includes json and unicode decode errors
            log.debug("stat cache %s is corrupt, ignoring it: %s", path, exc)
            cache._roots = {}
            cache._dirty = True  # rewrite it on the next save
        return cache

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._roots.values())

    @property
    def dirty(self) -> bool:
        """True when :meth:`save` has something to write."""
        return self._dirty

    @staticmethod
    def root_key(root: Path) -> str:
        """The key entries of files under ``root`` are grouped by (its resolved path)."""
        return _root_key(root)

    def lookup(self, root_key: str, rel: str, st: os.stat_result) -> FileDigest | None:
        """The cached digest of ``rel`` if ``st`` (its stat now) still matches a
        non-racy entry, else None. ``root_key`` comes from :meth:`root_key`."""
        return self._lookup(root_key, rel, st)

    def record(
        self, root_key: str, rel: str, st: os.stat_result, recorded_ns: int, digest: FileDigest
    ) -> None:
        """Remember ``digest`` of ``rel``, whose content was read while its stat was
        ``st``; ``recorded_ns`` is the time just before that stat (the racy rule)."""
        self._record(root_key, rel, st, recorded_ns, digest)

    def _lookup(self, root: str, rel: str, st: os.stat_result) -> FileDigest | None:
        """The cached digest of ``rel`` under ``root`` if ``st`` still matches
        and the entry is not racy; otherwise None."""
        entry = self._roots.get(root, {}).get(rel)
        if (
            entry is not None
            and entry.key == _stat_key(st)
            and not _is_racy(st.st_mtime_ns, st.st_ctime_ns, entry.recorded_ns)
        ):
            self.hits += 1
            return entry.digest
        self.misses += 1
        return None

    def _record(
        self, root: str, rel: str, st: os.stat_result, recorded_ns: int, digest: FileDigest
    ) -> None:
        """Remember ``digest`` for ``rel`` as of stat ``st`` taken at ``recorded_ns``."""
        entry = _Entry(_stat_key(st), recorded_ns, digest)
        with self._lock:
            entries = self._roots.setdefault(root, {})
            if entries.get(rel) != entry:
                entries[rel] = entry
                self._dirty = True

    def retain(self, root: Path, paths: Iterable[str]) -> None:
        """Forget the entries under ``root`` that are not in ``paths`` (deleted files)."""
        key = _root_key(root)
        entries = self._roots.get(key)
        if not entries:
            return
        keep = set(paths)
        stale = [rel for rel in entries if rel not in keep]
        with self._lock:
            for rel in stale:
                del entries[rel]
            if stale:
                self._dirty = True

    def save(self, *, strict: bool = False) -> None:
        """Write the cache atomically (temp file + ``os.replace``) if it changed.

        The cache is only an optimisation, so a failure to write it is logged
        as a warning and otherwise ignored, unless ``strict`` is true, in
        which case it raises :class:`OperationalError`.
        """
        if not self._dirty:
            return
        data = {
            "format": _CACHE_FORMAT,
            "version": _CACHE_VERSION,
            "roots": {
                root: {rel: entry.to_json() for rel, entry in sorted(entries.items())}
                for root, entries in sorted(self._roots.items())
            },
        }
        payload = json.dumps(data, separators=(",", ":")).encode()
        try:
            write_atomic(self.path, payload)
        except OSError as exc:
            if strict:
                raise OperationalError(
                    f"cannot write the hash cache: {exc.strerror or exc}",
                    path=self.path,
                    hint="check the permissions of its folder, or run without the cache",
                ) from exc
            log.warning("cannot write the hash cache %s: %s", self.path, exc)
            return
        self._dirty = False


def _parse_cache(raw: bytes) -> dict[str, dict[str, _Entry]]:
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    if data.get("format") != _CACHE_FORMAT or data.get("version") != _CACHE_VERSION:
        raise ValueError("unknown format or version")
    roots = data.get("roots")
    if not isinstance(roots, dict):
        raise ValueError("'roots' is not an object")
    out: dict[str, dict[str, _Entry]] = {}
    for root, entries in roots.items():
        if not isinstance(entries, dict):
            raise ValueError(f"entries of {root!r} are not an object")
        out[root] = {rel: _Entry.from_json(value) for rel, value in entries.items()}
    return out


def _root_key(root: Path) -> str:
    return os.path.realpath(root)


def _find_git_dir(start: Path) -> Path | None:
    """The git directory of the work tree containing ``start``, if any."""
    for folder in (start, *start.parents):
        dotgit = folder / ".git"
        try:
            st = dotgit.stat()
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            if (dotgit / "HEAD").is_file():
                return dotgit
            continue
        if stat.S_ISREG(st.st_mode):
            # A worktree or submodule: ".git" is a file "gitdir: <path>".
            try:
                text = dotgit.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError):
                continue
            if text.startswith("gitdir:"):
                target = Path(text[len("gitdir:") :].strip())
                if not target.is_absolute():
                    target = folder / target
                if target.is_dir():
                    return Path(os.path.realpath(target))
    return None


def default_cache_path(root: Path) -> Path:
    """Where the stat cache for ``root`` lives; never inside ``root`` itself.

    In a git work tree: ``<git-dir>/ml-integrity/statcache.json`` (for a linked
    worktree or submodule, the git dir its ``.git`` file points to). Otherwise
    ``$XDG_CACHE_HOME`` (or ``~/.cache``)
    ``/ml-integrity/statcache/<sha256 of the resolved root>.json``.
    """
    resolved = Path(os.path.realpath(root))
    git_dir = _find_git_dir(resolved)
    if git_dir is not None:
        return git_dir / "ml-integrity" / "statcache.json"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    name = hashlib.sha256(os.fsencode(resolved)).hexdigest()
    return base / "ml-integrity" / "statcache" / f"{name}.json"


# --- many files -----------------------------------------------------------------


def _check_rel(rel: str) -> None:
    if not rel or rel.startswith("/") or "\x00" in rel or ".." in rel.split("/"):
        raise ValueError(f"not a relative POSIX path inside the root: {rel!r}")


def hash_files(
    root: Path,
    paths: Sequence[str],
    *,
    workers: int | None = None,
    cache: StatCache | None = None,
    rehash: bool = False,
    progress: ProgressCallback | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    follow_symlinks: bool = False,
) -> dict[str, FileDigest]:
    """Size and SHA-256 of each of ``paths`` (POSIX, relative to ``root``).

    Args:
        root: the folder the paths are relative to.
        paths: validated relative paths (no ``..``, not absolute).
        workers: the most threads to use; None means ``os.cpu_count()``.
            Up to ``workers`` files are hashed at once; a large file gets a
            read-ahead thread only while fewer threads are busy. 1 hashes one
            file after the other in the calling thread, with no other thread.
        cache: when given, files whose stat key is unchanged (and not racy)
            are taken from it without being read, and new digests are recorded
            in it. Call :meth:`StatCache.save` afterwards.
        rehash: read every file even when the cache has it (the cache is
            still refreshed).
        progress: called from worker threads as ``(done_bytes, total_bytes)``,
            at most every :data:`PROGRESS_INTERVAL_S` seconds, and once more at
            the end with ``done_bytes == total_bytes``. ``total_bytes`` counts
            only the bytes that have to be read (cache hits are not included).
        chunk_size: bytes per read.
        follow_symlinks: hash the target of a symbolic link instead of refusing
            it. Only the last path component is checked; that no path goes
            through a linked directory is the caller's validation.

    Returns:
        ``{path: FileDigest}`` in the order of ``paths``.

    Raises:
        OperationalError: a file is missing, unreadable, not a regular file,
            or changed while it was read. The other files are not finished.
    """
    _check_chunk_size(chunk_size)
    if workers is None:
        workers = os.cpu_count() or 1
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    root_str = os.fspath(root)
    root_key = _root_key(root) if cache is not None else ""
    stat_path = os.stat if follow_symlinks else os.lstat

    results: dict[str, FileDigest] = {}
    todo: _Batch = []
    seen: set[str] = set()
    for rel in paths:
        if rel in seen:
            continue
        seen.add(rel)
        _check_rel(rel)
        full = os.path.join(root_str, rel)
        try:
            st = stat_path(full)
        except OSError as exc:
            raise _error_for(exc, full) from exc
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(full, _describe_mode(st.st_mode))
        if cache is not None and not rehash:
            hit = cache._lookup(root_key, rel, st)
            if hit is not None:
                results[rel] = hit
                continue
        todo.append((st.st_size, rel, full, _stat_key(st)))

    if todo:
        todo.sort(key=lambda item: (-item[0], item[1]))  # biggest first
        batches = _batches(todo)
        counter = _Counter(sum(item[0] for item in todo), progress) if progress else None
        on_bytes = counter.add if counter else _noop
        buffers: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
        stop = threading.Event()
        budget = _Budget(workers, pending=len(batches))

        def run_batch(batch: _Batch) -> list[tuple[str, FileDigest]]:
            out = []
            budget.start_task()
            try:
                for _, rel, full, listed in batch:
                    digest, st, recorded_ns = _hash_path(
                        full,
                        full,
                        chunk_size=chunk_size,
                        follow_symlinks=follow_symlinks,
                        budget=budget,
                        buffers=buffers,
                        stop=stop,
                        on_bytes=on_bytes,
                    )
                    # Only when the file opened is the file listed: if it was
                    # replaced in between, the next run simply hashes it again.
                    if cache is not None and _stat_key(st) == listed:
                        cache._record(root_key, rel, st, recorded_ns, digest)
                    out.append((rel, digest))
            finally:
                budget.end_task()
            return out

        if workers == 1 or len(batches) == 1:
            for batch in batches:
                results.update(run_batch(batch))
        else:
            _run_pool(run_batch, batches, min(workers, len(batches)), stop, results)
        if counter:
            counter.finish()
    elif progress:
        progress(0, 0)

    return {rel: results[rel] for rel in paths}


def _batches(todo: _Batch) -> list[_Batch]:
    """Group the small files of ``todo`` (sorted biggest first) into batches."""
    batches: list[_Batch] = []
    current: _Batch = []
    current_bytes = 0
    for item in todo:
        if item[0] >= BATCH_BYTES:
            batches.append([item])
            continue
        current.append(item)
        current_bytes += item[0]
        if current_bytes >= BATCH_BYTES or len(current) >= BATCH_FILES:
            batches.append(current)
            current, current_bytes = [], 0
    if current:
        batches.append(current)
    return batches


def _run_pool(
    run_batch: Callable[[_Batch], list[tuple[str, FileDigest]]],
    batches: list[_Batch],
    workers: int,
    stop: threading.Event,
    results: dict[str, FileDigest],
) -> None:
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ml-integrity-hash")
    futures: list[Future[list[tuple[str, FileDigest]]]] = []
    try:
        futures = [executor.submit(run_batch, batch) for batch in batches]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in futures:
            if future in done and future.exception() is not None:
                raise _first_error(futures)
        for future in futures:
            results.update(future.result())
    finally:
        # On an error or Ctrl-C: the running reads stop at their next chunk.
        stop.set()
        executor.shutdown(wait=True, cancel_futures=True)


def _first_error(futures: list[Future[list[tuple[str, FileDigest]]]]) -> BaseException:
    """The error of the earliest-scheduled failed file (not a cancellation)."""
    for future in futures:
        if future.done() and not future.cancelled():
            exc = future.exception()
            if exc is not None and not isinstance(exc, _Cancelled):
                return exc
    raise AssertionError("no failed future")  # pragma: no cover
