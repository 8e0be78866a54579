"""``ml-integrity clone`` makes the post-checkout check in its own process.

During its ``git clone`` the post-checkout hook runs git-lfs's hook and writes
its arguments down; the clone command then checks as the hook would, and
puts the usual hook in place. A clone-time hook left behind (a clone
interrupted) is the usual hook.
"""

from __future__ import annotations

import os
from pathlib import Path

from ml_integrity.git import hooks
from tests.git.lfs.lfs_support import CONTENT, EVIL, World, git, is_pointer, mi


def test_the_clone_leaves_the_usual_hook(world: World, tmp_path: Path) -> None:
    dest = tmp_path / "c"
    r = mi("clone", world.remote, dest, "--key", world.pub, cwd=tmp_path)
    assert r.returncode == 0, r.output
    text = (dest / ".git" / "hooks" / "post-checkout").read_text()
    assert text == hooks.hook_text("post-checkout")
    assert hooks.CLONE_HOOK_ENV not in text
    assert os.access(dest / ".git" / "hooks" / "post-checkout", os.X_OK)


def test_the_check_of_a_tampered_clone_is_said_once(world: World, tmp_path: Path) -> None:
    dest = tmp_path / "t"
    r = mi("clone", world.remote, dest, "--key", world.pub, "-b", "tampered", cwd=tmp_path)
    assert r.returncode == 1, r.output
    assert is_pointer(dest / "a.bin")
    assert r.stderr.count("REFUSED a.bin") == 1, r.stderr
    assert (dest / "b.bin").read_bytes() == CONTENT["b.bin"]


def test_a_clone_time_hook_left_behind_is_the_usual_hook(world: World, tmp_path: Path) -> None:
    dest = tmp_path / "c"
    r = mi("clone", world.remote, dest, "--key", world.pub, cwd=tmp_path)
    assert r.returncode == 0, r.output
    hook = dest / ".git" / "hooks" / "post-checkout"
    hook.write_text(hooks.clone_hook_text())
    git("fetch", "-q", "origin", cwd=dest)
    r = git("checkout", "-q", "-b", "t", "origin/tampered", cwd=dest, check=False)
    assert r.returncode == 1, r.output  # the hook's own check ran, and refused
    assert "post-checkout" in r.stderr and "REFUSED a.bin" in r.stderr
    assert EVIL not in (dest / "a.bin").read_bytes()
