"""Atomic file writes: the one helper every module uses (no half-written files).

``write_atomic`` writes to a temporary file in the target's folder and renames
it over the target, so a reader sees the old content or the new, never a
mixture; on any failure (including Ctrl-C) the temporary file is removed and
the old content is kept. Errors are raised as :class:`OSError`; callers decide
what they mean (a usage error for a file the user named, a warning for a
cache).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes, *, mode: int | None = None, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically.

    ``mode`` (e.g. 0o600 for a private key) is set before any byte is written.
    ``durable`` flushes the data to disk before the rename; caches that only
    cost speed when lost pass ``durable=False``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask() if mode is None else mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
