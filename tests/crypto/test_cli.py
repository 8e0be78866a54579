"""keygen --type x25519|aes256, encrypt, decrypt and the key-file cases, through the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ml_integrity.cli.main import main
from ml_integrity.crypto import providers, stream
from ml_integrity.crypto.providers import AesKey, EncryptedDataKey, KeyProvider
from tests.conftest import CLI
from tests.crypto.support import FRAME, plaintext


def make_folder(root: Path) -> Path:
    model = root / "model"
    (model / "tokenizer").mkdir(parents=True)
    (model / "weights.safetensors").write_bytes(plaintext(3 * FRAME + 11))
    (model / "config.json").write_text('{"hidden": 8}')
    (model / "tokenizer" / "vocab.txt").write_text("a\nb\n")
    (model / "empty").write_bytes(b"")
    return model


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture
def keys(tmp_path: Path, cli: CLI) -> Path:
    d = tmp_path / "keys"
    d.mkdir()
    assert cli("keygen", "--type", "x25519", "--out", d / "me").returncode == 0
    assert cli("keygen", "--type", "aes256", "--out", d / "team.aes").returncode == 0
    assert cli("keygen", "--out", d / "signing.pem").returncode == 0
    assert cli("keygen", "--type", "ed25519", "--out", d / "ed.pem").returncode == 0
    return d


def test_keygen_writes_private_keys_0600(keys: Path, cli: CLI) -> None:
    assert (keys / "me").stat().st_mode & 0o777 == 0o600
    assert (keys / "team.aes").stat().st_mode & 0o777 == 0o600
    assert (keys / "me").read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert (keys / "me.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert (keys / "team.aes").read_text().startswith("-----BEGIN ML-INTEGRITY AES-256 KEY-----")
    assert not (keys / "team.aes.pub").exists()
    r = cli("keygen", "--type", "x25519", "--out", keys / "me")
    assert r.returncode == 2 and "already exists" in r.stderr
    r = cli("keygen", "--type", "aes256", "--out", keys / "k2", "--json")
    doc = json.loads(r.stdout)
    assert doc["ok"] and doc["type"] == "aes256" and doc["key_id"].startswith("AES-256 key aes256-")


def test_openssl_reads_the_x25519_keys(keys: Path) -> None:
    """The key files are standard PKCS#8 / SPKI: OpenSSL agrees on the public key."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    derived = subprocess.run(
        ["openssl", "pkey", "-in", str(keys / "me"), "-pubout"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert derived == (keys / "me.pub").read_text()


def test_folder_round_trip_same_layout(tmp_path: Path, keys: Path, cli: CLI) -> None:
    model = make_folder(tmp_path)
    enc = tmp_path / "model.enc"
    r = cli("encrypt", model, "--recipient", keys / "me.pub", "--recipient", keys / "team.aes",
            "--output", enc, "--frame-size", FRAME)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert sorted(tree(enc)) == sorted(tree(model))
    for rel, data in tree(enc).items():
        assert data.startswith(b"\x02\x04\x78"), rel
        if len(tree(model)[rel]) >= 8:
            assert tree(model)[rel] not in data
    for key in ("me", "team.aes"):
        out = tmp_path / f"plain-{key}"
        r = cli("decrypt", enc, "--key", keys / key, "--output", out)
        assert r.returncode == 0, r.stderr
        assert tree(out) == tree(model)


def test_file_round_trip_and_json(tmp_path: Path, keys: Path, cli: CLI) -> None:
    src = tmp_path / "w.bin"
    src.write_bytes(os.urandom(100_000))
    r = cli("encrypt", src, "--recipient", keys / "me.pub", "-o", tmp_path / "w.enc", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["files"] == ["."]
    r = cli("decrypt", tmp_path / "w.enc", "--key", keys / "me", "-o", tmp_path / "w.out")
    assert r.returncode == 0 and (tmp_path / "w.out").read_bytes() == src.read_bytes()
    r = cli("decrypt", tmp_path / "w.enc", "--key", keys / "me", "-o", tmp_path / "w.out")
    assert r.returncode == 2 and "already exists" in r.stderr
    r = cli(
        "decrypt", tmp_path / "w.enc", "--key", keys / "me", "-o", tmp_path / "w.out", "--force"
    )
    assert r.returncode == 0


@pytest.mark.parametrize(
    ("option", "key", "message"),
    [
        ("--recipient", "me", "recipient key is a private key"),
        ("--recipient", "signing.pem.pub", "recipient key is an EC secp256r1 key (a signing key)"),
        ("--recipient", "ed.pem.pub", "recipient key is an Ed25519 key (a signing key)"),
        ("--recipient", "signing.pem", "recipient key is a private key"),
        ("--recipient", "missing.pub", "recipient key not found"),
        ("--key", "me.pub", "decryption key is a public key"),
        ("--key", "signing.pem", "decryption key is an EC secp256r1 key (a signing key)"),
        ("--key", "ed.pem.pub", "decryption key is a public key"),
        ("--key", "vocab", "decryption key is not a key file"),
    ],
)
def test_wrong_kind_of_key_is_a_usage_error(
    tmp_path: Path, keys: Path, option: str, key: str, message: str
) -> None:
    (keys / "vocab").write_text("not a key\n")
    model = make_folder(tmp_path)
    enc = tmp_path / "model.enc"
    assert main(["encrypt", str(model), "--recipient", str(keys / "me.pub"), "-o", str(enc)]) == 0
    out = tmp_path / "out"
    if option == "--recipient":
        argv = ["encrypt", str(model), "--recipient", str(keys / key), "-o", str(out)]
    else:
        argv = ["decrypt", str(enc), "--key", str(keys / key), "-o", str(out)]
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(argv) == 2
    assert f"{keys / key}: {message}" in err.getvalue()
    assert "hint:" in err.getvalue()
    assert not out.exists()


def test_malformed_aes_key_file(tmp_path: Path, keys: Path, cli: CLI) -> None:
    bad = keys / "bad.aes"
    bad.write_text(
        "-----BEGIN ML-INTEGRITY AES-256 KEY-----\nAAAA\n-----END ML-INTEGRITY AES-256 KEY-----\n"
    )
    r = cli("encrypt", keys / "me.pub", "--recipient", bad, "-o", tmp_path / "x")
    assert r.returncode == 2 and "malformed AES-256 key file" in r.stderr


def test_not_a_recipient_is_exit_1(tmp_path: Path, keys: Path, cli: CLI) -> None:
    model = make_folder(tmp_path)
    enc = tmp_path / "model.enc"
    assert cli("encrypt", model, "--recipient", keys / "me.pub", "-o", enc).returncode == 0
    assert cli("keygen", "--type", "x25519", "--out", keys / "other").returncode == 0
    r = cli("decrypt", enc, "--key", keys / "other", "-o", tmp_path / "out")
    assert r.returncode == 1
    assert "not a recipient" in r.stderr and "ask whoever encrypted it" in r.stderr
    r = cli("decrypt", enc, "--key", keys / "team.aes", "-o", tmp_path / "out")
    assert r.returncode == 1 and "not a recipient" in r.stderr
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys", "model", "model.enc"]


def test_usage_errors(tmp_path: Path, keys: Path, cli: CLI) -> None:
    model = make_folder(tmp_path)
    r = cli("encrypt", model, "-o", tmp_path / "x")
    assert r.returncode == 2 and "--recipient" in r.stderr
    r = cli("encrypt", model, "--recipient", keys / "me.pub", "-o", tmp_path / "x",
            "--frame-size", "4096")  # fmt: skip
    assert r.returncode == 2 and "--frame-size" in r.stderr
    r = cli("encrypt", model, "--recipient", keys / "me.pub", "-o", model / "inside")
    assert r.returncode == 2 and "outside the input" in r.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    r = cli("encrypt", model, "--recipient", keys / "me.pub", "-o", tmp_path / "full")
    assert r.returncode == 2 and "not empty" in r.stderr
    r = cli("decrypt", tmp_path / "nothing", "--key", keys / "me", "-o", tmp_path / "y")
    assert r.returncode == 2 and "no such file" in r.stderr


def test_symlink_in_folder_is_refused(tmp_path: Path, keys: Path, cli: CLI) -> None:
    model = make_folder(tmp_path)
    (model / "link").symlink_to(model / "config.json")
    r = cli("encrypt", model, "--recipient", keys / "me.pub", "-o", tmp_path / "enc")
    assert r.returncode == 1 and "symbolic link" in r.stderr
    assert not (tmp_path / "enc").exists()


def test_interrupted_decryption_leaves_no_plaintext(
    tmp_path: Path, keys: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = make_folder(tmp_path)
    enc = tmp_path / "model.enc"
    assert main(["encrypt", str(model), "--recipient", str(keys / "me.pub"), "-o", str(enc)]) == 0
    real = stream._Frames.next_frame
    calls = {"n": 0}

    def interrupted(self: stream._Frames) -> memoryview | None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(stream._Frames, "next_frame", interrupted)
    out = tmp_path / "plain"
    assert main(["decrypt", str(enc), "--key", str(keys / "me"), "-o", str(out)]) == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys", "model", "model.enc"]


class FakeKms:
    """A stand-in for a cloud KMS plug-in: the KeyProvider protocol over a local AES key."""

    def __init__(self, ref: str) -> None:
        self.ref = ref
        self._inner = AesKey(b"K" * 32, "inner")

    def describe(self) -> str:
        return f"fakekms key {self.ref}"

    def wrap(self, data_key: bytes, context: bytes) -> EncryptedDataKey:
        inner = self._inner.wrap(data_key, context)
        return EncryptedDataKey(
            "fakekms", self.ref.encode(), inner.provider_info + inner.ciphertext
        )

    def unwrap(self, edk: EncryptedDataKey, context: bytes) -> bytes | None:
        if edk.provider_id != "fakekms" or edk.provider_info != self.ref.encode():
            return None
        n = len(edk.ciphertext) - 48
        inner = EncryptedDataKey("ml-integrity", edk.ciphertext[:n], edk.ciphertext[n:])
        return self._inner.unwrap(inner, context)


def test_a_kms_plugin_is_reached_through_scheme_ref(tmp_path: Path) -> None:
    providers.register("fakekms", FakeKms)
    try:
        assert isinstance(FakeKms("x"), KeyProvider)
        src = tmp_path / "w.bin"
        src.write_bytes(b"weights" * 100)
        enc, out = tmp_path / "w.enc", tmp_path / "w.out"
        assert (
            main(["encrypt", str(src), "--recipient", "fakekms:alias/models", "-o", str(enc)]) == 0
        )
        assert main(["decrypt", str(enc), "--key", "fakekms:alias/other", "-o", str(out)]) == 1
        assert main(["decrypt", str(enc), "--key", "fakekms:alias/models", "-o", str(out)]) == 0
        assert out.read_bytes() == src.read_bytes()
    finally:
        providers._registered.pop("fakekms")
