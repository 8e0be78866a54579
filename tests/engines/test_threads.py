"""The threaded engine's stat cache: large files only, in a file of its own."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from ml_integrity.core import hashing, manifest, streaming
from ml_integrity.engines.threads import SMALL_FILE, ThreadEngine


def test_large_files_come_from_the_cache_the_second_time(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "big.bin").write_bytes(b"x" * (SMALL_FILE + 1))
    (root / "small.txt").write_text("small\n")
    time.sleep(hashing.RACY_MARGIN_NS / 1e9 + 0.05)  # not racy when first recorded
    first = io.BytesIO()
    streaming.build_to_file(root, ThreadEngine(), first)
    path = hashing.default_cache_path(root)
    stream_cache = path.with_name(f"{path.stem}-stream.json")
    assert stream_cache.exists() and not path.exists()
    cache = hashing.StatCache.load(stream_cache)
    assert len(cache) == 1  # only the large file

    calls: list[tuple[list[str], object]] = []
    real = hashing.hash_files

    def spy(root_: Path, paths: list[str], **kw: object) -> dict[str, hashing.FileDigest]:
        calls.append((list(paths), kw["cache"]))
        return real(root_, paths, **kw)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hashing, "hash_files", spy)
        second = io.BytesIO()
        streaming.build_to_file(root, ThreadEngine(), second)
    ((paths, used),) = calls
    assert paths == ["big.bin"]
    assert isinstance(used, hashing.StatCache) and (used.hits, used.misses) == (1, 0)
    assert second.getvalue() == first.getvalue()
    assert first.getvalue() == manifest.build_from_directory(root, use_cache=False).to_json()
