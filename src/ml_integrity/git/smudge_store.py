"""Smudging straight from the local LFS store, for the filter proxy.

When the store already holds the object of an allowed (path, oid), the filter
proxy (:mod:`.filter`) answers git itself: the object is read once, hashed,
and only when its sha256 and size match the pointer does any content go out
(all of it then, in large writes). A mismatch is returned to the proxy,
which refuses the file (the pointer stays, the object is quarantined).
git-lfs is asked only for what the store does not hold: downloads, and a
delayed file whose download has just finished is read here too.

Not used, so that git-lfs decides as it would alone, when git-lfs would not
smudge a present object: ``GIT_LFS_SKIP_SMUDGE``, ``lfs.fetchinclude`` /
``lfs.fetchexclude`` (git config or ``.lfsconfig``), pointers with
extensions, an object whose size is not the pointer's (git-lfs fetches it
again).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ml_integrity.core.lfs import LfsStore, Pointer
from ml_integrity.git.pktline import FLUSH, MAX_PKT_DATA
from ml_integrity.git.runner import Git

__all__ = ["MISSING", "Missing", "StoreObject", "StoreSmudger", "store_smudge_allowed"]

_IN_MEMORY = 32 << 20
"""Objects up to this size are read into memory; larger ones go to a temporary file."""
_READ = 1 << 20
_SUCCESS = b"0013status=success\n" + FLUSH
_OID = re.compile(r"[0-9a-f]{64}")
_OPEN = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
_FALSE = ("", "0", "false", "no", "off", "f")


@dataclass
class StoreObject:
    """An object read from the store: its digest and size as read, and the bytes."""

    digest: str
    size: int
    data: bytes | None
    spill: IO[bytes] | None = None

    def matches(self, pointer: Pointer) -> bool:
        return self.digest == pointer.oid and self.size == pointer.size

    def write_response(self, out: IO[bytes]) -> None:
        """The whole smudge response (status, content packets, flush, empty trailer)."""
        if self.data is not None:
            out.write(_frame(_SUCCESS, self.data))
            return
        assert self.spill is not None
        out.write(_SUCCESS)
        self.spill.seek(0)
        while chunk := self.spill.read(_READ - _READ % MAX_PKT_DATA):
            out.write(_frame(b"", chunk, end=False))
        out.write(FLUSH + FLUSH)

    def close(self) -> None:
        if self.spill is not None:
            self.spill.close()

    def __enter__(self) -> StoreObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _frame(head: bytes, data: bytes, *, end: bool = True) -> bytes:
    """``head``, ``data`` cut into pkt-lines and, with ``end``, the content's flush
    and an empty trailer list: one buffer, one write."""
    parts: list[bytes | memoryview] = [head]
    view = memoryview(data)
    for i in range(0, len(data), MAX_PKT_DATA):
        chunk = view[i : i + MAX_PKT_DATA]
        parts.append(b"%04x" % (len(chunk) + 4))
        parts.append(chunk)
    if end:
        parts.append(FLUSH + FLUSH)
    return b"".join(parts)


class StoreSmudger:
    """Reads objects of the local store for the filter proxy (see the module doc)."""

    def __init__(
        self,
        store: LfsStore,
        *,
        allowed: Callable[[], bool],
        tmp_dir: Path | None = None,
        in_memory: int = _IN_MEMORY,
    ) -> None:
        self.store = store
        self._objects = os.path.join(store.root, "objects")
        self._allowed_check = allowed
        self._allowed: bool | None = None
        self.tmp_dir = tmp_dir
        self.in_memory = in_memory

    @property
    def enabled(self) -> bool:
        """Whether git-lfs would smudge present objects here (asked once, on first use)."""
        if self._allowed is None:
            try:
                self._allowed = bool(self._allowed_check())
            except Exception:  # cannot tell: leave every smudge to git-lfs
                self._allowed = False
        return self._allowed

    def _path(self, oid: str) -> str:
        """.git/lfs/objects/aa/bb/oid (a str, not a Path: thousands per checkout)."""
        return f"{self._objects}/{oid[:2]}/{oid[2:4]}/{oid}"

    def usable(self, pointer: Pointer) -> bool:
        """May objects of this pointer be read from the store at all?"""
        return (
            not pointer.extensions
            and pointer.size > 0
            and _OID.fullmatch(pointer.oid) is not None
            and self.enabled
        )

    def present(self, pointer: Pointer) -> bool:
        """Does the store hold a file of the pointer's size for it (a finished download)?"""
        try:
            return os.stat(self._path(pointer.oid)).st_size == pointer.size
        except OSError:
            return False

    def load(self, pointer: Pointer) -> StoreObject | Missing | None:
        """The object of ``pointer`` as the store holds it, hashed; :data:`MISSING` when
        the store has no file for it; ``None`` when git-lfs must be asked otherwise
        (another size, extensions, not enabled)."""
        if not self.usable(pointer):
            return None
        try:
            fd = os.open(self._path(pointer.oid), _OPEN)
        except FileNotFoundError:
            return MISSING
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size != pointer.size:
                return None
            if pointer.size <= self.in_memory:
                data = _read_all(fd, pointer.size)
                return StoreObject(hashlib.sha256(data).hexdigest(), len(data), data)
            return self._spill(fd)
        finally:
            os.close(fd)

    def _spill(self, fd: int) -> StoreObject:
        """A large object copied to a temporary file while hashed: what is served is
        exactly what was hashed, whatever happens to the store meanwhile."""
        tmp = None if self.tmp_dir is None else str(self.tmp_dir)
        spill = tempfile.TemporaryFile(dir=tmp)  # noqa: SIM115 - closed by StoreObject
        try:
            h = hashlib.sha256()
            size = 0
            while chunk := os.read(fd, _READ):
                h.update(chunk)
                spill.write(chunk)
                size += len(chunk)
        except BaseException:
            spill.close()
            raise
        return StoreObject(h.hexdigest(), size, None, spill)


