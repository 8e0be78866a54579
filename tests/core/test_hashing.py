"""The hashing engine: digests, parallelism, the stat cache, errors.

Files are small; the read-ahead path is exercised by lowering its size
threshold. Cache tests that need a *trusted* entry wait out the racy margin
once (about 0.1 s), because ctime cannot be set back.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ml_integrity.core import hashing, hashing_cache, hashing_read
from ml_integrity.core.hashing import (
    FileDigest,
    StatCache,
    default_cache_path,
    hash_file,
    hash_files,
)
from ml_integrity.errors import Error, ExitCode, OperationalError

CHUNK = 4096  # a small chunk so that small files span many chunks


def sha(data: bytes) -> FileDigest:
    return FileDigest(len(data), hashlib.sha256(data).hexdigest())


def wait_out_racy_margin() -> None:
    """Let the files written so far become older than the racy margin."""
    time.sleep(hashing.RACY_MARGIN_NS / 1e9 + 0.03)


def make_tree(root: Path, sizes: dict[str, int], seed: int = 0) -> dict[str, bytes]:
    rng = random.Random(seed)
    contents = {}
    for rel, size in sizes.items():
        data = rng.randbytes(size)
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        contents[rel] = data
    return contents


TREE_SIZES = {
    "model-00001-of-00002.safetensors": 300_000,
    "model-00002-of-00002.safetensors": 123_457,
    "config.json": 512,
    "empty.txt": 0,
    "one.bin": 1,
    "tokenizer/vocab.json": CHUNK,
    "tokenizer/merges.txt": CHUNK + 1,
    "tokenizer/special.json": CHUNK - 1,
    **{f"extra/nested/shard_{i:02d}.bin": 1000 + 997 * i for i in range(20)},
}


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path / "model"
    return root, make_tree(root, TREE_SIZES)


class OpenSpy:
    """Records the paths opened through ``os.open`` (a spy: the real call runs)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.opened: list[str] = []
        self._lock = threading.Lock()
        real_open = os.open

        def spy(path: str | bytes | os.PathLike[str], flags: int, *args: int, **kw: int) -> int:
            with self._lock:
                self.opened.append(os.fsdecode(path))
            return real_open(path, flags, *args, **kw)

        monkeypatch.setattr(os, "open", spy)

    def count(self, root: Path) -> int:
        prefix = os.fspath(root) + os.sep
        return sum(p.startswith(prefix) for p in self.opened)


@pytest.fixture
def open_spy(monkeypatch: pytest.MonkeyPatch) -> Callable[[], OpenSpy]:
    return lambda: OpenSpy(monkeypatch)


# --- digests -----------------------------------------------------------------


