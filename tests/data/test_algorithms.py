"""Datasets signed with ``sign --hash`` or ``--shard-size``: items read in the bundle's terms."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from ml_integrity.data import Journal, VerifiedDataset
from ml_integrity.data import prefetch as pf
from ml_integrity.data.reader import CHUNK_SIZE
from ml_integrity.errors import IntegrityError
from tests.conftest import CLI
from tests.data.conftest import make_model

OPTIONS = {
    "blake3": ["--hash", "blake3"],
    "blake2": ["--hash", "blake2"],
    "sha256-shards": ["--shard-size", "4096"],
    "blake2-shards": ["--shard-size", "4096", "--hash", "blake2"],
    "sharded-manifest": ["--shard-entries", "2"],  # SHA-256 files, listed in 2 shards
}
HASHING = {
    "blake3": "blake3 files",
    "blake2": "blake2b files",
    "sha256-shards": "sha256 shards of 4096 bytes",
    "blake2-shards": "blake2b shards of 4096 bytes",
    "sharded-manifest": "sha256 files",
}
SIZES = {"a.bin": 10_000, "b.bin": 4096, "c.bin": 100, "d/big.bin": CHUNK_SIZE + 5000}


@pytest.fixture(params=sorted(OPTIONS))
def signed_as(
    request: pytest.FixtureRequest, tmp_path: Path, cli: CLI
) -> tuple[str, Path, Path, Path, Path]:
    name = request.param
    root = tmp_path / "data"
    for rel, size in SIZES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(os.urandom(size))
    key = tmp_path / "key.pem"
    assert cli("keygen", "--out", key).returncode == 0
    bundle = tmp_path / "data.sig"
    r = cli("sign", root, "--key", key, "--bundle", bundle, *OPTIONS[name])
    assert r.returncode == 0, r.stderr
    return name, root, bundle, key, Path(f"{key}.pub")


def test_items_verify_with_the_bundles_algorithm(
    signed_as: tuple[str, Path, Path, Path, Path],
) -> None:
    name, root, bundle, _key, pub = signed_as
    journal = Journal()
    ds = VerifiedDataset(root, bundle=bundle, key=pub, journal=journal, readahead=0)
    assert ds.hashing == HASHING[name]
    assert sorted(ds.files) == sorted(SIZES)
    for rel in ds.files:
        content = (root / rel).read_bytes()
        assert ds.read_bytes(rel) == content
        with ds.open(rel) as f:
            assert b"".join(iter(lambda: f.read(7000), b"")) == content
    assert ds.verify_all() == len(SIZES)
    ((_, items),) = journal.items().items()
    for rel, (digest, reads) in items.items():  # the journal records SHA-256, always
        assert digest == hashlib.sha256((root / rel).read_bytes()).hexdigest() and reads == 2


@pytest.mark.parametrize("where", ["first", "last"])
def test_a_tampered_item_fails_closed(
    signed_as: tuple[str, Path, Path, Path, Path], where: str
) -> None:
    _name, root, bundle, _key, pub = signed_as
    ds = VerifiedDataset(root, bundle=bundle, key=pub, readahead=0)
    for rel in ("a.bin", "d/big.bin"):
        data = bytearray((root / rel).read_bytes())
        data[0 if where == "first" else -1] ^= 1  # same size: only the digests tell
        (root / rel).write_bytes(bytes(data))
        with pytest.raises(IntegrityError, match="tampered") as exc:
            ds.read_bytes(rel)
        assert exc.value.path == rel
        with ds.open(rel) as f, pytest.raises(IntegrityError, match="tampered"):
            while f.read(CHUNK_SIZE):
                pass
    with pytest.raises(IntegrityError) as all_exc:
        ds.verify_all()
    assert all_exc.value.diff.changed == ("a.bin", "d/big.bin")
    assert ds.read_bytes("c.bin") == (root / "c.bin").read_bytes()


@pytest.mark.skipif(not pf.available(), reason="read-ahead needs os.memfd_create")
def test_read_ahead_items_are_checked_in_the_bundles_terms(
    signed_as: tuple[str, Path, Path, Path, Path],
) -> None:
    _name, root, bundle, _key, pub = signed_as
    (root / "a.bin").write_bytes(os.urandom(10_000))
    ds = VerifiedDataset(root, bundle=bundle, key=pub, readahead=1, use_cache=False)
    order = ["c.bin", "b.bin", "a.bin"] * 11  # (shorter plans are not read ahead)
    ds.prefetch(order)
    assert ds._ahead is not None and ds._ahead.settle(len(order))
    for _ in range(11):
        assert ds.read_bytes("c.bin") == (root / "c.bin").read_bytes()
        assert ds.read_bytes("b.bin") == (root / "b.bin").read_bytes()
        with pytest.raises(IntegrityError, match="tampered"):
            ds.read_bytes("a.bin")
    assert ds._ahead.served == len(order)  # the helper read all; the caller refused a.bin
    ds.close()


def test_journal_of_a_blake3_dataset_verifies(tmp_path: Path, cli: CLI) -> None:
    root = tmp_path / "data"
    root.mkdir()
    for i in range(3):
        (root / f"{i}.bin").write_bytes(os.urandom(5000))
    key = tmp_path / "key.pem"
    assert cli("keygen", "--out", key).returncode == 0
    pub = Path(f"{key}.pub")
    bundle = tmp_path / "data.sig"
    assert cli("sign", root, "--key", key, "--bundle", bundle, "--hash", "blake3").returncode == 0
    journal = Journal()
    ds = VerifiedDataset(root, bundle=bundle, key=pub, journal=journal, split="train")
    for rel in ds.files:
        ds.read_bytes(rel)
    model = make_model(tmp_path)
    out = tmp_path / "run.journal"
    journal.seal(model=model, key=key, output=out)
    trust = ["--key", pub, "--model", model, "--dataset", root, "--dataset-bundle", bundle]
    r = cli("journal", "verify", out, *trust)
    assert r.returncode == 0, r.stderr
    (root / "1.bin").write_bytes(os.urandom(5000))
    assert cli("journal", "verify", out, *trust).returncode == 1