class Missing:
    """The store has no file for an object (git-lfs would delay the smudge and download)."""


MISSING = Missing()


def _read_all(fd: int, size: int) -> bytes:
    """Up to ``size`` bytes (fewer at an early EOF: the size check says so). What is
    served is exactly what is hashed, whatever the file holds beyond."""
    parts = []
    left = size
    while left > 0 and (chunk := os.read(fd, left)):
        parts.append(chunk)
        left -= len(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def store_smudge_allowed(
    git: Git,
    environ: Mapping[str, str] | None = None,
    *,
    read_blob: Callable[[str], bytes | None] | None = None,
) -> bool:
    """Would git-lfs smudge a present object as is? Not under ``GIT_LFS_SKIP_SMUDGE``,
    nor with ``lfs.fetchinclude``/``lfs.fetchexclude`` set (git config, including
    ``git -c``, or the ``.lfsconfig`` of the work tree, the index or HEAD).
    ``read_blob`` reads ``:path`` and ``HEAD:path`` (a running ``git cat-file``)."""
    env = os.environ if environ is None else environ
    if env.get("GIT_LFS_SKIP_SMUDGE", "").strip().lower() not in _FALSE:
        return False
    fetch = r"^lfs\.fetch(in|ex)clude$"
    if git.config_matching(fetch):
        return False
    sources = []
    worktree = git.root / ".lfsconfig"
    try:
        if not stat.S_ISREG(worktree.lstat().st_mode):
            return False  # a link or a device as .lfsconfig: git-lfs decides, not the store
        sources.append(["--file", str(worktree)])
    except FileNotFoundError:
        pass
    except OSError:
        return False
    specs = (":.lfsconfig", "HEAD:.lfsconfig")
    if read_blob is not None:
        sources += [["--blob", s] for s in specs if read_blob(s)]
    else:
        with git.cat_file() as cat:
            sources += [["--blob", s] for s in specs if cat.read(s)]
    for source in sources:
        out = git.run(["config", *source, "--get-regexp", fetch], check=False)
        if out.returncode not in (0, 1) or out.stdout.strip():
            return False
    return True
