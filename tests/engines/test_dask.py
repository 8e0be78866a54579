"""The Dask engine on a real LocalCluster of 2 worker processes (one per module).

Differential: the Dask engine's manifest must be the threaded engine's, byte
for byte (and the in-memory manifest's). A worker that dies is replaced and
its partition runs again; a partition that keeps killing workers fails the
run with a clear error and leaves no manifest; a file changed between the
listing and its hashing is detected.
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ml_integrity.core import manifest, streaming
from ml_integrity.engines import dask as dask_engine
from ml_integrity.engines.dask import DaskEngine, Outcome, Partition, hash_partition
from ml_integrity.engines.threads import ThreadEngine
from ml_integrity.errors import OperationalError
from ml_integrity.trust.keys import generate
from tests.conftest import CLI
from tests.engines.trees import make_tree

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    # a partition that kills its worker twice fails the run (the default is 3 retries)
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 1}),
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
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

    def __call__(self, root: str, part: Partition, follow: bool) -> Outcome:
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return hash_partition(root, part, follow)
        os._exit(1)


class AlwaysDie:
    def __call__(self, root: str, part: Partition, follow: bool) -> Outcome:
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

    def __call__(self, root: str, part: Partition, follow: bool) -> Outcome:
        with open(part[0][1], "ab") as f:
            f.write(b"changed")
        return hash_partition(root, part, follow)


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
