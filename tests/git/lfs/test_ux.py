"""What a new user trips over (issue 16): trust before cloning, the pre-push gate,
one JSON document and one line per refusal, hints that name what to run."""

from __future__ import annotations

import json
from pathlib import Path

from tests.git.lfs.lfs_support import World, git, mi


def test_clone_without_trust_refuses_before_cloning(world: World, tmp_path: Path) -> None:
    dest = tmp_path / "c"
    r = mi("clone", world.remote, dest, cwd=tmp_path)
    assert r.returncode == 2, r.output
    assert not dest.exists()
    for needed in ("--key", "--cert-chain", "--identity", "--issuer", "ml-integrity.publicKey"):
        assert needed in r.stderr, needed
    assert "recover once" not in r.output.lower()


def test_clone_with_trust_in_the_global_config(world: World, tmp_path: Path) -> None:
    git("config", "--global", "ml-integrity.publicKey", world.pub, cwd=tmp_path)
    dest = tmp_path / "c"
    r = mi("clone", world.remote, dest, cwd=tmp_path)
    assert r.returncode == 0, r.output
    assert (dest / "a.bin").read_bytes().startswith(b"model weights")
