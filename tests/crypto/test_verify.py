"""verify PATH --decryption-key KEY: the plaintext's signature over an encrypted folder or file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import CLI
from tests.crypto.test_cli import make_folder


def snapshot(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if ".cache" not in p.parts}


@pytest.fixture
def signed(tmp_path: Path, cli: CLI) -> dict[str, Path]:
    keys = tmp_path / "keys"
    keys.mkdir()
    assert cli("keygen", "--out", keys / "signing.pem").returncode == 0
    assert cli("keygen", "--type", "x25519", "--out", keys / "me").returncode == 0
    assert cli("keygen", "--type", "x25519", "--out", keys / "other").returncode == 0
    model = make_folder(tmp_path)
    bundle = tmp_path / "model.sig"
    assert cli("sign", model, "--key", keys / "signing.pem", "--bundle", bundle).returncode == 0
    enc = tmp_path / "model.enc"
    assert cli("encrypt", model, "--recipient", keys / "me.pub", "-o", enc).returncode == 0
    return {"keys": keys, "model": model, "bundle": bundle, "enc": enc}


def verify(cli: CLI, s: dict[str, Path], target: Path, *extra: object) -> tuple[int, str]:
    r = cli("verify", target, "--bundle", s["bundle"], "--key", s["keys"] / "signing.pem.pub",
            *extra)  # fmt: skip
    return r.returncode, r.stdout + r.stderr


def test_encrypted_folder_verifies_without_plaintext_on_disk(
    tmp_path: Path, cli: CLI, signed: dict[str, Path]
) -> None:
    before = snapshot(tmp_path)
    code, out = verify(cli, signed, signed["enc"], "--decryption-key", signed["keys"] / "me")
    assert code == 0, out
    assert "OK: " in out and "(4 files" in out
    assert snapshot(tmp_path) == before


def test_without_the_key_the_ciphertext_does_not_match(cli: CLI, signed: dict[str, Path]) -> None:
    code, out = verify(cli, signed, signed["enc"])
    assert code == 1 and "changed: weights.safetensors" in out


def test_wrong_key_is_exit_1_naming_the_file(cli: CLI, signed: dict[str, Path]) -> None:
    code, out = verify(cli, signed, signed["enc"], "--decryption-key", signed["keys"] / "other")
    assert code == 1 and "not a recipient" in out
    assert str(signed["enc"]) in out


def test_tampered_ciphertext_is_exit_1(cli: CLI, signed: dict[str, Path]) -> None:
    target = signed["enc"] / "config.json"
    data = bytearray(target.read_bytes())
    data[-20] ^= 1
    target.write_bytes(bytes(data))
    code, out = verify(cli, signed, signed["enc"], "--decryption-key", signed["keys"] / "me")
    assert code == 1 and f"{target}: final frame failed authentication" in out


def test_swapped_encrypted_files_fail_the_manifest(cli: CLI, signed: dict[str, Path]) -> None:
    """Both files decrypt, but each holds the other's plaintext: the signed digests catch it."""
    a, b = signed["enc"] / "config.json", signed["enc"] / "tokenizer" / "vocab.txt"
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)
    code, out = verify(cli, signed, signed["enc"], "--decryption-key", signed["keys"] / "me")
    assert code == 1 and "changed: config.json" in out and "changed: tokenizer/vocab.txt" in out


def test_a_plaintext_file_in_an_encrypted_folder_is_refused(
    cli: CLI, signed: dict[str, Path]
) -> None:
    (signed["enc"] / "config.json").write_bytes((signed["model"] / "config.json").read_bytes())
    code, out = verify(cli, signed, signed["enc"], "--decryption-key", signed["keys"] / "me")
    assert code == 1 and "not an ml-integrity encrypted file" in out


def test_single_file_and_a_bundle_encrypted_with_the_folder(
    tmp_path: Path, cli: CLI, signed: dict[str, Path]
) -> None:
    keys = signed["keys"]
    weights = signed["model"] / "weights.safetensors"
    single = tmp_path / "w.sig"
    assert cli("sign", weights, "--key", keys / "signing.pem", "--bundle", single).returncode == 0
    enc = tmp_path / "w.enc"
    assert cli("encrypt", weights, "--recipient", keys / "me.pub", "-o", enc).returncode == 0
    r = cli("verify", enc, "--bundle", single, "--key", keys / "signing.pem.pub",
            "--decryption-key", keys / "me")  # fmt: skip
    assert r.returncode == 0, r.stderr
    # a bundle signed into the folder is encrypted along with it, and read back in memory
    model = signed["model"]
    inner = model / "model.sig"
    assert cli("sign", model, "--key", keys / "signing.pem", "--bundle", inner).returncode == 0
    enc2 = tmp_path / "model2.enc"
    assert cli("encrypt", model, "--recipient", keys / "me.pub", "-o", enc2).returncode == 0
    r = cli("verify", enc2, "--bundle", enc2 / "model.sig", "--key", keys / "signing.pem.pub",
            "--decryption-key", keys / "me")  # fmt: skip
    assert r.returncode == 0, r.stderr


def test_decryption_key_with_git_repo_is_a_usage_error(cli: CLI, signed: dict[str, Path]) -> None:
    r = cli("verify", "--git-repo", "--decryption-key", signed["keys"] / "me")
    assert r.returncode == 2 and "ml-integrity.decryptionKey" in r.stderr
