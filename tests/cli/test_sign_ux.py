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
