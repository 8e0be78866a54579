"""Key-based signing and verification through the real command line."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ml_integrity.cli.main import build_parser
from tests.conftest import CLI
from tests.support.privileges import unprivileged_prefix


def make_model(root: Path) -> Path:
    model = root / "model"
    (model / "tokenizer").mkdir(parents=True)
    (model / "weights.safetensors").write_bytes(os.urandom(300_000))
    (model / "config.json").write_text('{"hidden": 8}')
    (model / "tokenizer" / "vocab.txt").write_text("a\nb\n")
    return model


@pytest.fixture
def signed(tmp_path: Path, cli: CLI) -> tuple[Path, Path, Path]:
    model = make_model(tmp_path)
    key = tmp_path / "key.pem"
    assert cli("keygen", "--out", key).returncode == 0
    bundle = tmp_path / "model.sig"
    r = cli("sign", model, "--key", key, "--bundle", bundle)
    assert r.returncode == 0, r.stderr
    return model, bundle, tmp_path / "key.pem.pub"


def test_every_subcommand_has_help(cli: CLI) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    names = sorted(sub.choices)  # type: ignore[arg-type]
    assert {"keygen", "manifest", "sign", "verify"} <= set(names)
    for name in names:
        r = cli(name, "--help")
        assert r.returncode == 0
        assert "usage: ml-integrity " + name in r.stdout
    top = cli("--help")
    assert "exit codes" in top.stdout
    v = cli("--version")
    assert v.returncode == 0 and v.stdout.startswith("ml-integrity ")


def test_console_script_and_module_are_the_same(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "ml-integrity"
    r = subprocess.run([exe, "--version"], capture_output=True, text=True)
    m = subprocess.run(
        [sys.executable, "-m", "ml_integrity", "--version"], capture_output=True, text=True
    )
    assert r.stdout == m.stdout and r.returncode == m.returncode == 0


def test_keygen_modes_and_refuses_overwrite(tmp_path: Path, cli: CLI) -> None:
    for kind in ("ec-p256", "ec-p384", "ed25519"):
        key = tmp_path / f"{kind}.pem"
        r = cli("keygen", "--out", key, "--type", kind, "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["type"] == kind
        assert key.stat().st_mode & 0o777 == 0o600
        assert b"PUBLIC KEY" in (tmp_path / f"{kind}.pem.pub").read_bytes()
    again = cli("keygen", "--out", tmp_path / "ec-p256.pem")
    assert again.returncode == 2
    assert "--force" in again.stderr


def test_sign_verify_round_trip_and_json(signed: tuple[Path, Path, Path], cli: CLI) -> None:
    model, bundle, pub = signed
    r = cli("verify", model, "--bundle", bundle, "--key", pub, "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["ok"] is True and report["files"] == 3
    assert report["signer"].startswith("EC P-256 key")
    # --key is a command-line policy, and the verdict names it
    assert report["policy"] == {"kind": "command line", "path": None, "revision": None}
    assert report["requirement"]["mode"] == "any-of"
    human = cli("verify", model, "--bundle", bundle, "--key", pub)
    assert human.returncode == 0, human.stderr
    assert human.stdout.splitlines()[1:] == ["policy: command-line options"]


@pytest.mark.parametrize("kind", ["ec-p384", "ed25519"])
def test_other_key_types_round_trip(tmp_path: Path, cli: CLI, kind: str) -> None:
    model = make_model(tmp_path)
    key = tmp_path / "k.pem"
    cli("keygen", "--out", key, "--type", kind)
    assert cli("sign", model, "--key", key, "--bundle", tmp_path / "b.sig").returncode == 0
    ok = cli("verify", model, "--bundle", tmp_path / "b.sig", "--key", f"{key}.pub")
    assert ok.returncode == 0, ok.stderr
    (model / "config.json").write_text('{"hidden": 9}')
    bad = cli("verify", model, "--bundle", tmp_path / "b.sig", "--key", f"{key}.pub")
    assert bad.returncode == 1
    assert "changed: config.json" in bad.stderr


def test_one_flipped_byte_names_the_file(signed: tuple[Path, Path, Path], cli: CLI) -> None:
    model, bundle, pub = signed
    w = model / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[1000] ^= 0x01
    w.write_bytes(bytes(data))
    r = cli("verify", model, "--bundle", bundle, "--key", pub, "--json")
    assert r.returncode == 1
    report = json.loads(r.stdout)
    assert report["diff"]["changed"] == ["weights.safetensors"]
    assert "changed: weights.safetensors" in r.stderr
    assert report["hint"].endswith("policy: command-line options")


def test_missing_and_extra_files(signed: tuple[Path, Path, Path], cli: CLI) -> None:
    model, bundle, pub = signed
    (model / "tokenizer" / "vocab.txt").unlink()
    (model / "extra.bin").write_bytes(b"new")
    r = cli("verify", model, "--bundle", bundle, "--key", pub)
    assert r.returncode == 1
    assert "missing: tokenizer/vocab.txt" in r.stderr
    assert "extra: extra.bin" in r.stderr
    (model / "tokenizer" / "vocab.txt").write_text("a\nb\n")
    lenient = cli("verify", model, "--bundle", bundle, "--key", pub, "--ignore-unsigned-files")
    assert lenient.returncode == 0, lenient.stderr


def test_bundle_inside_the_model_is_left_out(tmp_path: Path, cli: CLI) -> None:
    model = make_model(tmp_path)
    cli("keygen", "--out", tmp_path / "k.pem")
    r = cli("sign", model, "--key", tmp_path / "k.pem", "--bundle", model / "model.sig")
    assert r.returncode == 0, r.stderr
    ok = cli("verify", model, "--bundle", model / "model.sig", "--key", tmp_path / "k.pem.pub")
    assert ok.returncode == 0, ok.stderr


def test_single_file_and_directory_mixups(tmp_path: Path, cli: CLI) -> None:
    model = make_model(tmp_path)
    cli("keygen", "--out", tmp_path / "k.pem")
    single = model / "weights.safetensors"
    sig = tmp_path / "w.sig"
    assert cli("sign", single, "--key", tmp_path / "k.pem", "--bundle", sig).returncode == 0
    assert cli("verify", single, "--bundle", sig, "--key", tmp_path / "k.pem.pub").returncode == 0
    r = cli("verify", model, "--bundle", sig, "--key", tmp_path / "k.pem.pub")
    assert r.returncode == 1
    assert "single file, but a folder was given" in r.stderr
    dsig = tmp_path / "d.sig"
    cli("sign", model, "--key", tmp_path / "k.pem", "--bundle", dsig)
    r = cli("verify", single, "--bundle", dsig, "--key", tmp_path / "k.pem.pub")
    assert r.returncode == 1
    assert "a single file was given" in r.stderr


def test_wrong_key_is_refused(signed: tuple[Path, Path, Path], tmp_path: Path, cli: CLI) -> None:
    model, bundle, _ = signed
    cli("keygen", "--out", tmp_path / "other.pem")
    r = cli("verify", model, "--bundle", bundle, "--key", tmp_path / "other.pem.pub")
    assert r.returncode == 1
    assert "signed by another key" in r.stderr
    assert "policy: command-line options" in r.stderr


def test_wrong_key_type_is_a_usage_error(
    signed: tuple[Path, Path, Path], tmp_path: Path, cli: CLI
) -> None:
    model, bundle, _ = signed
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    rsa_pub = tmp_path / "rsa.pub"
    rsa_pub.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    r = cli("verify", model, "--bundle", bundle, "--key", rsa_pub)
    assert r.returncode == 2
    assert "unsupported key type" in r.stderr and str(rsa_pub) in r.stderr
    # the private key where the public key belongs
    r = cli("verify", model, "--bundle", bundle, "--key", tmp_path / "key.pem")
    assert r.returncode == 2
    assert "private key" in r.stderr
    # an Ed25519 key against an EC-signed bundle: a different signer
    cli("keygen", "--out", tmp_path / "ed.pem", "--type", "ed25519")
    r = cli("verify", model, "--bundle", bundle, "--key", tmp_path / "ed.pem.pub")
    assert r.returncode == 1


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda b: b[: len(b) // 2], id="truncated"),
        pytest.param(lambda b: b"", id="empty"),
        pytest.param(lambda b: b"\x00\xff garbage", id="garbage"),
        pytest.param(lambda b: b.replace(b'"sig": "', b'"sig": "AAAA'), id="bad-signature"),
        pytest.param(lambda b: b.replace(b"v0.3+json", b"v9.9+json"), id="media-type"),
    ],
)
def test_corrupt_bundles_are_refused(signed: tuple[Path, Path, Path], cli: CLI, mutate) -> None:  # type: ignore[no-untyped-def]
    model, bundle, pub = signed
    bundle.write_bytes(mutate(bundle.read_bytes()))
    r = cli("verify", model, "--bundle", bundle, "--key", pub)
    assert r.returncode == 1
    assert str(bundle) in r.stderr
    assert "hint:" in r.stderr


def test_payload_swapped_under_a_valid_envelope_is_refused(
    signed: tuple[Path, Path, Path], cli: CLI
) -> None:
    model, bundle, pub = signed
    doc = json.loads(bundle.read_text())
    stmt = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    stmt["predicate"]["resources"][0]["digest"] = "0" * 64
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(stmt).encode()).decode()
    bundle.write_text(json.dumps(doc))
    r = cli("verify", model, "--bundle", bundle, "--key", pub)
    assert r.returncode == 1
    assert "signature does not verify" in r.stderr


def test_bundle_for_another_model(
    signed: tuple[Path, Path, Path], tmp_path: Path, cli: CLI
) -> None:
    _, bundle, pub = signed
    other = tmp_path / "other"
    other.mkdir()
    (other / "weights.safetensors").write_bytes(b"different model")
    r = cli("verify", other, "--bundle", bundle, "--key", pub)
    assert r.returncode == 1
    assert "changed: weights.safetensors" in r.stderr
    assert "missing: config.json" in r.stderr


def test_usage_errors(tmp_path: Path, cli: CLI) -> None:
    model = make_model(tmp_path)
    cli("keygen", "--out", tmp_path / "k.pem")
    no_trust = cli("verify", model, "--bundle", tmp_path / "x.sig")
    assert no_trust.returncode == 2 and "--key" in no_trust.stderr
    no_bundle = cli(
        "verify", model, "--bundle", tmp_path / "x.sig", "--key", tmp_path / "k.pem.pub"
    )
    assert no_bundle.returncode == 2 and "bundle not found" in no_bundle.stderr
    no_key = cli("sign", model, "--bundle", tmp_path / "x.sig")
    assert no_key.returncode == 2 and "keygen" in no_key.stderr
    key_dir = cli("sign", model, "--key", tmp_path, "--bundle", tmp_path / "x.sig")
    assert key_dir.returncode == 2 and "directory" in key_dir.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    r = cli("sign", empty, "--key", tmp_path / "k.pem", "--bundle", tmp_path / "e.sig")
    assert r.returncode == 2 and "no files" in r.stderr
    assert not (tmp_path / "e.sig").exists()
    missing = cli(
        "sign", tmp_path / "nope", "--key", tmp_path / "k.pem", "--bundle", tmp_path / "n.sig"
    )
    assert missing.returncode == 2
    bad_flag = cli("verify", "--bogus")
    assert bad_flag.returncode == 2


def test_unreadable_model_file(tmp_path_factory: pytest.TempPathFactory, cli: CLI) -> None:
    """An unreadable file is an operational error (exit 3) that names the file."""
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="mli-unreadable-"))
    try:
        os.chmod(base, 0o755)
        model = make_model(base)
        for p in [base, *base.rglob("*")]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        cli("keygen", "--out", base / "k.pem")
        os.chmod(base / "k.pem", 0o644)
        secret = model / "config.json"
        os.chmod(secret, 0o000)
        prefix = unprivileged_prefix()
        proc = subprocess.run(
            [*prefix, sys.executable, "-m", "ml_integrity", "manifest", str(model), "--json"],
            capture_output=True,
            text=True,
            env={**os.environ, "HOME": str(base), "XDG_CACHE_HOME": str(base / "cache")},
        )
        assert "Traceback" not in proc.stderr
        assert proc.returncode == 3, proc.stderr
        assert "config.json" in proc.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_verify_follows_symlinks_only_when_allowed(
    signed: tuple[Path, Path, Path], cli: CLI
) -> None:
    model, bundle, pub = signed
    vocab = model / "tokenizer" / "vocab.txt"
    real = model / "tokenizer" / "vocab.real"
    vocab.rename(real)
    os.symlink("vocab.real", vocab)
    refused = cli("verify", model, "--bundle", bundle, "--key", pub)
    assert refused.returncode == 1 and "symbolic link" in refused.stderr
    followed = cli(
        "verify",
        model,
        "--bundle",
        bundle,
        "--key",
        pub,
        "--allow-symlinks",
        "--ignore-path",
        "tokenizer/vocab.real",
    )
    assert followed.returncode == 0, followed.stderr


def test_encrypted_key_needs_its_password(
    tmp_path: Path, cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ML_INTEGRITY_KEY_PASSWORD: missing or wrong is a usage error, right signs."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    model = make_model(tmp_path)
    key = tmp_path / "enc.pem"
    key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"s3cret"),
        )
    )
    bundle = tmp_path / "m.sig"
    monkeypatch.delenv("ML_INTEGRITY_KEY_PASSWORD", raising=False)
    none = cli("sign", model, "--key", key, "--bundle", bundle)
    assert none.returncode == 2, none.stderr
    assert "encrypted" in none.stderr and "ML_INTEGRITY_KEY_PASSWORD" in none.stderr
    wrong = cli(
        "sign", model, "--key", key, "--bundle", bundle,
        env={"ML_INTEGRITY_KEY_PASSWORD": "wrong"},
    )  # fmt: skip
    assert wrong.returncode == 2 and "wrong password" in wrong.stderr
    assert not bundle.exists()
    right = cli(
        "sign", model, "--key", key, "--bundle", bundle,
        env={"ML_INTEGRITY_KEY_PASSWORD": "s3cret"},
    )  # fmt: skip
    assert right.returncode == 0, right.stderr
    assert bundle.is_file()


def test_bundle_that_cannot_be_written_leaves_nothing(tmp_path: Path, cli: CLI) -> None:
    """A bundle path that is a directory: exit 2, no temp file left beside it."""
    model = make_model(tmp_path)
    cli("keygen", "--out", tmp_path / "k.pem")
    out = tmp_path / "out"
    target = out / "m.sig"
    target.mkdir(parents=True)
    r = cli("sign", model, "--key", tmp_path / "k.pem", "--bundle", target)
    assert r.returncode == 2 and "cannot write" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["m.sig"] and target.is_dir()


def test_interrupted_atomic_write_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure while writing (here: disk full) leaves the old file and no temp file."""
    from ml_integrity.core import signing
    from ml_integrity.errors import UsageError

    target = tmp_path / "m.sig"
    target.write_bytes(b"old")

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(UsageError, match="No space left"):
        signing.write_atomic(target, b"new" * 100_000)
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.sig"]


def test_keygen_writes_the_private_key_0600_and_refuses_a_directory(
    tmp_path: Path, cli: CLI
) -> None:
    ok = cli("keygen", "--out", tmp_path / "k.pem")
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600
    (tmp_path / "d.pem").mkdir()
    bad = cli("keygen", "--out", tmp_path / "d.pem", "--force")
    assert bad.returncode == 2 and "cannot write" in bad.stderr
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())
