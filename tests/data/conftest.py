"""Signed datasets and models on disk, made with the real signing code (EC P-256 keys)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from ml_integrity.core import signing
from ml_integrity.trust import keys
from tests.support.sigstore_fixtures import (  # noqa: F401
    fake_sigstore,
    oidc_secret,
    oidc_server,
    sigstore_trust_config,
)


@dataclass
class Signed:
    root: Path
    bundle: Path
    key: Path
    pub: Path


def make_key(where: Path, name: str = "key.pem") -> tuple[Path, Path]:
    return keys.generate(where / name, "ec-p256")


def sign(root: Path, key: Path, bundle: Path) -> Path:
    signing.sign(root, keys.KeySigner(key), bundle)
    return bundle


def make_dataset(where: Path, name: str = "dataset", *, files: int = 5, size: int = 2000) -> Path:
    root = where / name
    (root / "images").mkdir(parents=True)
    for i in range(files):
        (root / "images" / f"{i:03d}.bin").write_bytes(os.urandom(size))
    (root / "labels.csv").write_text("".join(f"{i},{i % 2}\n" for i in range(files)))
    return root


def make_model(where: Path, name: str = "model") -> Path:
    model = where / name
    model.mkdir()
    (model / "weights.safetensors").write_bytes(os.urandom(5000))
    (model / "config.json").write_text('{"layers": 2}')
    return model


@pytest.fixture
def key(tmp_path: Path) -> tuple[Path, Path]:
    return make_key(tmp_path)


@pytest.fixture
def signed(tmp_path: Path, key: tuple[Path, Path]) -> Signed:
    root = make_dataset(tmp_path)
    bundle = sign(root, key[0], tmp_path / "dataset.sig")
    return Signed(root, bundle, key[0], key[1])
