"""``--allow-symlinks`` means the same on manifest, sign and verify, and as model_signing's.

A bundle signed with it records ``allow_symlinks: true`` (model_signing's
``set_allow_symlinks``); ours and model_signing verify it, following the links.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from tests.conftest import CLI
from tests.core.test_interop import model_signing
from tests.core.test_oms_hashing import ms_api

# folders are streamed with every --hash; shards take the in-memory path
HASHING = {
    "streamed": [],
    "streamed-blake2": ["--hash", "blake2"],
    "in-memory": ["--shard-size", "4096"],
}


def _linked_model(root: Path) -> Path:
    model = root / "model"
    (model / "weights").mkdir(parents=True)
    (model / "weights" / "part-0.bin").write_bytes(os.urandom(4000))
    (model / "config.json").write_text('{"hidden": 8}')
    (model / "current.bin").symlink_to("weights/part-0.bin")  # a link to a file
    return model


def _serialization(bundle: Path) -> dict[str, object]:
    envelope = json.loads(bundle.read_text())["dsseEnvelope"]
    statement = json.loads(base64.b64decode(envelope["payload"]))
    ser = statement["predicate"]["serialization"]
    assert isinstance(ser, dict)
    return ser


@pytest.fixture
def keypair(tmp_path: Path, cli: CLI) -> tuple[Path, Path]:
    assert cli("keygen", "--out", tmp_path / "k.pem").returncode == 0
    return tmp_path / "k.pem", tmp_path / "k.pem.pub"


@pytest.mark.parametrize("command", ["manifest", "sign", "verify"])
def test_the_option_is_the_same_on_every_command(cli: CLI, command: str) -> None:
    r = cli(command, "--help")
    assert r.returncode == 0
    flat = " ".join(r.stdout.split())
    assert "--allow-symlinks follow symbolic links inside the model" in flat


@pytest.mark.parametrize("path", list(HASHING))
def test_sign_suggests_the_flag_and_then_accepts_it(
    cli: CLI, tmp_path: Path, keypair: tuple[Path, Path], path: str
) -> None:
    key, pub = keypair
    model = _linked_model(tmp_path)
    bundle = tmp_path / "model.sig"
    refused = cli("sign", model, "--key", key, "--bundle", bundle, *HASHING[path])
    assert refused.returncode != 0 and "--allow-symlinks" in refused.stderr, refused.stderr
    assert not bundle.exists()
    ok = cli("sign", model, "--key", key, "--bundle", bundle, "--allow-symlinks", *HASHING[path])
    assert ok.returncode == 0, ok.stderr
    assert "(3 files" in ok.stdout  # config.json, current.bin, weights/part-0.bin
    assert _serialization(bundle)["allow_symlinks"] is True
    v = cli("verify", model, "--bundle", bundle, "--key", pub)
    assert v.returncode == 0, v.stderr
    # the link's target changes: the linked paths are signed by content
    (model / "weights" / "part-0.bin").write_bytes(b"tampered")
    bad = cli("verify", model, "--bundle", bundle, "--key", pub, "--allow-symlinks")
    assert bad.returncode == 1 and "current.bin" in bad.stderr, bad.stderr


def test_the_manifest_agrees_with_the_signed_bundle(
    cli: CLI, tmp_path: Path, keypair: tuple[Path, Path]
) -> None:
    key, _ = keypair
    model = _linked_model(tmp_path)
    bundle = tmp_path / "model.sig"
    assert cli("sign", model, "--key", key, "--bundle", bundle, "--allow-symlinks").returncode == 0
    m = cli("manifest", model, "--allow-symlinks", "--json")
    assert m.returncode == 0, m.stderr
    listed = {e["path"]: e["sha256"] for e in json.loads(m.stdout)["entries"]}
    envelope = json.loads(bundle.read_text())["dsseEnvelope"]
    statement = json.loads(base64.b64decode(envelope["payload"]))
    signed = {r["name"]: r["digest"] for r in statement["predicate"]["resources"]}
    assert listed == signed and signed["current.bin"] == signed["weights/part-0.bin"]


def test_model_signing_verifies_our_bundle_with_links(
    cli: CLI, tmp_path: Path, keypair: tuple[Path, Path]
) -> None:
    key, pub = keypair
    model = _linked_model(tmp_path)
    bundle = tmp_path / "model.sig"
    assert cli("sign", model, "--key", key, "--bundle", bundle, "--allow-symlinks").returncode == 0
    r = model_signing(
        "verify", "key", model, "--signature", bundle, "--public_key", pub, "--allow_symlinks"
    )
    assert r.returncode == 0, r.stdout + r.stderr
    blake = tmp_path / "blake.sig"
    args = ["sign", model, "--key", key, "--bundle", blake, "--allow-symlinks", "--hash", "blake2"]
    assert cli(*args).returncode == 0
    api = ms_api(
        "verify", model=model, signature=blake, key=pub, hash="blake2", allow_symlinks=True
    )
    assert api.returncode == 0, api.stderr


def test_model_signing_bundles_with_links_verify_with_ours(
    cli: CLI, tmp_path: Path, keypair: tuple[Path, Path]
) -> None:
    key, pub = keypair
    model = _linked_model(tmp_path)
    bundle = tmp_path / "ms.sig"
    r = ms_api("sign", model=model, signature=bundle, key=key, hash="sha256", allow_symlinks=True)
    assert r.returncode == 0, r.stderr
    assert _serialization(bundle)["allow_symlinks"] is True
    v = cli("verify", model, "--bundle", bundle, "--key", pub)
    assert v.returncode == 0, v.stderr
    ours = tmp_path / "ours.sig"
    assert cli("sign", model, "--key", key, "--bundle", ours, "--allow-symlinks").returncode == 0
    mine, theirs = _serialization(ours), _serialization(bundle)
    assert sorted(mine.pop("ignore_paths")) == sorted(theirs.pop("ignore_paths"))  # type: ignore[call-overload]
    assert mine == theirs


def test_sharded_signing_refuses_links_with_a_reason(
    cli: CLI, tmp_path: Path, keypair: tuple[Path, Path]
) -> None:
    key, _ = keypair
    model = _linked_model(tmp_path)
    args = ["sign", model, "--key", key, "--bundle", tmp_path / "m.sig", "--allow-symlinks"]
    r = cli(*args, "--shard-entries", "1")
    assert r.returncode == 2 and "do not follow symbolic links" in r.stderr, r.stderr
