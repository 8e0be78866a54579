"""The stat cache: digests remembered by stat key, so unchanged files are not re-read.

A file whose ``lstat`` still shows the same (device, inode, size, mtime_ns,
ctime_ns) as when its digest was recorded is not read again, like git's
index. ``ctime`` cannot be set by ordinary users, so restoring an mtime
(``touch -r``, ``cp -p``) after an edit does not hide the edit.

Racy entries: a file changed within the same timestamp tick as the moment
its entry was recorded could keep an identical stat key. So, like git's
"racy git" rule, an entry is trusted only when the file's mtime and ctime
(both: ctime moves even when an mtime is restored) are strictly older than
the time the entry was recorded, minus a margin for coarse filesystem clocks
(:data:`RACY_MARGIN_NS`, or :data:`RACY_MARGIN_COARSE_NS` for timestamps
with whole-millisecond granularity). Such files are simply hashed again next
time.

The cache holds SHA-256 digests only (what manifests and LFS oids use);
BLAKE2b, BLAKE3 and shard hashing always read the files.

What the cache does not protect against: someone who can write the cache
file itself (it lives in the repository's git directory or the user's cache
directory), or a changed system clock. Verification that matters (CI, a
release) should pass ``rehash=True`` or use no cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ml_integrity.core.fileio import write_atomic
from ml_integrity.core.hashing_read import FileDigest, Key, stat_key
from ml_integrity.errors import OperationalError

__all__ = [
    "RACY_MARGIN_COARSE_NS",
    "RACY_MARGIN_NS",
    "StatCache",
    "default_cache_path",
    "is_racy",
    "root_key",
]

log = logging.getLogger(__name__)

RACY_MARGIN_NS = 100_000_000
"""Safety margin (100 ms) for the racy-entry rule on filesystems with fine
timestamps: the kernel stamps files from a clock that may lag the system clock
by a timer tick."""

RACY_MARGIN_COARSE_NS = 2_100_000_000
"""Safety margin for timestamps with whole-millisecond (typically 1 s or 2 s:
FAT, some network filesystems) granularity."""


_CACHE_FORMAT = "ml-integrity/statcache"
_CACHE_VERSION = 1


def is_racy(mtime_ns: int, ctime_ns: int, recorded_ns: int) -> bool:
    """True when a file with these times may have changed in the same timestamp tick as
    a digest recorded at ``recorded_ns``: such an entry must not be trusted."""
    coarse = mtime_ns % 1_000_000 == 0 or ctime_ns % 1_000_000 == 0
    margin = RACY_MARGIN_COARSE_NS if coarse else RACY_MARGIN_NS
    return max(mtime_ns, ctime_ns) >= recorded_ns - margin


@dataclass(frozen=True)
class _Entry:
    key: Key
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
        return root_key(root)

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

    def record_key(
        self, root_key: str, rel: str, key: Key, recorded_ns: int, digest: FileDigest
    ) -> None:
        """:meth:`record` with the stat key ``key`` instead of a stat result."""
        entry = _Entry(key, recorded_ns, digest)
        with self._lock:
            entries = self._roots.setdefault(root_key, {})
            if entries.get(rel) != entry:
                entries[rel] = entry
                self._dirty = True

    def has_entry(self, root_key: str, rel: str) -> bool:
        """True when the cache has an entry for ``rel`` (current or not)."""
        return rel in self._roots.get(root_key, {})

    def _lookup(self, root: str, rel: str, st: os.stat_result) -> FileDigest | None:
        """The cached digest of ``rel`` under ``root`` if ``st`` still matches
        and the entry is not racy; otherwise None."""
        entry = self._roots.get(root, {}).get(rel)
        if (
            entry is not None
            and entry.key == stat_key(st)
            and not is_racy(st.st_mtime_ns, st.st_ctime_ns, entry.recorded_ns)
        ):
            self.hits += 1
            return entry.digest
        self.misses += 1
        return None

    def _record(
        self, root: str, rel: str, st: os.stat_result, recorded_ns: int, digest: FileDigest
    ) -> None:
        """Remember ``digest`` for ``rel`` as of stat ``st`` taken at ``recorded_ns``."""
        entry = _Entry(stat_key(st), recorded_ns, digest)
        with self._lock:
            entries = self._roots.setdefault(root, {})
            if entries.get(rel) != entry:
                entries[rel] = entry
                self._dirty = True

    def retain(self, root: Path, paths: Iterable[str]) -> None:
        """Forget the entries under ``root`` that are not in ``paths`` (deleted files)."""
        key = root_key(root)
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


def root_key(root: Path) -> str:
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
