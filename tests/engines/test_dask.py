"""The Dask engine on a real LocalCluster of 2 worker processes (one per module).

Differential: the Dask engine's manifest must be the threaded engine's, byte
for byte (and the in-memory manifest's), and so must the statement it signs
in shards (``sign --shard-size --engine dask``) or with BLAKE2. A worker that
dies is replaced and its partition (or shard task) runs again; one that keeps
killing workers fails the run with a clear error and leaves no manifest or
bundle; a file changed between the listing and its hashing (or while its
shards are hashed on two workers) is detected.
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ml_integrity.core import hashing, manifest, signing, streaming
from ml_integrity.engines import dask as dask_engine
from ml_integrity.engines import dask_shards
from ml_integrity.engines.dask import DaskEngine, Outcome, Partition, hash_partition
from ml_integrity.engines.dask_shards import Range, hash_ranges
from ml_integrity.engines.threads import ThreadEngine
from ml_integrity.errors import OperationalError
from ml_integrity.trust.keys import KeySigner, generate
from tests.conftest import CLI
from tests.engines.trees import make_tree

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")


def _local_cluster() -> Any:
    """A LocalCluster of 2 worker processes. Its IO loop must start within the 10 s that
    distributed allows (an AssertionError otherwise): on a stalled shared machine that
    has been missed once, so a start that fails is tried again (twice at most)."""
    for attempt in range(3):
        try:
            return distributed.LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
            )
        except AssertionError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    # a partition that kills its worker twice fails the run (the default is 3 retries)
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 1}),
        _local_cluster() as cluster,
    ):
        yield str(cluster.scheduler_address)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tree(tmp_path_factory.mktemp("tree") / "data")


@pytest.fixture
def small_partitions(monkeypatch: pytest.MonkeyPatch) -> None:
    # many partitions out of a small tree, so that several are in flight at once
    monkeypatch.setattr(dask_engine, "PARTITION_FILES", 25)
    monkeypatch.setattr(dask_engine, "PARTITION_MIN_FILES", 5)


def _build(root: Path, engine: streaming.Engine) -> bytes:
    out = io.BytesIO()
    streaming.build_to_file(root, engine, out)
    return out.getvalue()


@pytest.mark.usefixtures("small_partitions")
def test_manifest_identical_to_threaded(scheduler: str, tree: Path) -> None:
    threaded = _build(tree, ThreadEngine(use_cache=False))
    assert threaded == manifest.build_from_directory(tree, use_cache=False).to_json()
    assert _build(tree, DaskEngine(scheduler=scheduler)) == threaded


class DieOnce:
    """Kills the worker process that runs the first partition, once."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __call__(self, root: str, part: Partition, follow: bool, algorithm: str) -> Outcome:
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return hash_partition(root, part, follow, algorithm)
        os._exit(1)


class AlwaysDie:
    def __call__(self, root: str, part: Partition, follow: bool, algorithm: str) -> Outcome:
        os._exit(1)


@pytest.mark.usefixtures("small_partitions")
def test_killed_worker_is_retried(scheduler: str, tree: Path, tmp_path: Path) -> None:
    expected = _build(tree, ThreadEngine(use_cache=False))
    engine = DaskEngine(scheduler=scheduler, task=DieOnce(tmp_path / "died"))
    assert _build(tree, engine) == expected
    assert (tmp_path / "died").exists()  # a worker really died


