"""VerifiedDataset end to end with real files, bundles and the stat cache."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ml_integrity.data import Journal, VerifiedDataset
from ml_integrity.data.reader import CHUNK_SIZE
from ml_integrity.errors import IntegrityError, PolicyError, SignatureError, UsageError
from tests.data.conftest import Signed, make_dataset, make_key, sign


def open_ds(s: Signed, **kwargs: object) -> VerifiedDataset:
    return VerifiedDataset(s.root, bundle=s.bundle, key=s.pub, **kwargs)  # type: ignore[arg-type]


def test_reads_signed_items_and_journals_them(signed: Signed) -> None:
    journal = Journal()
    ds = open_ds(signed, journal=journal, split="train")
    assert ds.files == [*(f"images/{i:03d}.bin" for i in range(5)), "labels.csv"]
    for path in ds.files:
        assert ds.read_bytes(path) == (signed.root / path).read_bytes()
    with ds.open("labels.csv") as f:
        assert f.read() == (signed.root / "labels.csv").read_bytes()
    ((info, items),) = journal.items().items()
    assert info.split == "train" and info.files == 6 and info.name == "dataset"
    assert items["labels.csv"][1] == 2 and items["images/000.bin"][1] == 1
    assert "key" in info.method


def test_second_epoch_is_served_from_the_stat_cache(
    signed: Signed, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib
    import time

    time.sleep(0.2)  # past the racy window of the files just written
    ds = open_ds(signed)
    assert ds._cache is not None
    for path in ds.files:  # epoch 1: hashed, recorded
        ds.read_bytes(path)
    hits = ds._cache.hits
    calls: list[int] = []
    original = hashlib.sha256

    def counting(*args: bytes) -> object:
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(hashlib, "sha256", counting)
    for path in ds.files:  # epoch 2: no hashing at all
        assert ds.read_bytes(path) == (signed.root / path).read_bytes()
    with ds.open("images/001.bin") as f:
        assert f.read() == (signed.root / "images/001.bin").read_bytes()
    assert not calls
    assert ds._cache.hits == hits  # served from what this process verified
    ds.close()  # saved: another process (a new dataset object) starts warm
    from ml_integrity.core import hashing as core_hashing

    assert len(core_hashing.StatCache.load(ds._cache.path)) == 6
    again = open_ds(signed)
    calls.clear()  # verifying the bundle hashes it
    again.read_bytes("labels.csv")
    assert not calls
    assert again._cache is not None and again._cache.hits == 1
    # a rewritten item has another stat key: hashed again, and refused
    labels = signed.root / "labels.csv"
    labels.write_text(labels.read_text().replace("0,0", "0,1"))  # same size
    with pytest.raises(IntegrityError, match="tampered"):
        again.read_bytes("labels.csv")
    assert calls
    uncached = open_ds(signed, use_cache=False)
    calls.clear()
    uncached.read_bytes("images/000.bin")
    assert calls


def test_bundle_for_another_folder(tmp_path: Path, signed: Signed) -> None:
    other = make_dataset(tmp_path, "other", files=2)
    with pytest.raises(IntegrityError, match="signs another folder"):
        VerifiedDataset(other, bundle=signed.bundle, key=signed.pub)


def test_untrusted_key_and_tampered_bundle(tmp_path: Path, signed: Signed) -> None:
    _, other_pub = make_key(tmp_path, "other.pem")
    with pytest.raises(SignatureError):
        VerifiedDataset(signed.root, bundle=signed.bundle, key=other_pub)
    with pytest.raises(UsageError, match="no trust material"):
        VerifiedDataset(signed.root, bundle=signed.bundle)
    broken = tmp_path / "broken.sig"
    broken.write_text(signed.bundle.read_text().replace('"sig": "', '"sig": "AAAA'))
    with pytest.raises(IntegrityError):
        VerifiedDataset(signed.root, bundle=broken, key=signed.pub)


def test_tampered_item_mid_read_never_yields_the_last_chunk(
    tmp_path: Path, key: tuple[Path, Path]
) -> None:
    root = tmp_path / "big"
    root.mkdir()
    size = 3 * CHUNK_SIZE + 123
    (root / "shard.bin").write_bytes(os.urandom(size))
    bundle = sign(root, key[0], tmp_path / "big.sig")
    ds = VerifiedDataset(root, bundle=bundle, key=key[1])
    with ds.open("shard.bin") as f:
        got = b"".join(iter(lambda: f.read(CHUNK_SIZE), b""))
    assert len(got) == size
    for offset in (0, size // 2, size - 1):
        data = bytearray((root / "shard.bin").read_bytes())
        data[offset] ^= 1
        (root / "shard.bin").write_bytes(bytes(data))
        delivered = 0
        f = ds.open("shard.bin")
        with pytest.raises(IntegrityError, match="tampered") as exc:
            while chunk := f.read(CHUNK_SIZE):
                delivered += len(chunk)
        assert exc.value.path == "shard.bin"
        assert delivered <= 3 * CHUNK_SIZE  # the last chunk (123 bytes) was withheld
        with pytest.raises(IntegrityError):
            f.read(1)  # and stays refused
        f.close()
        data[offset] ^= 1
        (root / "shard.bin").write_bytes(bytes(data))


def test_small_tampered_item_gives_no_byte(signed: Signed) -> None:
    ds = open_ds(signed)
    (signed.root / "images" / "002.bin").write_bytes(b"x" * 2000)
    with pytest.raises(IntegrityError, match="tampered") as exc:
        ds.read_bytes("images/002.bin")
    assert exc.value.path == "images/002.bin"
    with ds.open("images/002.bin") as f, pytest.raises(IntegrityError):
        f.read(1)
    (signed.root / "labels.csv").write_bytes((signed.root / "labels.csv").read_bytes() + b"9")
    with pytest.raises(IntegrityError):
        ds.read_bytes("labels.csv")
    with ds.open("labels.csv") as f, pytest.raises(IntegrityError):
        f.read()


def test_deleted_item(signed: Signed) -> None:
    ds = open_ds(signed)
    (signed.root / "images" / "004.bin").unlink()
    with pytest.raises(IntegrityError, match="missing") as exc:
        ds.read_bytes("images/004.bin")
    assert exc.value.path == "images/004.bin"
    with pytest.raises(IntegrityError, match="1 missing of 6") as at_open:
        open_ds(signed)
    assert "missing: images/004.bin" in at_open.value.diagnostics()


def test_unsigned_symlink_and_escaping_paths(signed: Signed, tmp_path: Path) -> None:
    ds = open_ds(signed)
    (signed.root / "extra.bin").write_bytes(b"new")
    with pytest.raises(IntegrityError, match="not signed"):
        ds.read_bytes("extra.bin")
    with pytest.raises(IntegrityError):
        ds.read_bytes("../dataset.sig")
    target = signed.root / "images" / "000.bin"
    keep = tmp_path / "keep.bin"
    shutil.copy(target, keep)
    target.unlink()
    target.symlink_to(keep)
    with pytest.raises(IntegrityError, match="symbolic link"):
        ds.read_bytes("images/000.bin")
    assert ds.read_bytes(Path("images") / "001.bin")
    assert ds.read_bytes(signed.root.absolute() / "labels.csv")


def test_policy_denies_by_path_digest_and_signer(signed: Signed, tmp_path: Path) -> None:
    import hashlib

    digest = hashlib.sha256((signed.root / "images" / "001.bin").read_bytes()).hexdigest()
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"version: 1\nsigners:\n  data:\n    key: {signed.pub}\n"
        f"deny:\n  digests: [{digest}]\n  paths: ['images/003.bin']\n"
    )
    ds = VerifiedDataset(signed.root, bundle=signed.bundle, policy=policy)
    assert "images/001.bin" not in ds.files and "images/003.bin" not in ds.files
    assert ds.denied == {
        "images/001.bin": "denied digest",
        "images/003.bin": "denied path images/003.bin",
    }
    with pytest.raises(PolicyError, match="denied path"):
        ds.read_bytes("images/003.bin")
    with pytest.raises(PolicyError, match="denied digest"):
        ds.open("images/001.bin")
    assert ds.read_bytes("images/000.bin")
    denied_signer = tmp_path / "deny-signer.yaml"
    denied_signer.write_text(
        f"version: 1\nsigners:\n  data:\n    key: {signed.pub}\n"
        f"deny:\n  signers:\n    - key: {signed.pub}\n"
    )
    with pytest.raises(PolicyError, match="denied"):
        VerifiedDataset(signed.root, bundle=signed.bundle, policy=denied_signer)


def test_allowed_unsigned_digest(signed: Signed, tmp_path: Path) -> None:
    import hashlib

    (signed.root / "reviewed.txt").write_text("reviewed upstream file\n")
    digest = hashlib.sha256(b"reviewed upstream file\n").hexdigest()
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"version: 1\nsigners:\n  data:\n    key: {signed.pub}\nallow:\n  digests: [{digest}]\n"
    )
    ds = VerifiedDataset(signed.root, bundle=signed.bundle, policy=policy)
    assert ds.read_bytes("reviewed.txt") == b"reviewed upstream file\n"
    (signed.root / "reviewed.txt").write_text("changed\n")
    with pytest.raises(IntegrityError):
        ds.read_bytes("reviewed.txt")


def test_verify_all(signed: Signed) -> None:
    ds = open_ds(signed)
    assert ds.verify_all(workers=2) == 6
    (signed.root / "images" / "003.bin").write_bytes(b"evil")
    (signed.root / "images" / "004.bin").unlink()
    with pytest.raises(IntegrityError) as exc:
        ds.verify_all()
    text = exc.value.diagnostics()
    assert "changed: images/003.bin" in text and "missing: images/004.bin" in text


def test_arguments(signed: Signed) -> None:
    with pytest.raises(UsageError, match="split"):
        open_ds(signed, split="holdout")
    with pytest.raises(UsageError, match="decryption key bytes are neither"):
        open_ds(signed, decryption_key=b"k" * 31).read_bytes("labels.csv")
    with pytest.raises(UsageError, match="not a folder"):
        VerifiedDataset(signed.root / "labels.csv", bundle=signed.bundle, key=signed.pub)
    with pytest.raises(UsageError, match="either policy"):
        open_ds(signed, policy=signed.pub)


def test_light_import() -> None:
    import subprocess
    import sys

    code = (
        "import sys, ml_integrity.data, ml_integrity.data.adapters;"
        "heavy = [m for m in ('cryptography', 'sigstore', 'yaml', 'torch', 'numpy') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
