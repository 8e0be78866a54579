"""VerifiedDataset(..., decryption_key=KEY): encrypted items decrypted as streams, checked
against the signed plaintext digests, never written to disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ml_integrity.crypto import keys as crypto_keys
from ml_integrity.crypto import open_decrypted, tree
from ml_integrity.data import Journal, VerifiedDataset
from ml_integrity.errors import IntegrityError, UsageError
from tests.crypto.support import KeySet, make_keys
from tests.data.conftest import make_dataset, make_key, sign


class Encrypted:
    def __init__(self, tmp_path: Path) -> None:
        self.plain = make_dataset(tmp_path, files=4)
        (self.plain / "big.bin").write_bytes(os.urandom(2_500_000))  # several reader chunks
        self.signing_key, self.pub = make_key(tmp_path)
        self.bundle = sign(self.plain, self.signing_key, tmp_path / "dataset.sig")
        self.keys: KeySet = make_keys(tmp_path / "enc-keys")
        self.root = tmp_path / "dataset.enc"
        tree.encrypt_path(self.plain, self.root, self.keys.recipients())

    def open(self, key: object, **kwargs: object) -> VerifiedDataset:
        return VerifiedDataset(
            self.root,
            bundle=self.bundle,
            key=self.pub,
            decryption_key=key,
            **kwargs,  # type: ignore[arg-type]
        )


@pytest.fixture
def enc(tmp_path: Path) -> Encrypted:
    return Encrypted(tmp_path)


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("form", ["path", "str", "pem bytes", "provider", "aes raw", "list"])
def test_encrypted_items_read_transparently(enc: Encrypted, tmp_path: Path, form: str) -> None:
    key: object = {
        "path": enc.keys.private,
        "str": str(enc.keys.aes),
        "pem bytes": enc.keys.private.read_bytes(),
        "provider": enc.keys.identity(),
        "aes raw": None,
        "list": [make_keys(tmp_path / "other", "other").private, enc.keys.private],
    }[form]
    if form == "aes raw":
        import base64

        body = enc.keys.aes.read_text().splitlines()[1]
        key = base64.b64decode(body)
    before = files_under(tmp_path)
    journal = Journal()
    ds = enc.open(key, journal=journal)
    for rel in ds.files:
        assert ds.read_bytes(rel) == (enc.plain / rel).read_bytes()
    with ds.open("big.bin") as f:
        assert f.read() == (enc.plain / "big.bin").read_bytes()
    assert ds.verify_all() == len(ds.files)
    ds.close()
    ((_info, items),) = journal.items().items()
    assert "big.bin" in items
    new = {p for p in files_under(tmp_path) - before if ".cache" not in p.parts}
    assert not new, new  # no plaintext (nor anything else) written


def test_tampered_ciphertext_is_refused(enc: Encrypted) -> None:
    target = enc.root / "big.bin"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 1
    target.write_bytes(bytes(data))
    ds = enc.open(enc.keys.private)
    with pytest.raises(IntegrityError, match="failed authentication"):
        ds.read_bytes("big.bin")
    with pytest.raises(IntegrityError), ds.open("big.bin") as f:
        while f.read(1 << 20):
            pass
    assert ds.read_bytes("labels.csv") == (enc.plain / "labels.csv").read_bytes()


def test_swapped_ciphertexts_fail_the_signed_digest(enc: Encrypted) -> None:
    a, b = enc.root / "images" / "000.bin", enc.root / "images" / "001.bin"
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)
    ds = enc.open(enc.keys.private)
    with pytest.raises(IntegrityError, match=r"tampered|differs|signed"):
        ds.read_bytes("images/000.bin")


def test_truncated_item_never_yields_its_end(enc: Encrypted) -> None:
    target = enc.root / "big.bin"
    target.write_bytes(target.read_bytes()[:-200])
    ds = enc.open(enc.keys.private)
    got = bytearray()
    with pytest.raises(IntegrityError), ds.open("big.bin") as f:
        while chunk := f.read(1 << 16):
            got += chunk
    assert len(got) < 2_500_000


def test_wrong_key_and_wrong_key_kinds(enc: Encrypted, tmp_path: Path) -> None:
    other = make_keys(tmp_path / "other", "other")
    with pytest.raises(IntegrityError, match="not a recipient"):
        enc.open(other.private).read_bytes("labels.csv")
    with pytest.raises(UsageError, match="is a public key"):
        enc.open(enc.keys.public).read_bytes("labels.csv")
    with pytest.raises(UsageError, match="neither a key file nor a 32-byte"):
        enc.open(b"short").read_bytes("labels.csv")
    with pytest.raises(UsageError, match="of type int is not a key"):
        enc.open(42).read_bytes("labels.csv")


def test_plaintext_items_are_refused_under_a_decryption_key(enc: Encrypted) -> None:
    ds = VerifiedDataset(enc.plain, bundle=enc.bundle, key=enc.pub, decryption_key=enc.keys.private)
    with pytest.raises(IntegrityError, match="not an ml-integrity encrypted file"):
        ds.read_bytes("labels.csv")


def test_open_decrypted_finish_refuses_a_partial_read(enc: Encrypted) -> None:
    reader = open_decrypted(enc.root / "big.bin", enc.keys.private)
    reader.read(10)
    with pytest.raises(IntegrityError, match="not read to its final frame"):
        reader.finish()
    while reader.read(1 << 20):
        pass
    reader.finish()
    reader.close()


def test_key_files_are_read_once(enc: Encrypted, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    real = crypto_keys.load_decryption_key

    def counting(spec: str | Path) -> object:
        calls.append(spec)
        return real(spec)

    monkeypatch.setattr(crypto_keys, "load_decryption_key", counting)
    crypto_keys._resolved.clear()
    ds = enc.open(str(enc.keys.private))
    for rel in ds.files:
        ds.read_bytes(rel)
    assert len(calls) == 1
