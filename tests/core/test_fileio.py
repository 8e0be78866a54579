"""The one atomic-write helper: old content survives any failure, no temp file is left."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ml_integrity.core import fileio as _fileio


def test_replaces_content_and_sets_mode(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "key.pem"
    _fileio.write_atomic(target, b"secret", mode=0o600)
    assert target.read_bytes() == b"secret"
    assert target.stat().st_mode & 0o777 == 0o600
    _fileio.write_atomic(target, b"new", durable=False)
    assert target.read_bytes() == b"new"
    assert [p.name for p in target.parent.iterdir()] == ["key.pem"]


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failed_write_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: BaseException
) -> None:
    target = tmp_path / "manifest.json"
    target.write_bytes(b"old")

    def broken_fsync(fd: int) -> None:
        raise failure

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(type(failure)):
        _fileio.write_atomic(target, b"half")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
