"""What a new user trips over in keygen, sign and manifest (issue 16)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import CLI


def _model(root: Path) -> Path:
    model = root / "model"
    (model / "sub").mkdir(parents=True)
    (model / "weights.bin").write_bytes(os.urandom(5000))
    (model / "config.json").write_text('{"hidden": 8}')
    (model / "sub" / "vocab.txt").write_text("a\nb\n")
    return model


@pytest.fixture
def key(tmp_path: Path, cli: CLI) -> Path:
    key = tmp_path / "key.pem"
    r = cli("keygen", "--out", key)
    assert r.returncode == 0, r.stderr
    return key


# --- keygen --out DIR -------------------------------------------------------------


@pytest.mark.parametrize("key_type", ["ec-p256", "x25519", "aes256"])
@pytest.mark.parametrize("force", [False, True])
def test_keygen_out_a_folder_says_it_is_a_folder(
    cli: CLI, tmp_path: Path, key_type: str, force: bool
) -> None:
    folder = tmp_path / "keys"
    folder.mkdir()
    r = cli("keygen", "--out", folder, "--type", key_type, *(["--force"] if force else []))
    assert r.returncode == 2, r.stderr
    assert "is a folder" in r.stderr and str(folder) in r.stderr
    assert "--out names the key file" in r.stderr
    assert "overwrite" not in r.stderr
    assert list(folder.iterdir()) == []


# --- sign --bundle never replaces a model file, nor any file without --overwrite -------

HASHING = {"streamed": [], "in-memory": ["--hash", "blake3"]}


@pytest.mark.parametrize("path", list(HASHING))
@pytest.mark.parametrize("overwrite", [False, True])
def test_sign_never_writes_its_bundle_over_a_file_of_the_model(
    cli: CLI, tmp_path: Path, key: Path, path: str, overwrite: bool
) -> None:
    model = _model(tmp_path)
    config = model / "config.json"
    before = config.read_bytes()
    extra = HASHING[path] + (["--overwrite"] if overwrite else [])
    r = cli("sign", model, "--key", key, "--bundle", config, *extra)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "would overwrite a file of the model" in r.stderr and str(config) in r.stderr
    assert config.read_bytes() == before
    assert r.stdout == ""


@pytest.mark.parametrize("overwrite", [False, True])
def test_sign_never_writes_its_bundle_over_the_file_it_signs(
    cli: CLI, tmp_path: Path, key: Path, overwrite: bool
) -> None:
    weights = _model(tmp_path) / "weights.bin"
    before = weights.read_bytes()
    extra = ["--overwrite"] if overwrite else []
    r = cli("sign", weights, "--key", key, "--bundle", weights, *extra)
    assert r.returncode == 2 and "file of the model" in r.stderr, r.stderr
    # the same file through a link to its folder
    link = tmp_path / "link"
    link.symlink_to(weights.parent)
    r = cli("sign", weights, "--key", key, "--bundle", link / "weights.bin", *extra)
    assert r.returncode == 2 and "file of the model" in r.stderr, r.stderr
    assert weights.read_bytes() == before


def test_a_model_file_left_out_is_still_not_replaced_without_overwrite(
    cli: CLI, tmp_path: Path, key: Path
) -> None:
    model = _model(tmp_path)
    config = model / "config.json"
    r = cli("sign", model, "--key", key, "--bundle", config, "--ignore-path", "config.json")
    assert r.returncode == 2 and "already exists" in r.stderr, r.stderr
    assert config.read_text() == '{"hidden": 8}'


@pytest.mark.parametrize("path", list(HASHING))
def test_an_existing_bundle_is_replaced_only_with_overwrite(
    cli: CLI, tmp_path: Path, key: Path, path: str
) -> None:
    model = _model(tmp_path)
    for bundle in (tmp_path / "model.sig", model / "model.sig"):
        first = cli("sign", model, "--key", key, "--bundle", bundle, *HASHING[path])
        assert first.returncode == 0, first.stderr
        signed = bundle.read_bytes()
        (model / "weights.bin").write_bytes(os.urandom(5000))
        again = cli("sign", model, "--key", key, "--bundle", bundle, *HASHING[path])
        assert again.returncode == 2, again.stderr
        assert "already exists" in again.stderr and "--overwrite" in again.stderr
        assert bundle.read_bytes() == signed
        forced = cli("sign", model, "--key", key, "--bundle", bundle, "--overwrite", *HASHING[path])
        assert forced.returncode == 0, forced.stderr
        assert "(3 files" in forced.stdout  # an earlier bundle in the folder is not signed
        assert bundle.read_bytes() != signed
        v = cli("verify", model, "--bundle", bundle, "--key", key.with_name("key.pem.pub"))
        assert v.returncode == 0, v.stderr


def test_an_existing_shard_folder_is_replaced_only_with_overwrite(
    cli: CLI, tmp_path: Path, key: Path
) -> None:
    model = _model(tmp_path)
    bundle = tmp_path / "model.sig"
    args = ["sign", model, "--key", key, "--bundle", bundle, "--shard-entries", "1"]
    assert cli(*args).returncode == 0
    bundle.unlink()  # the shards remain
    r = cli(*args)
    assert r.returncode == 2 and "shard folder already exists" in r.stderr, r.stderr
    assert not bundle.exists()
    assert cli(*args, "--overwrite").returncode == 0


def test_a_folder_as_bundle_is_a_usage_error(cli: CLI, tmp_path: Path, key: Path) -> None:
    model = _model(tmp_path)
    r = cli("sign", model, "--key", key, "--bundle", tmp_path, "--overwrite")
    assert r.returncode == 2 and "is a folder" in r.stderr, r.stderr


@pytest.mark.parametrize("inside", [True, False])
def test_keyless_signing_checks_the_bundle_before_it_signs(
    cli: CLI, tmp_path: Path, inside: bool
) -> None:
    model = _model(tmp_path)
    bundle = model / "config.json" if inside else tmp_path / "old.sig"
    bundle.write_text('{"hidden": 8}')
    r = cli(
        "sign", model, "--sigstore", "--staging", "--identity-token", "not-a-jwt",
        "--bundle", bundle,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert ("file of the model" if inside else "already exists") in r.stderr
    assert bundle.read_text() == '{"hidden": 8}'


def test_the_library_refuses_too(tmp_path: Path) -> None:
    from ml_integrity.core import signing, signing_stream
    from ml_integrity.engines import make_engine
    from ml_integrity.errors import UsageError
    from ml_integrity.trust.keys import KeySigner, generate

    private, _ = generate(tmp_path / "k.pem", "ec-p256", force=False)
    signer = KeySigner(private)
    model = _model(tmp_path)
    config = model / "config.json"
    with pytest.raises(UsageError, match="file of the model"):
        signing.sign(model, signer, config, overwrite=True)
    with pytest.raises(UsageError, match="file of the model"):
        engine = make_engine("threads", workers=1, rehash=False, scheduler=None)
        signing_stream.sign_folder(model, signer, config, engine, overwrite=True)
    assert config.read_text() == '{"hidden": 8}'
    out = tmp_path / "m.sig"
    signing.sign(model, signer, out)
    with pytest.raises(UsageError, match="already exists"):
        signing.sign(model, signer, out)
    json.loads(out.read_text())
