"""Worker processes re-open the bundle and their journal records merge (no torch needed)."""

from __future__ import annotations

import io
import multiprocessing
import os
import tarfile
from pathlib import Path

import pytest

from ml_integrity.data import Journal, VerifiedDataset
from ml_integrity.data.adapters import ShardStreams, TorchDataset
from ml_integrity.errors import IntegrityError
from tests.data.conftest import Signed, sign


def _read_some(ds: TorchDataset[bytes], indices: list[int]) -> tuple[int, int, list[int]]:
    sizes = [len(ds[i]) for i in indices]
    return os.getpid(), ds.dataset._pid, sizes


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_workers_reverify_and_journals_merge(signed: Signed, method: str) -> None:
    journal = Journal()
    ds = VerifiedDataset(signed.root, bundle=signed.bundle, key=signed.pub, journal=journal)
    adapter: TorchDataset[bytes] = TorchDataset(ds)
    ds.read_bytes("labels.csv")  # one read in the parent
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(2) as pool:
        results = pool.starmap(_read_some, [(adapter, [0, 1, 2]), (adapter, [2, 3, 4, 5])])
    for pid, opened_in, sizes in results:
        assert pid != os.getpid() and opened_in == pid  # verified again in the worker
        assert all(sizes)
    ((_, items),) = journal.items().items()
    assert items["images/002.bin"][1] == 2
    assert items["labels.csv"][1] == 2  # the parent's read and index 5 in a worker
    assert sum(n for _, n in items.values()) == 8
    journal.close()


def _tamper_then_read(ds: VerifiedDataset, path: str) -> str:
    try:
        ds.read_bytes(path)
    except IntegrityError as exc:
        return exc.message
    return "read"


def test_worker_refuses_a_tampered_item(signed: Signed) -> None:
    ds = VerifiedDataset(signed.root, bundle=signed.bundle, key=signed.pub)
    (signed.root / "images" / "001.bin").write_bytes(os.urandom(2000))
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert "tampered" in pool.apply(_tamper_then_read, (ds, "images/001.bin"))


def make_shards(root: Path, shards: int = 2, samples: int = 3) -> None:
    root.mkdir()
    for s in range(shards):
        with tarfile.open(root / f"shard-{s:02d}.tar", "w") as tar:
            for i in range(samples):
                for ext, data in (("jpg", os.urandom(700)), ("cls", str(i).encode())):
                    info = tarfile.TarInfo(f"sample{s}{i:02d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))


def test_tar_shards(tmp_path: Path, key: tuple[Path, Path]) -> None:
    root = tmp_path / "shards"
    make_shards(root)
    bundle = sign(root, key[0], tmp_path / "shards.sig")
    journal = Journal()
    ds = VerifiedDataset(root, bundle=bundle, key=key[1], journal=journal, split="train")
    samples = list(ShardStreams(ds).samples())
    assert [s["__key__"] for s in samples][:3] == ["sample000", "sample001", "sample002"]
    assert len(samples) == 6 and all(
        set(s) == {"__key__", "__url__", "jpg", "cls"} for s in samples
    )
    streamed = list(ShardStreams(ds, whole=False).samples())
    assert [s["jpg"] for s in streamed] == [s["jpg"] for s in samples]
    ((_, items),) = journal.items().items()
    assert items["shard-00.tar"][1] == 2
    # a tampered shard: whole=True yields nothing of it
    shard = root / "shard-01.tar"
    data = bytearray(shard.read_bytes())
    data[600] ^= 1
    shard.write_bytes(bytes(data))
    got = []
    with pytest.raises(IntegrityError, match="tampered"):
        for sample in ShardStreams(ds, ["shard-01.tar"]).samples():
            got.append(sample)  # noqa: PERF402
    assert got == []
