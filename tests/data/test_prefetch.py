"""Read-ahead in a helper process: it reads, the caller hashes; nothing unverified is served."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ml_integrity.data import Journal, VerifiedDataset
from ml_integrity.data import prefetch as pf
from ml_integrity.errors import IntegrityError
from tests.data.conftest import Signed, make_dataset, sign

pytestmark = pytest.mark.skipif(not pf.available(), reason="read-ahead needs os.memfd_create")


@pytest.fixture
def many(tmp_path: Path, key: tuple[Path, Path]) -> Signed:
    root = make_dataset(tmp_path, "many", files=60, size=3000)
    time.sleep(0.2)  # past the stat cache's racy window
    return Signed(root, sign(root, key[0], tmp_path / "many.sig"), key[0], key[1])


def open_ds(s: Signed, **kwargs: object) -> VerifiedDataset:
    kwargs.setdefault("readahead", 1)
    return VerifiedDataset(s.root, bundle=s.bundle, key=s.pub, use_cache=False, **kwargs)  # type: ignore[arg-type]


def helper(ds: VerifiedDataset) -> pf.Prefetcher:
    assert ds._ahead is not None
    return ds._ahead


def following(ahead: pf.Prefetcher) -> bool:
    return ahead.active


def test_an_explicit_plan_is_served_by_the_helper_and_hashed_here(many: Signed) -> None:
    journal = Journal()
    ds = open_ds(many, journal=journal)
    order = ds.files
    random.Random(1).shuffle(order)
    ds.prefetch(order)
    ahead = helper(ds)
    assert ahead.pid is not None and ahead.settle(len(order))
    for path in order:
        assert ds.read_bytes(path) == (many.root / path).read_bytes()
    assert ahead.served == len(order)  # every item came from the helper, and was hashed here
    ((_, items),) = journal.items().items()
    assert len(items) == 61 and all(n == 1 for _, n in items.values())
    pid = ahead.pid
    ds.close()
    assert ds._ahead is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # ended and reaped


def test_reading_the_signed_order_is_predicted(many: Signed) -> None:
    ds = open_ds(many)
    files = ds.files
    ds.read_bytes(files[0])
    ds.read_bytes(files[1])  # two consecutive items of the signed order: plan the rest
    ahead = helper(ds)
    assert following(ahead) and ahead.settle(len(files) - 2)
    for path in files[2:]:
        assert ds.read_bytes(path) == (many.root / path).read_bytes()
    assert ahead.served == len(files) - 2
    # leaving the order ends a predicted plan
    ds.read_bytes(files[3])
    ds.read_bytes(files[0])
    assert not following(ahead)
    ds.close()


def test_random_access_predicts_nothing(many: Signed) -> None:
    ds = open_ds(many)
    order = ds.files[::7]
    for path in order:
        ds.read_bytes(path)
    assert ds._ahead is None  # no helper was ever started
    ds.close()


def test_tampered_items_read_ahead_are_refused_by_the_caller(many: Signed) -> None:
    ds = open_ds(many)
    order = ds.files
    bad = order[20]
    (many.root / bad).write_bytes(os.urandom(3000))  # same size: only the hash tells
    link = order[30]
    keep = many.root / "kept.bin"
    (many.root / link).rename(keep)
    (many.root / link).symlink_to(keep)
    ds.prefetch(order)
    assert helper(ds).settle(len(order) - 1)  # all but the link, which it cannot open
    got = []
    for path in order:
        if path == bad:
            with pytest.raises(IntegrityError, match="tampered") as exc:
                ds.read_bytes(path)
            assert exc.value.path == bad
        elif path == link:
            with pytest.raises(IntegrityError, match="symbolic link"):
                ds.read_bytes(path)
        else:
            got.append(ds.read_bytes(path) == (many.root / path).read_bytes())
    assert all(got) and len(got) == len(order) - 2
    ds.close()


def test_an_item_changed_after_the_helper_read_it(many: Signed) -> None:
    """Served as the bytes the caller hashed (the signed ones), or refused: never mixed."""
    ds = open_ds(many)
    order = ds.files[:32]
    original = {p: (many.root / p).read_bytes() for p in order}
    ds.prefetch(order)
    assert helper(ds).settle(len(order))  # all 32 are in shared memory
    for p in order:
        (many.root / p).write_bytes(os.urandom(3000))
    for p in order:
        assert ds.read_bytes(p) == original[p]  # what the helper read, hashed here
    with pytest.raises(IntegrityError, match="tampered"):
        ds.read_bytes(order[0])  # read again now: from the disk, refused
    ds.close()


def test_the_helper_dying_changes_nothing_but_speed(many: Signed) -> None:
    ds = open_ds(many)
    order = ds.files
    ds.prefetch(order)
    ahead = helper(ds)
    assert ahead.pid is not None
    os.kill(ahead.pid, 9)
    for path in order:
        assert ds.read_bytes(path) == (many.root / path).read_bytes()
    ds.close()


def test_a_forked_child_never_uses_its_parents_helper(many: Signed) -> None:
    ds = open_ds(many)
    ds.prefetch(ds.files)
    parent = helper(ds)
    assert parent.settle(len(ds.files))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the very object, inherited
        ok = False
        try:
            data = [ds.read_bytes(p) for p in ds.files]
            mine = ds._ahead
            ok = data == [(many.root / p).read_bytes() for p in ds.files] and (
                mine is None or (mine is not parent and mine.pid != parent.pid)
            )
        finally:
            os.write(w, b"1" if ok else b"0")
            os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"1"
    os.waitpid(pid, 0)
    os.close(r)
    for path in ds.files:  # the parent's plan is untouched
        assert ds.read_bytes(path) == (many.root / path).read_bytes()
    assert parent.served == len(ds.files)
    ds.close()


def test_off_and_bounds(many: Signed) -> None:
    ds = open_ds(many, readahead=0)
    ds.prefetch(ds.files)
    assert ds._ahead is None
    for path in ds.files:
        ds.read_bytes(path)
    small = open_ds(many, readahead_memory=3 << 20, readahead_items=32)
    small.prefetch(small.files)
    ahead = helper(small)
    assert ahead.slots == 2 and ahead.window == 32
    assert [small.read_bytes(p) for p in small.files] == [
        (many.root / p).read_bytes() for p in small.files
    ]
    small.close()


def test_second_epoch_uses_the_stat_cache_not_the_helper(many: Signed) -> None:
    ds = VerifiedDataset(many.root, bundle=many.bundle, key=many.pub, readahead=1)
    files = ds.files
    ds.prefetch(files)
    for path in files:
        ds.read_bytes(path)
    assert len(ds._verified) == len(files)  # what the caller hashed is remembered
    ahead = helper(ds)
    served = ahead.served
    ds.prefetch(files)  # nothing left to read ahead: every item is verified
    for path in files:
        ds.read_bytes(path)
    assert ahead.served == served
    ds.close()


def test_default_stays_out_of_torch_workers(many: Signed, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    fake = types.ModuleType("torch.utils.data")
    fake.get_worker_info = lambda: object()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch.utils.data", fake)
    ds = open_ds(many, readahead=None)
    ds.prefetch(ds.files)
    assert ds._ahead is None


def test_an_explicit_plan_survives_skips_and_reads_outside_it(many: Signed) -> None:
    ds = open_ds(many)
    order = [*ds.files[:30], "not-signed.bin", *ds.files[30:]]
    ds.prefetch(order)
    ahead = helper(ds)
    assert ahead.settle(len(order) - 1)
    for i, path in enumerate(order):
        if path == "not-signed.bin":
            with pytest.raises(IntegrityError, match="not signed"):
                ds.read_bytes(path)
        elif i % 3 == 0:
            continue  # the caller leaves some out
        else:
            assert ds.read_bytes(path) == (many.root / path).read_bytes()
        if i == 10:
            ds.read_bytes("labels.csv")  # outside the plan: served, the plan stays
    assert not following(ahead)  # done
    assert ahead.served >= 30
    ds.close()


def test_an_idle_helper_ends_and_the_next_plan_starts_another(
    many: Signed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pf, "IDLE_SECONDS", 1.5)
    ds = open_ds(many)
    files = ds.files
    ds.prefetch(files[:32])
    ahead = helper(ds)
    first = ahead.pid
    assert first is not None and ahead.settle(32)
    for path in files[:32]:
        ds.read_bytes(path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and ahead._proc is not None and ahead._proc.poll() is None:
        time.sleep(0.1)  # it ends by itself
    assert ahead._proc is not None and ahead._proc.poll() == 0
    ds.prefetch(files)  # (use_cache=False: read and hashed again)
    assert ahead.pid not in (None, first) and ahead.settle(len(files))
    for path in files:
        assert ds.read_bytes(path) == (many.root / path).read_bytes()
    assert ahead.served == 32 + len(files)
    ds.close()


def test_threads_sharing_a_dataset_get_only_their_items_bytes(many: Signed) -> None:
    """One dataset read by several threads at once (a thread-pool loader taking the next
    item of one plan): every read returns exactly the bytes of the item asked for, while
    the helper serves."""
    import itertools
    import sys
    import threading

    expected = {p.relative_to(many.root).as_posix(): p.read_bytes() for p in many.root.rglob("*")
                if p.is_file()}  # fmt: skip
    wrong: list[str] = []
    served = 0
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch inside every read: races show
    try:
        for _ in range(10):
            ds = open_ds(many)
            order = ds.files
            ds.prefetch(order)
            helper(ds).settle(len(order) // 2)
            turn = itertools.count()

            def reader(
                ds: VerifiedDataset = ds, order: list[str] = order, turn: Iterator[int] = turn
            ) -> None:
                while (i := next(turn)) < len(order):
                    if ds.read_bytes(order[i]) != expected[order[i]]:
                        wrong.append(order[i])

            threads = [threading.Thread(target=reader) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            served += helper(ds).served
            ds.close()
    finally:
        sys.setswitchinterval(interval)
    assert served > 0  # the helper's copies were handed out, across threads
    assert wrong == []


def test_a_job_cut_by_a_full_pipe_is_finished_before_a_new_plan(many: Signed) -> None:
    """The job pipe takes part of a job: the rest goes out whole before anything of the
    next plan, and jobs of which nothing was sent are dropped (the helper reads whole
    jobs only; a cut one would be read as garbage)."""
    ahead = pf.Prefetcher(f"{many.root}/", {}, lambda rel: False)  # no helper started
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    try:
        import fcntl

        fcntl.fcntl(write_fd, 1031, 4096)  # F_SETPIPE_SZ: a pipe of one page
    except OSError:
        pytest.skip("cannot shrink a pipe here")
    jobs = [bytes([i]) * 3000 for i in range(1, 4)]

    class Running:
        def poll(self) -> None:
            return None

    try:
        ahead._proc = Running()  # type: ignore[assignment]
        ahead._job_fd = write_fd
        ahead._jobs = list(jobs)
        ahead._flush()  # 4096 bytes: job 1 whole, job 2 cut
        sent = os.read(read_fd, 1 << 16)
        assert sent == jobs[0] + jobs[1][: len(sent) - 3000]
        ahead._jobs.clear()  # a new plan drops the jobs not begun (job 3) ...
        ahead._flush()
        rest = os.read(read_fd, 1 << 16)
        assert sent + rest == jobs[0] + jobs[1]  # ... but finishes the cut one
        assert ahead._partial == b"" and ahead._jobs == []
    finally:
        ahead._proc = None
        os.close(read_fd)
        os.close(write_fd)
