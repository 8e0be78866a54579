"""The Git LFS pointer format and the layout of the local object store.

Pure data and file-system layout (no git, no subprocess): :func:`parse_pointer`
reads a pointer file the way git-lfs does (spec v1: under 1024 bytes, a
``version`` line first, sorted keys, ``oid sha256:``, ``size``, optional
``ext-N-name`` lines; the legacy ``hawser`` URL too). :class:`LfsStore` knows
where objects live (``.git/lfs/objects/aa/bb/oid``) and keeps a quarantine
(``.git/lfs/quarantine/``) for refused objects.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from ml_integrity.core.fileio import write_atomic

__all__ = [
    "MAX_POINTER_SIZE",
    "REFUSAL_LINE",
    "LfsStore",
    "Pointer",
    "parse_pointer",
    "parse_refusal_stub",
    "sha256_file",
]

MAX_POINTER_SIZE = 1024
"""git-lfs treats only blobs smaller than this as pointer candidates."""

SPEC_URL = "https://git-lfs.github.com/spec/v1"
_LEGACY_URL = "https://hawser.github.com/spec/v1"
_OID_RE = re.compile(r"^sha256:([0-9a-f]{64})$")
_EXT_RE = re.compile(r"^ext-(\d)-(\w+)$")
_KEY_RE = re.compile(r"^[a-z0-9.-]+$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_CANONICAL_RE = re.compile(
    rb"version https://git-lfs\.github\.com/spec/v1\n"
    rb"oid sha256:([0-9a-f]{64})\nsize (0|[1-9][0-9]*)\n?"
)

# --- pointers --------------------------------------------------------------


class Pointer(NamedTuple):
    """A parsed Git LFS pointer: the object's sha256 (hex), its size, extensions.

    A named tuple: repositories list tens of thousands of them per commit.
    """

    oid: str
    size: int
    extensions: tuple[tuple[int, str, str], ...] = ()
    """(priority, name, oid) of each ``ext-N-name`` line."""

    def text(self) -> bytes:
        """The canonical pointer file (what ``git lfs pointer`` writes)."""
        lines = [f"version {SPEC_URL}"]
        lines += [f"ext-{p}-{n} sha256:{o}" for p, n, o in self.extensions]
        lines += [f"oid sha256:{self.oid}", f"size {self.size}"]
        return ("\n".join(lines) + "\n").encode()

    def refusal_stub(self) -> bytes:
        """What the work tree holds at a path whose content was refused: this pointer,
        then :data:`REFUSAL_LINE`.

        git-lfs reads a line after ``size`` as "not a pointer" and leaves such a
        file alone (``git lfs pull`` and ``git lfs checkout`` write only files
        that are missing or still hold the pointer of the oid they fill), so no
        git-lfs command can write an object at a path that was refused for it,
        not even an object signed for another path. The filter cleans a stub
        back to the pointer (``git status`` stays clean); ``ml-integrity pull``
        turns it back into the pointer once the path verifies.
        """
        return self.text() + REFUSAL_LINE


REFUSAL_LINE = b"ml-integrity-refused see `ml-integrity verify --git-repo` for why\n"
"""The line that turns a pointer into a refusal stub (:meth:`Pointer.refusal_stub`)."""


def parse_refusal_stub(data: bytes) -> Pointer | None:
    """The pointer of a refusal stub (:meth:`Pointer.refusal_stub`), else ``None``."""
    if not data.endswith(REFUSAL_LINE) or len(data) >= MAX_POINTER_SIZE:
        return None
    return parse_pointer(data[: -len(REFUSAL_LINE)])


def parse_pointer(data: bytes) -> Pointer | None:
    """The pointer in ``data``, or ``None`` when ``data`` is not a pointer file.

    Follows the spec and git-lfs's parser: fewer than 1024 bytes, UTF-8,
    ``key value`` lines, ``version`` first, the other keys in sorted order,
    ``oid`` and ``size`` present. Empty data is not reported as a pointer
    here (an empty file needs no verification: it is its own content).
    """
    if not data or len(data) >= MAX_POINTER_SIZE:
        return None
    fast = _CANONICAL_RE.fullmatch(data)  # the form git-lfs writes: most pointers
    if fast is not None:
        return Pointer(oid=fast.group(1).decode(), size=int(fast.group(2)))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        return None
    pairs: list[tuple[str, str]] = []
    for line in lines:
        key, sep, value = line.partition(" ")
        if not sep or not key or not _KEY_RE.match(key) or value != value.strip() or not value:
            return None
        pairs.append((key, value))
    if pairs[0][0] != "version" or pairs[0][1] not in (SPEC_URL, _LEGACY_URL):
        return None
    rest = pairs[1:]
    keys = [k for k, _ in rest]
    if keys != sorted(keys) or len(set(keys)) != len(keys):
        return None
    values = dict(rest)
    oid_m = _OID_RE.match(values.get("oid", ""))
    size_s = values.get("size", "")
    if oid_m is None or not size_s.isdigit() or (len(size_s) > 1 and size_s[0] == "0"):
        return None
    exts: list[tuple[int, str, str]] = []
    for key, value in rest:
        if key in ("oid", "size"):
            continue
        m = _EXT_RE.match(key)
        ext_oid = _OID_RE.match(value)
        if m is None or ext_oid is None:
            return None
        exts.append((int(m.group(1)), m.group(2), ext_oid.group(1)))
    if len({p for p, _, _ in exts}) != len(exts):
        return None
    return Pointer(oid=oid_m.group(1), size=int(size_s), extensions=tuple(exts))


# --- the local store and the quarantine ------------------------------------


class LfsStore:
    """The local LFS object store of a repository and its quarantine."""

    def __init__(self, lfs_dir: Path) -> None:
        self.root = lfs_dir

    @classmethod
    def for_git_dir(cls, common_dir: Path, storage: str | None = None) -> LfsStore:
        """``lfs.storage`` (relative to the git dir) or ``<common git dir>/lfs``."""
        if storage:
            p = Path(storage)
            return cls(p if p.is_absolute() else common_dir / p)
        return cls(common_dir / "lfs")

    def object_path(self, oid: str) -> Path:
        _check_oid(oid)
        return self.root / "objects" / oid[:2] / oid[2:4] / oid

    @property
    def quarantine_dir(self) -> Path:
        return self.root / "quarantine"

    @property
    def tmp_dir(self) -> Path:
        return self.root / "tmp"

    def quarantine_path(self, oid: str) -> Path:
        _check_oid(oid)
        return self.quarantine_dir / oid

    def has(self, oid: str) -> bool:
        return self.object_path(oid).is_file()

    def quarantine(self, oid: str, record: Mapping[str, object]) -> Path | None:
        """Move the object out of the store (never deleted); returns its new path.

        A JSON record beside it says why and where it came from. Returns
        ``None`` when the store does not hold the object.
        """
        src = self.object_path(oid)
        if not src.is_file():
            return None
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        dst = self.quarantine_path(oid)
        note = dst.with_name(oid + ".json")
        write_atomic(note, json.dumps(record, indent=2).encode() + b"\n")
        try:
            os.replace(src, dst)
        except OSError:
            # The object stays in the store; no record may claim it was moved.
            with contextlib.suppress(OSError):
                note.unlink()
            raise
        return dst

    def release(self, oid: str) -> bool:
        """Move a quarantined object back into the store; True when it was there."""
        src = self.quarantine_path(oid)
        if not src.is_file():
            return False
        dst = self.object_path(oid)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        with contextlib.suppress(FileNotFoundError):
            src.with_name(oid + ".json").unlink()
        return True

    def quarantined(self) -> list[str]:
        if not self.quarantine_dir.is_dir():
            return []
        return sorted(p.name for p in self.quarantine_dir.iterdir() if _SHA256_RE.match(p.name))


def _check_oid(oid: str) -> None:
    if not _SHA256_RE.match(oid):
        raise ValueError(f"not a sha256 oid: {oid!r}")


def sha256_file(path: Path, bufsize: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(bufsize):
            h.update(chunk)
    return h.hexdigest()
