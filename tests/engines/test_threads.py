"""The threaded engine: its stat cache (large files only, in a file of its own), and the
streamed signing of every algorithm (the in-memory statement, byte for byte)."""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path

import pytest

from ml_integrity.core import hashing, manifest, signing, signing_stream, streaming
from ml_integrity.engines.threads import SMALL_FILE, ThreadEngine
from ml_integrity.trust.keys import KeySigner, generate
from tests.engines.trees import make_tree


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


@pytest.mark.parametrize("hash_type", ["blake2", "blake3", "sha256"])
def test_streamed_signing_is_the_in_memory_statement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hash_type: str
) -> None:
    """sign_folder (the streaming path, every algorithm) signs the bytes signing.sign signs."""
    from ml_integrity.engines import threads

    root = make_tree(tmp_path / "data", dirs=5, files_per_dir=30)
    key, _pub = generate(tmp_path / "key.pem", "ec-p256")
    signer = KeySigner(key)
    signing.sign(root, signer, tmp_path / "memory.sig", hash_type=hash_type, rehash=True)
    # small windows and batches: the forked helpers hash most of the small files
    monkeypatch.setattr(threads, "WINDOW", 20)
    monkeypatch.setattr(threads, "BATCH", 7)
    engine = ThreadEngine(use_cache=False, workers=2)
    result = signing_stream.sign_folder(
        root, signer, tmp_path / "stream.sig", engine, hash_type=hash_type
    )
    assert result.files == 150 and result.shards == 0
    payloads = [
        base64.b64decode(json.loads((tmp_path / n).read_text())["dsseEnvelope"]["payload"])
        for n in ("memory.sig", "stream.sig")
    ]
    assert payloads[0] == payloads[1]
    algorithm = json.loads(payloads[0])["predicate"]["serialization"]["hash_type"]
    assert algorithm == {"blake2": "blake2b"}.get(hash_type, hash_type)


def test_forked_helpers_ignore_ctrl_c() -> None:
    """Ctrl-C interrupts only the main process, which waits for the helpers: a helper
    killed by it while sending a result once left the parent waiting for ever."""
    import signal

    from ml_integrity.engines.forked import fork_pool, stop_pool

    pool = fork_pool(1)
    try:
        assert pool.submit(signal.getsignal, signal.SIGINT).result() == signal.SIG_IGN
    finally:
        stop_pool(pool, ok=True)