def test_workers_that_keep_dying_fail_without_a_manifest(
    scheduler: str, tree: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out" / "manifest.json"
    with pytest.raises(OperationalError) as info:
        streaming.build_to_path(tree, DaskEngine(scheduler=scheduler, task=AlwaysDie()), out)
    assert "workers died" in info.value.message
    assert not out.exists()
    assert list(out.parent.iterdir()) == []  # no temporary file left either


class ChangeFirst:
    """Appends to the first file of the partition before hashing it (a writer racing us)."""

    def __call__(self, root: str, part: Partition, follow: bool, algorithm: str) -> Outcome:
        with open(part[0][1], "ab") as f:
            f.write(b"changed")
        return hash_partition(root, part, follow, algorithm)


def test_file_changed_during_hashing_is_detected(scheduler: str, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "data", dirs=2, files_per_dir=5)
    out = tmp_path / "manifest.json"
    with pytest.raises(OperationalError) as info:
        streaming.build_to_path(root, DaskEngine(scheduler=scheduler, task=ChangeFirst()), out)
    assert "changed while it was being hashed" in info.value.message
    assert info.value.path is not None and info.value.path.startswith(str(root))
    assert not out.exists()


def test_missing_distributed_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from ml_integrity.errors import UsageError

    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(UsageError) as info:
        DaskEngine()
    assert "ml-integrity[dask]" in (info.value.hint or "")


def test_cli_manifest_and_sign_with_dask(
    scheduler: str, tree: Path, tmp_path: Path, cli: CLI
) -> None:
    threaded, with_dask = tmp_path / "t.json", tmp_path / "d.json"
    assert cli("manifest", tree, "-o", threaded, "--rehash").returncode == 0
    r = cli("manifest", tree, "-o", with_dask, "--engine", "dask", "--scheduler", scheduler)
    assert r.returncode == 0, r.stderr
    assert with_dask.read_bytes() == threaded.read_bytes()
    r = cli("manifest", tree, "--json", "--scheduler", scheduler)
    assert r.returncode == 2 and "--scheduler needs --engine dask" in r.stderr

    key, _pub = generate(tmp_path / "key.pem", "ec-p256")
    bundles = {}
    for engine in ("threads", "dask"):
        bundle = tmp_path / f"{engine}.sig"
        extra = ["--scheduler", scheduler] if engine == "dask" else []
        r = cli("sign", tree, "--key", key, "--bundle", bundle, "--engine", engine, *extra)
        assert r.returncode == 0, r.stderr
        doc = json.loads(bundle.read_text())
        bundles[engine] = base64.b64decode(doc["dsseEnvelope"]["payload"])
    assert bundles["dask"] == bundles["threads"]  # the same statement was signed


# --- shards on the cluster (sign --shard-size --engine dask) -----------------------

SHARD = 64 << 10


def make_model(root: Path) -> Path:
    """Files of one to many shards (none empty: shard mode refuses empty files)."""
    (root / "caf\u00e9").mkdir(parents=True)
    (root / "sub").mkdir()
    (root / "weights.bin").write_bytes(os.urandom(1_500_000))  # 23 shards
    (root / "caf\u00e9" / "x.bin").write_bytes(os.urandom(SHARD + 1))  # 2 shards
    (root / "sub" / "a.bin").write_bytes(b"tiny")
    (root / "config.json").write_text('{"layers": 2}\n')
    old = 1_000_000_000
    for p in root.rglob("*"):
        if p.is_file():
            os.utime(p, (old, old))  # any later write shows a new mtime
    return root


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("model") / "m")


@pytest.fixture
def small_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    # several shards per task and several tasks per file, so that they run on both workers
    monkeypatch.setattr(dask_shards, "JOB_BYTES", 200_000)


def _payload(bundle: Path) -> bytes:
    return base64.b64decode(json.loads(bundle.read_text())["dsseEnvelope"]["payload"])