@pytest.mark.parametrize(
    "size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 17, 100_003]
)
def test_hash_file_equals_hashlib(tmp_path: Path, size: int) -> None:
    data = random.Random(size).randbytes(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert hash_file(path, chunk_size=CHUNK) == sha(data)
    assert hash_file(path) == sha(data)


def test_digest_is_lowercase_hex(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    digest = hash_file(tmp_path / "f")
    assert digest.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert digest.size == 3


@pytest.mark.parametrize("workers", [1, 2, 4, None])
def test_hash_files_equals_hashlib(
    tree: tuple[Path, dict[str, bytes]], workers: int | None
) -> None:
    root, contents = tree
    paths = sorted(contents)
    result = hash_files(root, paths, workers=workers, chunk_size=CHUNK)
    assert result == {p: sha(contents[p]) for p in paths}
    assert list(result) == paths  # in the caller's order


def test_parallel_equals_sequential(tree: tuple[Path, dict[str, bytes]]) -> None:
    root, contents = tree
    paths = sorted(contents, reverse=True)
    sequential = hash_files(root, paths, workers=1)
    parallel = hash_files(root, paths, workers=8)
    assert sequential == parallel
    assert list(sequential) == list(parallel) == paths


def test_duplicate_paths_are_hashed_once(
    tree: tuple[Path, dict[str, bytes]], open_spy: Callable[[], OpenSpy]
) -> None:
    root, contents = tree
    spy = open_spy()
    result = hash_files(root, ["config.json", "one.bin", "config.json"], workers=2)
    assert result == {
        "config.json": sha(contents["config.json"]),
        "one.bin": sha(contents["one.bin"]),
    }
    assert spy.count(root) == 2


def test_biggest_files_are_scheduled_first(
    tree: tuple[Path, dict[str, bytes]], open_spy: Callable[[], OpenSpy]
) -> None:
    root, contents = tree
    spy = open_spy()
    hash_files(root, sorted(contents), workers=1)
    opened = [os.path.relpath(p, root).replace(os.sep, "/") for p in spy.opened]
    sizes = [len(contents[p]) for p in opened]
    assert sorted(opened) == sorted(contents)
    assert sizes == sorted(sizes, reverse=True)


def test_many_small_files_in_batches(tmp_path: Path) -> None:
    sizes = {f"d{i % 7}/f{i:03d}.bin": (i * 37) % 3000 for i in range(150)}
    sizes["huge.bin"] = 3 * CHUNK
    contents = make_tree(tmp_path, sizes)
    paths = sorted(contents)
    expected = {p: sha(contents[p]) for p in paths}
    assert hash_files(tmp_path, paths, workers=3) == expected
    assert hash_files(tmp_path, paths, workers=1) == expected


def test_batches_group_small_files_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hashing, "BATCH_BYTES", 1000)
    monkeypatch.setattr(hashing, "BATCH_FILES", 3)
    key = (0, 0, 0, 0, 0)
    sizes = {"a": 5000, "b": 1000, "c": 600, "d": 500, **{f"s{i}": 1 for i in range(4)}}
    todo = [(size, rel, f"r/{rel}", key) for rel, size in sizes.items()]
    batches = hashing._batches(todo)
    assert [[item[1] for item in b] for b in batches] == [
        ["a"],
        ["b"],
        ["c", "d"],  # 1100 bytes >= BATCH_BYTES
        ["s0", "s1", "s2"],  # BATCH_FILES
        ["s3"],
    ]


@pytest.fixture
def readahead_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Lower the read-ahead threshold to 16 chunks; record the bytes each
    read-ahead thread read (a spy: the real read-ahead runs)."""
    monkeypatch.setattr(hashing_read, "READAHEAD_MIN_SIZE", 16 * CHUNK)
    calls: list[int] = []
    real = hashing_read.hash_rest_readahead

    def counting(*args: object, **kwargs: object) -> int:
        n = real(*args, **kwargs)  # type: ignore[arg-type]
        calls.append(n)
        return n

    monkeypatch.setattr(hashing_read, "hash_rest_readahead", counting)
    return calls


def test_readahead_on_a_lone_large_file(tmp_path: Path, readahead_calls: list[int]) -> None:
    contents = make_tree(tmp_path, {"big.bin": 200 * CHUNK + 5})
    result = hash_files(tmp_path, ["big.bin"], workers=2, chunk_size=CHUNK)
    assert result == {"big.bin": sha(contents["big.bin"])}
    assert readahead_calls == [200 * CHUNK + 5]  # the whole file came through the reader
    assert hash_file(tmp_path / "big.bin", chunk_size=CHUNK) == sha(contents["big.bin"])


def test_readahead_with_other_files_gives_the_same_digests(
    tmp_path: Path, readahead_calls: list[int]
) -> None:
    sizes = {"big.bin": 300 * CHUNK + 1, "mid.bin": 40 * CHUNK, "small.bin": 3 * CHUNK}
    contents = make_tree(tmp_path, sizes)
    for workers in (2, 3):
        result = hash_files(tmp_path, sorted(sizes), workers=workers, chunk_size=CHUNK)
        assert result == {p: sha(d) for p, d in contents.items()}


def test_running_file_switches_to_readahead_when_a_thread_frees_up(
    tmp_path: Path, readahead_calls: list[int]
) -> None:
    data = make_tree(tmp_path, {"big.bin": 100 * CHUNK})["big.bin"]
    budget = hashing_read.Budget(2, pending=2)  # two files; this one starts first
    budget.start_task()
    chunks = 0

    def on_bytes(n: int) -> None:
        nonlocal chunks
        chunks += 1
        if chunks == 10:  # meanwhile, the other file starts and finishes
            budget.start_task()
            budget.end_task()

    fd = os.open(tmp_path / "big.bin", os.O_RDONLY)
    try:
        result = hashing_read.hash_fd(
            fd, hashing_read.new_buffer(CHUNK), len(data), budget, None, on_bytes
        )
    finally:
        os.close(fd)
    assert result == (len(data), hashlib.sha256(data).hexdigest())
    assert readahead_calls == [90 * CHUNK]  # the rest, after the 10th chunk
    assert budget.active == 1  # the reader's thread was given back


def test_workers_1_uses_no_readahead_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hashing_read, "READAHEAD_MIN_SIZE", 16 * CHUNK)
    contents = make_tree(tmp_path, {"big.bin": 100 * CHUNK})

    def no_reader(*args: object, **kwargs: object) -> int:
        raise AssertionError("read-ahead must not run with workers=1")

    monkeypatch.setattr(hashing_read, "hash_rest_readahead", no_reader)
    result = hash_files(tmp_path, ["big.bin"], workers=1, chunk_size=CHUNK)
    assert result == {"big.bin": sha(contents["big.bin"])}


# --- progress ---------------------------------------------------------------------


def test_progress_is_monotonic_and_ends_at_total(tree: tuple[Path, dict[str, bytes]]) -> None:
    root, contents = tree
    calls: list[tuple[int, int]] = []
    lock = threading.Lock()

    def progress(done: int, total: int) -> None:
        with lock:
            calls.append((done, total))

    hash_files(root, sorted(contents), workers=4, chunk_size=CHUNK, progress=progress)
    total = sum(len(d) for d in contents.values())
    assert calls[-1] == (total, total)
    assert all(t == total for _, t in calls)
    dones = [d for d, _ in calls]
    assert dones == sorted(dones)


def test_progress_is_throttled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hashing_read, "PROGRESS_INTERVAL_S", 3600.0)
    make_tree(tmp_path, {"a.bin": 50 * CHUNK, "b.bin": 50 * CHUNK})
    calls: list[tuple[int, int]] = []
    hash_files(
        tmp_path,
        ["a.bin", "b.bin"],
        workers=2,
        chunk_size=CHUNK,
        progress=lambda d, t: calls.append((d, t)),
    )
    # 100 chunks read, but at most the first report plus the final one.
    assert 1 <= len(calls) <= 2
    assert calls[-1] == (100 * CHUNK, 100 * CHUNK)


# --- the stat cache -----------------------------------------------------------------


def test_unchanged_tree_is_not_read_again(
    tree: tuple[Path, dict[str, bytes]], tmp_path: Path, open_spy: Callable[[], OpenSpy]
) -> None:
    root, contents = tree
    paths = sorted(contents)
    cache_path = tmp_path / "cache" / "statcache.json"
    wait_out_racy_margin()
    cache = StatCache.load(cache_path)
    first = hash_files(root, paths, cache=cache)
    assert (cache.hits, cache.misses) == (0, len(paths))
    cache.save()

    spy = open_spy()
    cache = StatCache.load(cache_path)
    progress: list[tuple[int, int]] = []
    second = hash_files(root, paths, cache=cache, progress=lambda d, t: progress.append((d, t)))
    assert second == first == {p: sha(contents[p]) for p in paths}
    assert spy.count(root) == 0, spy.opened
    assert (cache.hits, cache.misses) == (len(paths), 0)
    assert progress == [(0, 0)]
    assert not cache.dirty


def test_content_change_with_same_size_and_restored_mtime_is_detected(
    tree: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    root, contents = tree
    wait_out_racy_margin()
    cache = StatCache.load(tmp_path / "c.json")
    hash_files(root, sorted(contents), cache=cache)

    target = root / "config.json"
    before = target.stat()
    new = bytes(b ^ 0xFF for b in contents["config.json"])
    target.write_bytes(new)
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))  # like cp -p / touch -r
    assert target.stat().st_size == before.st_size
    assert target.stat().st_mtime_ns == before.st_mtime_ns

    result = hash_files(root, sorted(contents), cache=cache)
    assert result["config.json"] == sha(new) != sha(contents["config.json"])
    assert cache.misses == len(contents) + 1  # first run, plus the changed file


def test_racy_entry_is_not_trusted(tmp_path: Path, open_spy: Callable[[], OpenSpy]) -> None:
    root = tmp_path / "m"
    contents = make_tree(root, {"w.bin": 1000})
    cache = StatCache.load(tmp_path / "c.json")
    # Hashed right after being written: the mtime is not older than the record.
    hash_files(root, ["w.bin"], cache=cache)
    spy = open_spy()
    assert hash_files(root, ["w.bin"], cache=cache) == {"w.bin": sha(contents["w.bin"])}
    assert spy.count(root) == 1
    assert cache.hits == 0


def test_racy_rule_protects_against_a_same_tick_edit(tmp_path: Path) -> None:
    """An entry whose stat key still matches but was recorded in the file's own
    timestamp tick must not be trusted: the file may have changed after it was
    read without its stat changing. Recorded in the cache as such a case."""
    root = tmp_path / "m"
    make_tree(root, {"w.bin": 64})
    real = sha((root / "w.bin").read_bytes())
    st = os.lstat(root / "w.bin")
    stale = FileDigest(64, "0" * 64)  # what the file held "before the edit"
    key = os.path.realpath(root)

    cache = StatCache(tmp_path / "c.json")
    cache._record(key, "w.bin", st, max(st.st_mtime_ns, st.st_ctime_ns), stale)
    assert hash_files(root, ["w.bin"], cache=cache) == {"w.bin": real}

    # The same entry recorded well after the file's timestamps is trusted
    # (this is exactly what makes the cache fast, and why the rule matters).
    cache = StatCache(tmp_path / "c.json")
    cache._record(key, "w.bin", st, st.st_ctime_ns + 10 * hashing.RACY_MARGIN_COARSE_NS, stale)
    assert hash_files(root, ["w.bin"], cache=cache) == {"w.bin": stale}
    assert hash_files(root, ["w.bin"], cache=cache, rehash=True) == {"w.bin": real}


def test_future_mtime_is_never_trusted(tmp_path: Path, open_spy: Callable[[], OpenSpy]) -> None:
    root = tmp_path / "m"
    contents = make_tree(root, {"f.bin": 100})
    future = time.time_ns() + 3600 * 10**9
    os.utime(root / "f.bin", ns=(future, future))
    wait_out_racy_margin()
    cache = StatCache.load(tmp_path / "c.json")
    hash_files(root, ["f.bin"], cache=cache)
    spy = open_spy()
    assert hash_files(root, ["f.bin"], cache=cache) == {"f.bin": sha(contents["f.bin"])}
    assert spy.count(root) == 1


def test_coarse_timestamps_get_a_wider_margin() -> None:
    now = time.time_ns()
    # 0.1-0.2 s old, with a sub-millisecond part (a fine-grained filesystem)
    fine = (now - hashing.RACY_MARGIN_NS - 10**6) // 10**6 * 10**6 + 123_457
    # 0.1-1.1 s old, in whole seconds (FAT, some network filesystems)
    coarse = (now - hashing.RACY_MARGIN_NS - 10**6) // 10**9 * 10**9
    assert not hashing_cache.is_racy(fine, fine, now)
    assert hashing_cache.is_racy(coarse, coarse, now)
    assert not hashing_cache.is_racy(coarse, coarse, coarse + hashing.RACY_MARGIN_COARSE_NS + 1)
    assert hashing_cache.is_racy(fine, now, now)  # ctime counts as much as mtime


def test_rehash_ignores_but_refreshes_the_cache(
    tree: tuple[Path, dict[str, bytes]], tmp_path: Path, open_spy: Callable[[], OpenSpy]
) -> None:
    root, contents = tree
    paths = sorted(contents)
    wait_out_racy_margin()
    cache = StatCache.load(tmp_path / "c.json")
    hash_files(root, paths, cache=cache)
    # Poison one trusted entry, as an attacker who could write the cache would.
    st = os.lstat(root / "config.json")
    cache._record(
        os.path.realpath(root), "config.json", st, time.time_ns(), FileDigest(512, "f" * 64)
    )
    assert hash_files(root, paths, cache=cache)["config.json"].sha256 == "f" * 64

    spy = open_spy()
    result = hash_files(root, paths, cache=cache, rehash=True)
    assert result == {p: sha(contents[p]) for p in paths}
    assert spy.count(root) == len(paths)
    # ... and the cache now holds the real digest again.
    assert hash_files(root, paths, cache=cache)["config.json"] == sha(contents["config.json"])


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"{not json",
        b"\xff\xfe\x00",
        b"[]",
        b'{"format": "ml-integrity/statcache", "version": 999, "roots": {}}',
        b'{"format": "other", "version": 1, "roots": {}}',
        b'{"format": "ml-integrity/statcache", "version": 1, "roots": []}',
        b'{"format": "ml-integrity/statcache", "version": 1, "roots": {"/r": []}}',
    ],
)
def test_corrupt_cache_file_gives_empty_cache(
    tmp_path: Path, payload: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(payload)
    with caplog.at_level(logging.DEBUG, logger="ml_integrity.core.hashing_cache"):
        cache = StatCache.load(path)
    assert len(cache) == 0
    assert "corrupt" in caplog.text


@pytest.mark.parametrize(
    "bad_entry",
    [
        [1, 2, 3, 4, 5, 6],  # too short
        [1, 2, 3, 4, 5, 6, "A" * 64],  # upper-case hex
        [1, 2, 3, 4, 5, 6, "0" * 63],  # too short a digest
        [1, 2, -3, 4, 5, 6, "0" * 64],  # negative size
        [1, 2, True, 4, 5, 6, "0" * 64],  # bool is not a number here
        [1, 2, 3.0, 4, 5, 6, "0" * 64],  # float
        {"size": 3},
    ],
)
def test_one_bad_entry_discards_the_whole_cache(
    tree: tuple[Path, dict[str, bytes]], tmp_path: Path, bad_entry: object
) -> None:
    root, contents = tree
    paths = sorted(contents)
    path = tmp_path / "c.json"
    cache = StatCache.load(path)
    hash_files(root, paths, cache=cache)
    cache.save()
    data = json.loads(path.read_bytes())
    (entries,) = data["roots"].values()
    good = entries["config.json"]
    entries["config.json"] = [*good[:6], "0" * 64]  # a well-formed lie ...
    entries["zzz.bin"] = bad_entry  # ... next to a malformed entry
    path.write_text(json.dumps(data))

    cache = StatCache.load(path)
    assert len(cache) == 0  # never partly trusted
    result = hash_files(root, paths, cache=cache)
    assert result == {p: sha(contents[p]) for p in paths}
    cache.save()  # rewritten valid
    assert len(StatCache.load(path)) == len(paths)


def test_save_is_atomic_creates_dirs_and_skips_when_clean(
    tree: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    root, contents = tree
    path = tmp_path / "a" / "b" / "statcache.json"
    cache = StatCache.load(path)
    assert not path.exists()
    cache.save()
    assert not path.exists()  # nothing to write
    hash_files(root, sorted(contents), cache=cache)
    cache.save()
    assert path.is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == ["statcache.json"]  # no temp left
    written = path.stat().st_mtime_ns, path.stat().st_ino
    cache.save()
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == written
    assert len(StatCache.load(path)) == len(contents)


def test_save_failure_is_a_warning_or_strict_error(
    tree: tuple[Path, dict[str, bytes]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root, contents = tree
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = StatCache.load(blocker / "statcache.json")
    hash_files(root, sorted(contents), cache=cache)
    with caplog.at_level(logging.WARNING, logger="ml_integrity.core.hashing_cache"):
        cache.save()
    assert "cannot write the hash cache" in caplog.text
    with pytest.raises(OperationalError) as info:
        cache.save(strict=True)
    assert info.value.exit_code == ExitCode.OPERATIONAL
    assert info.value.path == str(blocker / "statcache.json")
    assert info.value.hint


def test_save_into_a_read_only_folder_keeps_the_old_cache(
    tree: tuple[Path, dict[str, bytes]], caplog: pytest.LogCaptureFixture
) -> None:
    root, contents = tree
    # Not under tmp_path: its parents are private to the user running pytest.
    folder = Path(tempfile.mkdtemp(prefix="mli-ro-"))
    try:
        path = folder / "statcache.json"
        paths = sorted(contents)
        cache = StatCache.load(path)
        hash_files(root, paths[:1], cache=cache)
        cache.save()
        before = path.read_bytes()
        hash_files(root, paths, cache=cache)  # more entries: dirty again
        folder.chmod(0o555)
        with unprivileged():
            with caplog.at_level(logging.WARNING, logger="ml_integrity.core.hashing_cache"):
                cache.save()
            assert cache.dirty  # still to be written next time
            with pytest.raises(OperationalError) as info:
                cache.save(strict=True)
        assert "cannot write the hash cache" in caplog.text
        assert info.value.path == str(path)
        assert path.read_bytes() == before  # the old cache is intact
        assert sorted(p.name for p in folder.iterdir()) == ["statcache.json"]  # no temp left
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)


def test_roots_sharing_a_cache_do_not_collide(tmp_path: Path) -> None:
    a = make_tree(tmp_path / "a", {"w.bin": 10}, seed=1)
    b = make_tree(tmp_path / "b", {"w.bin": 10}, seed=2)
    wait_out_racy_margin()
    cache = StatCache.load(tmp_path / "c.json")
    assert hash_files(tmp_path / "a", ["w.bin"], cache=cache) == {"w.bin": sha(a["w.bin"])}
    assert hash_files(tmp_path / "b", ["w.bin"], cache=cache) == {"w.bin": sha(b["w.bin"])}
    assert hash_files(tmp_path / "a", ["w.bin"], cache=cache) == {"w.bin": sha(a["w.bin"])}
    assert cache.hits == 1
    assert len(cache) == 2
    cache.retain(tmp_path / "a", [])
    assert len(cache) == 1


# --- where the cache lives ----------------------------------------------------------


def git(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["git", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def test_cache_path_in_a_git_work_tree(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "models" / "bert").mkdir(parents=True)
    git("init", "-q", cwd=repo)
    expected = repo.resolve() / ".git" / "ml-integrity" / "statcache.json"
    assert default_cache_path(repo) == expected
    assert default_cache_path(repo / "models" / "bert") == expected


def test_cache_path_in_a_linked_worktree(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "-q", cwd=repo)
    git("commit", "-q", "--allow-empty", "-m", "init", cwd=repo)
    git("worktree", "add", "-q", tmp_path / "wt", cwd=repo)
    assert (tmp_path / "wt" / ".git").is_file()
    path = default_cache_path(tmp_path / "wt")
    assert path == repo.resolve() / ".git" / "worktrees" / "wt" / "ml-integrity" / "statcache.json"
    assert not path.is_relative_to(tmp_path / "wt")


def test_cache_path_outside_git_uses_xdg_cache_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    xdg = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    name = hashlib.sha256(os.fsencode(model.resolve())).hexdigest() + ".json"
    assert default_cache_path(model) == xdg / "ml-integrity" / "statcache" / name
    # The same folder named differently (relative, via ..) maps to the same file.
    monkeypatch.chdir(tmp_path)
    assert default_cache_path(Path("model/../model")) == xdg / "ml-integrity" / "statcache" / name
    # A relative XDG_CACHE_HOME is invalid per the XDG spec: fall back to ~/.cache.
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")
    assert default_cache_path(model) == Path.home() / ".cache/ml-integrity/statcache" / name


def test_dot_git_that_is_not_a_repository_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "model" / ".git").mkdir(parents=True)  # no HEAD: not a git dir
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / ".git").write_text("garbage\n")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    for folder in ("model", "other"):
        path = default_cache_path(tmp_path / folder)
        assert path.is_relative_to(tmp_path / "xdg"), path


# --- errors -------------------------------------------------------------------------


def assert_operational(exc: Error, path: Path, words: str) -> None:
    assert isinstance(exc, OperationalError)
    assert exc.exit_code == ExitCode.OPERATIONAL
    assert int(exc.exit_code) == 3
    assert exc.path == str(path)
    assert words in exc.message
    assert exc.hint
    assert str(path) in exc.diagnostics()


def assert_both_refuse(root: Path, rels: list[str], bad: str, words: str) -> None:
    """hash_files (over ``rels``) and hash_file (on ``bad``) both refuse ``bad``."""
    with pytest.raises(OperationalError) as info:
        hash_files(root, rels)
    assert_operational(info.value, root / bad, words)
    with pytest.raises(OperationalError) as info:
        hash_file(root / bad)
    assert_operational(info.value, root / bad, words)


def test_missing_file(tree: tuple[Path, dict[str, bytes]]) -> None:
    root, contents = tree
    assert_both_refuse(root, [*sorted(contents), "gone.bin"], "gone.bin", "not found")


def test_directory(tree: tuple[Path, dict[str, bytes]]) -> None:
    root, _ = tree
    assert_both_refuse(root, ["tokenizer"], "tokenizer", "a directory")


def test_symlink_refused_unless_followed(tree: tuple[Path, dict[str, bytes]]) -> None:
    root, contents = tree
    (root / "link.json").symlink_to("config.json")
    assert_both_refuse(root, ["link.json"], "link.json", "symbolic link")
    expected = sha(contents["config.json"])
    assert hash_files(root, ["link.json"], follow_symlinks=True) == {"link.json": expected}
    assert hash_file(root / "link.json", follow_symlinks=True) == expected


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    # hash_file opens it (non-blocking), then refuses it
    assert_both_refuse(tmp_path, ["pipe"], "pipe", "named pipe")


def test_file_changed_while_hashing(tmp_path: Path) -> None:
    make_tree(tmp_path, {"grow.bin": 20 * CHUNK})
    grown = threading.Event()

    def append_once(done: int, total: int) -> None:
        if not grown.is_set() and done < total:
            grown.set()
            with open(tmp_path / "grow.bin", "ab") as f:
                f.write(b"more")

    with pytest.raises(OperationalError) as info:
        hash_files(tmp_path, ["grow.bin"], chunk_size=CHUNK, progress=append_once)
    assert_operational(info.value, tmp_path / "grow.bin", "changed while")


def test_file_truncated_while_hashing(tmp_path: Path) -> None:
    make_tree(tmp_path, {"shrink.bin": 20 * CHUNK})

    def truncate(done: int, total: int) -> None:
        os.truncate(tmp_path / "shrink.bin", 5 * CHUNK)

    with pytest.raises(OperationalError) as info:
        hash_files(tmp_path, ["shrink.bin"], chunk_size=CHUNK, progress=truncate)
    assert_operational(info.value, tmp_path / "shrink.bin", "changed while")


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """Drop root's effective uid for a moment: root can read a mode-000 file."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)  # nobody
    try:
        yield
    finally:
        os.seteuid(0)


def test_permission_denied() -> None:
    # Not under tmp_path: its parents are private to the user running pytest.
    folder = Path(tempfile.mkdtemp(prefix="mli-perm-"))
    try:
        folder.chmod(0o755)
        (folder / "a.bin").write_bytes(b"a" * 100)
        (folder / "secret.bin").write_bytes(b"s" * 100)
        (folder / "secret.bin").chmod(0)
        with unprivileged():
            with pytest.raises(OperationalError) as info:
                hash_files(folder, ["a.bin", "secret.bin"], workers=2)
            with pytest.raises(OperationalError) as single:
                hash_file(folder / "secret.bin")
            assert hash_file(folder / "a.bin") == sha(b"a" * 100)
        assert_operational(info.value, folder / "secret.bin", "permission denied")
        assert_operational(single.value, folder / "secret.bin", "permission denied")
    finally:
        shutil.rmtree(folder)


def test_invalid_arguments(tmp_path: Path) -> None:
    for bad in ("../x", "/etc/passwd", "", "a/../../b"):
        with pytest.raises(ValueError):
            hash_files(tmp_path, [bad])
    with pytest.raises(ValueError):
        hash_files(tmp_path, [], workers=0)
    with pytest.raises(ValueError):
        hash_file(tmp_path, chunk_size=10)


def test_empty_list(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    assert hash_files(tmp_path, [], progress=lambda d, t: calls.append((d, t))) == {}
    assert calls == [(0, 0)]


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not leaked, leaked
