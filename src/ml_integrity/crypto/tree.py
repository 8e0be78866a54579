"""Encrypt or decrypt a file into a file, or a folder into a folder of the same layout.

A folder is walked like a model folder (:func:`ml_integrity.core.manifest.list_files`:
sorted relative paths, symbolic links and special files refused, the top-level
git metadata left out) and every file is encrypted under its own data key,
keeping its relative path. The output folder is built under a temporary name
beside it and renamed into place when every file is done: on a failure
nothing of it remains, so decryption never leaves plaintext behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from ml_integrity.core import manifest
from ml_integrity.crypto import message as msg
from ml_integrity.crypto import stream
from ml_integrity.crypto.providers import KeyProvider
from ml_integrity.errors import UsageError

FileOp = Callable[[Path, Path], int]


def _check_output(src: Path, dst: Path, force: bool, folder: bool) -> None:
    if not src.exists():
        raise UsageError("no such file or directory", path=src)
    src_real, dst_real = Path(os.path.realpath(src)), Path(os.path.realpath(dst))
    if dst_real == src_real or (dst_real.is_relative_to(src_real) and folder):
        raise UsageError("the output must lie outside the input", path=dst)
    if folder and dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise UsageError(
            "output folder already exists and is not empty",
            path=dst,
            hint="pass a new folder as --output",
        )
    if not folder and dst.is_dir():
        raise UsageError("output is a folder, expected a file name", path=dst)
    if not folder and dst.exists() and not force:
        raise UsageError("output already exists", path=dst, hint="pass --force to replace it")


def _each_file(src: Path, dst: Path, op: FileOp) -> list[str]:
    files = manifest.list_files(src)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".partial", dir=dst.parent))
    try:
        for rel in files:
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            op(src / rel, target)
        if dst.exists():
            dst.rmdir()  # empty (checked above)
        os.replace(tmp, dst)
        os.chmod(dst, 0o777 & ~_umask())
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise
    return files


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def encrypt_path(
    src: Path,
    dst: Path,
    recipients: Sequence[KeyProvider],
    *,
    frame_length: int = msg.DEFAULT_FRAME,
    force: bool = False,
) -> list[str]:
    """Encrypt a file or a folder; return the relative paths written (``["."]`` for a file)."""
    folder = src.is_dir()
    _check_output(src, dst, force, folder)

    def op(a: Path, b: Path) -> int:
        return stream.encrypt_file(a, b, recipients, frame_length=frame_length, force=force)

    if not folder:
        op(src, dst)
        return ["."]
    return _each_file(src, dst, op)


def decrypt_path(
    src: Path, dst: Path, keys: Sequence[KeyProvider], *, force: bool = False
) -> list[str]:
    """Decrypt a file or a folder; nothing is left at ``dst`` when any file fails."""
    folder = src.is_dir()
    _check_output(src, dst, force, folder)

    def op(a: Path, b: Path) -> int:
        return stream.decrypt_file(a, b, keys, force=force)

    if not folder:
        op(src, dst)
        return ["."]
    return _each_file(src, dst, op)