@pytest.mark.usefixtures("small_jobs")
@pytest.mark.parametrize("algorithm", ["sha256", "blake2b"])
def test_shards_identical_to_threaded(scheduler: str, model: Path, algorithm: str) -> None:
    paths = manifest.list_files(model)
    _, _, jobs = dask_shards.shard_jobs(model, paths, shard_size=SHARD, follow_symlinks=False)
    assert len(jobs) > 4 and len({kept[0][0] for _, kept, _ in jobs}) > 1
    threaded = hashing.hash_shards(model, paths, shard_size=SHARD, algorithm=algorithm)
    seen: list[tuple[int, int]] = []
    on_dask = DaskEngine(scheduler=scheduler).hash_shards(
        model,
        paths,
        shard_size=SHARD,
        algorithm=algorithm,
        follow_symlinks=False,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert on_dask == threaded
    total = sum(d.size for d in threaded.values())
    assert seen[-1] == (total, total) and len(seen) == len(jobs)


def test_cli_sign_shards_and_blake2_with_dask(
    scheduler: str, model: Path, tmp_path: Path, cli: CLI
) -> None:
    key, _pub = generate(tmp_path / "key.pem", "ec-p256")
    signer = KeySigner(key)
    single = model / "weights.bin"
    cases: list[tuple[Path, list[str], dict[str, Any]]] = [
        (model, ["--shard-size", str(SHARD)], {"shard_size": SHARD}),
        (single, ["--shard-size", str(SHARD)], {"shard_size": SHARD}),
        (model, ["--hash", "blake2"], {"hash_type": "blake2"}),  # over files, streamed
    ]
    for i, (target, options, kwargs) in enumerate(cases):
        threaded, on_dask = tmp_path / f"t{i}.sig", tmp_path / f"d{i}.sig"
        signing.sign(target, signer, threaded, **kwargs)  # what `sign` does with threads
        r = cli(
            "sign", target, "--key", key, "--bundle", on_dask, *options,
            "--engine", "dask", "--scheduler", scheduler,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert _payload(on_dask) == _payload(threaded), options  # the same statement


def test_cli_refuses_what_dask_cannot_sign(model: Path, tmp_path: Path, cli: CLI) -> None:
    key, _pub = generate(tmp_path / "key.pem", "ec-p256")
    bundle = tmp_path / "b.sig"
    r = cli("sign", model / "weights.bin", "--key", key, "--bundle", bundle, "--engine", "dask")
    assert r.returncode == 2 and "--shard-size" in r.stderr
    r = cli("sign", model, "--key", key, "--bundle", bundle, "--hash", "blake3",
            "--shard-entries", "10")  # fmt: skip
    assert r.returncode == 2 and "--shard-entries applies to folders signed with sha256" in r.stderr
    assert not bundle.exists()


class ShardsDieOnce:
    """Kills the worker process that runs the first shard task, once."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __call__(self, ranges: list[Range], algorithm: str, follow: bool) -> Outcome:
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return hash_ranges(ranges, algorithm, follow)
        os._exit(1)


class ShardsAlwaysDie:
    def __call__(self, ranges: list[Range], algorithm: str, follow: bool) -> Outcome:
        os._exit(1)


class ShardsChangeSecond:
    """The second task to run rewrites bytes of its file in place (same size) before
    hashing: the first task may already have hashed the file as it was."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __call__(self, ranges: list[Range], algorithm: str, follow: bool) -> Outcome:
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            full, _size, _mtime, _ctime, start, _end = ranges[0]
            with open(full, "r+b") as f:
                f.seek(start)
                f.write(b"X" * 16)
        return hash_ranges(ranges, algorithm, follow)


class ShardsChangeAfter:
    """Hashes its shards, then appends to their file: only the client's last look sees it."""

    def __call__(self, ranges: list[Range], algorithm: str, follow: bool) -> Outcome:
        outcome = hash_ranges(ranges, algorithm, follow)
        with open(ranges[0][0], "ab") as f:
            f.write(b"late")
        return outcome


def _sign_shards(model: Path, bundle: Path, engine: DaskEngine, tmp_path: Path) -> None:
    key, _pub = generate(tmp_path / "key.pem", "ec-p256")
    signing.sign(model, KeySigner(key), bundle, shard_size=SHARD, shard_hasher=engine)


@pytest.mark.usefixtures("small_jobs")
def test_killed_worker_is_retried_for_shards(scheduler: str, model: Path, tmp_path: Path) -> None:
    paths = manifest.list_files(model)
    expected = hashing.hash_shards(model, paths, shard_size=SHARD)
    engine = DaskEngine(scheduler=scheduler, shard_task=ShardsDieOnce(tmp_path / "died"))
    got = engine.hash_shards(
        model, paths, shard_size=SHARD, algorithm="sha256", follow_symlinks=False, progress=None
    )
    assert got == expected
    assert (tmp_path / "died").exists()  # a worker really died


@pytest.mark.usefixtures("small_jobs")
def test_shard_workers_that_keep_dying_sign_nothing(
    scheduler: str, model: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "out" / "m.sig"
    bundle.parent.mkdir()
    engine = DaskEngine(scheduler=scheduler, shard_task=ShardsAlwaysDie())
    with pytest.raises(OperationalError) as info:
        _sign_shards(model, bundle, engine, tmp_path)
    assert "workers died" in info.value.message and "nothing was signed" in info.value.message
    assert list(bundle.parent.iterdir()) == []  # no bundle, no temporary file


@pytest.mark.parametrize("change", ["during", "after"])
def test_file_changed_while_its_shards_are_hashed_is_detected(
    scheduler: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    model = make_model(tmp_path / "m")
    task: ShardsChangeSecond | ShardsChangeAfter
    if change == "during":  # many tasks: a worker sees it
        monkeypatch.setattr(dask_shards, "JOB_BYTES", 200_000)
        task = ShardsChangeSecond(tmp_path / "first")
    else:  # one task (the whole model) changes its file once hashed: the client sees it
        paths = manifest.list_files(model)
        assert (
            len(dask_shards.shard_jobs(model, paths, shard_size=SHARD, follow_symlinks=False)[2])
            == 1
        )
        task = ShardsChangeAfter()
    bundle = tmp_path / "m.sig"
    with pytest.raises(OperationalError) as info:
        _sign_shards(model, bundle, DaskEngine(scheduler=scheduler, shard_task=task), tmp_path)
    assert "changed while it was being hashed" in info.value.message
    assert info.value.path is not None and info.value.path.startswith(str(model))
    assert not bundle.exists()
