"""Verified read-ahead: threads read and hash ahead; read_bytes serves only what they hashed."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from ml_integrity.core import hashing
from ml_integrity.data import Journal, VerifiedDataset
from ml_integrity.data import readahead as readahead_module
from ml_integrity.data.adapters import TorchDataset
from ml_integrity.data.readahead import ReadAhead
from ml_integrity.errors import IntegrityError
from tests.data.conftest import Signed, make_dataset, sign

SIZE = 3000


@pytest.fixture
def many(tmp_path: Path, key: tuple[Path, Path]) -> Signed:
    """40 items of 3000 bytes (and labels.csv), signed."""
    root = make_dataset(tmp_path, files=40, size=SIZE)
    bundle = sign(root, key[0], tmp_path / "dataset.sig")
    hashing.default_cache_path(root).unlink()  # signing filled it: every item needs hashing
    time.sleep(0.15)  # past the racy window (0.1 s): what is verified now can be recorded
    return Signed(root, bundle, key[0], key[1])


def open_ds(s: Signed, **kwargs: Any) -> VerifiedDataset:
    kwargs.setdefault("readahead", 2)  # threads whatever the machine's load (default: None)
    return VerifiedDataset(s.root, bundle=s.bundle, key=s.pub, **kwargs)


def ahead_of(ds: VerifiedDataset) -> ReadAhead:
    ahead = ds._ahead
    assert ahead is not None
    return ahead


def wait_until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def ready(ds: VerifiedDataset, rel: str) -> bool:
    ahead = ahead_of(ds)
    with ahead._lock:
        return rel in ahead._ready


def settled(ds: VerifiedDataset) -> bool:
    """No item in flight and no thread able to claim one (the plan is done or the window full)."""
    return ahead_of(ds).settled()


def readahead_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "ml-integrity-readahead"]


class RecordingSha256:
    """hashlib.sha256, keeping every buffer a read-ahead thread (not the caller) hashed."""

    def __init__(self) -> None:
        self.original = hashlib.sha256
        self.hashed: list[bytes] = []
        self.lock = threading.Lock()

    def __call__(self, data: bytes = b"") -> Any:
        if threading.current_thread().name == "ml-integrity-readahead":
            with self.lock:
                self.hashed.append(data)
        return self.original(data)


def test_bytes_served_are_the_bytes_a_thread_hashed(
    many: Signed, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = RecordingSha256()
    monkeypatch.setattr(hashlib, "sha256", recorder)
    ds = open_ds(many)
    files = ds.files
    ds.prefetch(files)
    wait_until(lambda: settled(ds))
    served = [ds.read_bytes(p) for p in files]
    for rel, data in zip(files, served, strict=True):
        assert data == (many.root / rel).read_bytes()
    # every small item was hashed by a thread, and read_bytes returned that very object
    hashed_ids = {id(b) for b in recorder.hashed}
    assert sum(id(d) in hashed_ids for d in served) == len(files)
    ds.close()
    monkeypatch.undo()


def test_item_tampered_after_prefetch_is_served_as_hashed_or_refused(many: Signed) -> None:
    ds = open_ds(many)
    rel = "images/005.bin"
    original = (many.root / rel).read_bytes()
    ds.prefetch([rel, "images/006.bin"])
    wait_until(lambda: ready(ds, rel))
    (many.root / rel).write_bytes(os.urandom(SIZE))  # same size, other content
    assert ds.read_bytes(rel) == original  # the bytes that were hashed and matched
    # what the thread recorded for the stat cache was the stat before its read: the
    # tampered file has another stat key, so the next read hashes again and refuses
    with pytest.raises(IntegrityError) as err:
        ds.read_bytes(rel)
    assert err.value.path == rel and "tampered" in err.value.message
    ds.close()


def test_item_tampered_before_prefetch_is_refused_naming_it(many: Signed) -> None:
    ds = open_ds(many)
    files = ds.files
    bad = files[7]
    (many.root / bad).write_bytes(os.urandom(SIZE))
    ds.prefetch(files)
    wait_until(lambda: settled(ds))
    assert not ready(ds, bad)  # the thread kept nothing of it
    got: list[bytes] = []
    with pytest.raises(IntegrityError) as err:
        for p in files:
            got += [ds.read_bytes(p)]
    assert err.value.path == bad and "tampered" in err.value.message
    assert len(got) == 7  # everything before it, nothing of it
    # the same holds when the stride predictor planned the read-ahead
    ds2 = open_ds(many)
    with pytest.raises(IntegrityError) as err:
        for p in files:
            ds2.read_bytes(p)
    assert err.value.path == bad
    ds.close()
    ds2.close()


def test_a_changed_size_or_a_symlink_is_never_served(many: Signed, tmp_path: Path) -> None:
    ds = open_ds(many)
    files = ds.files
    (many.root / files[2]).write_bytes(b"short")
    outside = tmp_path / "outside.bin"
    outside.write_bytes((many.root / files[3]).read_bytes())  # the signed content, elsewhere
    (many.root / files[3]).unlink()
    (many.root / files[3]).symlink_to(outside)
    ds.prefetch(files[:6])
    wait_until(lambda: settled(ds))
    assert not ready(ds, files[2]) and not ready(ds, files[3])
    assert ds.read_bytes(files[0]) and ds.read_bytes(files[1])
    with pytest.raises(IntegrityError) as err:
        ds.read_bytes(files[2])
    assert err.value.path == files[2]
    with pytest.raises(IntegrityError) as err:
        ds.read_bytes(files[3])
    assert err.value.path == files[3] and "symbolic link" in err.value.message
    ds.close()


@pytest.mark.parametrize(("memory", "items"), [(3 * SIZE, 256), (64 << 20, 4)])
def test_memory_and_item_caps_are_respected(
    many: Signed, memory: int, items: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = RecordingSha256()
    monkeypatch.setattr(hashlib, "sha256", recorder)
    ds = open_ds(many, readahead_memory=memory, readahead_items=items)
    files = ds.files
    cap = min(memory // SIZE, items)
    ds.prefetch(files)
    ahead = ahead_of(ds)
    wait_until(lambda: settled(ds))
    with ahead._lock:
        assert set(ahead._ready) == set(files[:cap])  # the window is full, and no more
    served = []
    for rel in files:
        with ahead._lock:
            assert ahead.reserved <= memory
            assert len(ahead._ready) + len(ahead._inflight) <= cap
        served.append(ds.read_bytes(rel))
        assert served[-1] == (many.root / rel).read_bytes()
    assert 0 < ahead.peak <= memory
    hashed = {id(b) for b in recorder.hashed}
    assert sum(id(d) in hashed for d in served) >= cap
    ds.close()
    monkeypatch.undo()


def test_stride_predictor_reads_ahead_in_order_and_per_worker(many: Signed) -> None:
    for step in (1, 3):
        ds = open_ds(many, use_cache=False)  # each round hashes again
        files = ds.files[::step]
        for rel in files[:3]:  # two equal steps make a plan
            ds.read_bytes(rel)
        ahead = ahead_of(ds)
        wait_until(lambda: ready(ds, files[3]))  # noqa: B023 - used at once
        assert list(ahead._order[:2]) == files[3:5]
        for rel in files[3:]:
            assert ds.read_bytes(rel) == (ds.root / rel).read_bytes()
        ds.close()


def test_shuffled_order_is_correct_and_refuses_a_tampered_item(many: Signed) -> None:
    import random

    ds = open_ds(many, journal=Journal())
    order = ds.files
    random.Random(7).shuffle(order)
    bad = order[20]
    (many.root / bad).write_bytes(os.urandom(SIZE))
    for rel in order:
        if rel == bad:
            with pytest.raises(IntegrityError) as err:
                ds.read_bytes(rel)
            assert err.value.path == bad
        else:
            assert ds.read_bytes(rel) == (many.root / rel).read_bytes()
    ds.close()


def test_journal_records_what_was_served_not_what_was_prefetched(many: Signed) -> None:
    journal = Journal()
    ds = open_ds(many, journal=journal)
    files = ds.files
    ds.prefetch(files)
    wait_until(lambda: settled(ds))
    ds.read_bytes(files[0])
    ds.read_bytes(files[1])
    ds.read_bytes(files[1])
    ((_, items),) = journal.items().items()
    assert {rel: n for rel, (_d, n) in items.items()} == {files[0]: 1, files[1]: 2}
    ds.close()


def test_iter_bytes_and_torch_getitems(many: Signed, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = open_ds(many)
    got = dict(ds.iter_bytes())
    assert list(got) == ds.files
    assert all(got[p] == (many.root / p).read_bytes() for p in ds.files)
    ds.close()
    ds = open_ds(many)
    plans: list[list[str]] = []
    prefetch = ds.prefetch

    def spy(paths: list[str]) -> None:
        plans.append(list(paths))
        prefetch(paths)

    def sized(path: str, content: bytes) -> tuple[str, int]:
        return path, len(content)

    monkeypatch.setattr(ds, "prefetch", spy)
    adapter: TorchDataset[tuple[str, int]] = TorchDataset(ds, sized)
    batch = adapter.__getitems__([5, 1, 30])
    assert batch == [adapter[5], adapter[1], adapter[30]]
    assert plans == [[ds.files[i] for i in (5, 1, 30)]]
    ds.close()


def test_close_stops_the_threads_and_a_later_read_starts_them_again(many: Signed) -> None:
    ds = open_ds(many)
    files = ds.files
    ds.prefetch(files)
    ahead = ahead_of(ds)
    assert ahead.alive() > 0
    threads = list(ahead._workers)
    ds.close()
    assert ds._ahead is None
    assert not any(t.is_alive() for t in threads)
    assert ahead.reserved == 0 and not ahead._ready
    ds.prefetch(files[10:])  # usable after close: a new pool
    assert ahead_of(ds) is not ahead
    assert ds.read_bytes(files[10]) == (many.root / files[10]).read_bytes()
    ds.close()


def test_idle_threads_end_by_themselves(many: Signed, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readahead_module, "IDLE_SECONDS", 0.05)
    ds = open_ds(many)
    ds.prefetch(ds.files[:3])
    ahead = ahead_of(ds)
    wait_until(lambda: ahead.alive() == 0)
    for rel in ds.files[:3]:
        assert ds.read_bytes(rel)
    ds.prefetch(ds.files[3:6])  # a new plan starts threads again
    assert ahead.alive() > 0
    wait_until(lambda: ready(ds, ds.files[5]))
    ds.close()


def test_readahead_zero_starts_no_thread(many: Signed) -> None:
    before = readahead_threads()
    ds = open_ds(many, readahead=0)
    ds.prefetch(ds.files)
    for rel in ds.files:
        assert ds.read_bytes(rel)
    assert ds._ahead is None and readahead_threads() == before
    ds.close()


@pytest.mark.parametrize(("load", "reads_ahead"), [(0.5, True), (64.0, False)])
def test_default_reads_ahead_only_with_a_core_to_spare(
    many: Signed, monkeypatch: pytest.MonkeyPatch, load: float, reads_ahead: bool
) -> None:
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    ds = open_ds(many, readahead=None)
    files = ds.files
    for rel in files[:3]:
        ds.read_bytes(rel)  # a plan, when the load allows
    ahead = ahead_of(ds)
    if reads_ahead:
        wait_until(lambda: ready(ds, files[3]))
    else:
        assert ahead.alive() == 0 and not ahead._order
    assert all(ds.read_bytes(p) == (many.root / p).read_bytes() for p in files[3:])
    ds.close()


def test_items_the_stat_cache_vouches_for_are_not_read_ahead(
    many: Signed, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = open_ds(many)
    for rel in ds.files:
        ds.read_bytes(rel)
    ds.close()  # writes the stat cache file
    recorder = RecordingSha256()
    monkeypatch.setattr(hashlib, "sha256", recorder)
    ds = open_ds(many)  # a new process, in effect: the cache file vouches for every item
    ds.prefetch(ds.files)
    wait_until(lambda: settled(ds))
    assert not ahead_of(ds)._ready and not recorder.hashed  # nothing read, nothing hashed
    assert all(ds.read_bytes(p) == (many.root / p).read_bytes() for p in ds.files)
    ds.close()
    monkeypatch.undo()


def test_forked_child_does_not_inherit_a_running_pool(
    many: Signed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readahead_module, "IDLE_SECONDS", 60.0)  # alive at the fork
    ds = open_ds(many)
    files = ds.files
    ds.prefetch(files)
    parent = ahead_of(ds)
    wait_until(lambda: settled(ds))
    assert parent.alive() > 0
    r, w = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "fork() with threads" (3.12+)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            inherited = len(readahead_threads())
            parent.close()  # a no-op here: its threads and locks are the parent's
            data = [ds.read_bytes(p) for p in files]
            child = ds._ahead
            ok = (
                inherited == 0
                and child is not None
                and child is not parent
                and child._pid == os.getpid()
                and all(d == (many.root / p).read_bytes() for d, p in zip(data, files, strict=True))
            )
            ds.close()
            os.write(w, b"ok" if ok and not readahead_threads() else b"bad")
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(r, "rb") as f:
        assert f.read() == b"ok"
    assert os.waitstatus_to_exitcode(status) == 0
    assert ds._ahead is parent  # the parent's pool is untouched
    assert ds.read_bytes(files[0]) == (many.root / files[0]).read_bytes()
    ds.close()


def test_interpreter_exit_with_running_threads(many: Signed) -> None:
    script = (
        "import sys\n"
        "from ml_integrity.data import VerifiedDataset\n"
        "ds = VerifiedDataset(sys.argv[1], bundle=sys.argv[2], key=sys.argv[3], readahead=2)\n"
        "ds.prefetch(ds.files)\n"
        "print(ds.read_bytes(ds.files[0]) is not None, ds._ahead.alive() > 0)\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(many.root.parent / "cache")}
    proc = subprocess.run(
        [sys.executable, "-c", script, str(many.root), str(many.bundle), str(many.pub)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True"]
    assert proc.stderr == ""
