"""Smudging from the local store, and smudges answered ``delayed`` ahead of git-lfs.

Real git and git-lfs. A tap in front of git-lfs (``git-lfs`` on PATH is a
script that copies what ``filter-process`` receives to a log, then runs the
real one) shows which files the filter proxy asked git-lfs for: an allowed
object the store holds is served without git-lfs, and only after its
sha256 is checked; git-lfs is asked for downloads, and whenever it would
decide otherwise than "serve the stored bytes" (skip-smudge, fetchexclude,
an object of the wrong size).
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from tests.git.lfs.lfs_support import (
    CONTENT,
    World,
    git,
    is_pointer,
    lfs_object,
    mi,
    replace_bytes,
    sha256,
)


@pytest.fixture
def tap(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An environment whose ``git-lfs`` logs every byte sent to ``filter-process``."""
    real = shutil.which("git-lfs")
    assert real is not None
    bin_dir = tmp_path / "tap-bin"
    bin_dir.mkdir()
    log = tmp_path / "tap.log"
    script = bin_dir / "git-lfs"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = filter-process ]; then\n'
        f'  tee -a "{log}" | "{real}" "$@"\n'
        "  exit $?\n"
        "fi\n"
        f'exec "{real}" "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    return env, log


def asked(log: Path, path: str) -> bool:
    """Did git-lfs get a smudge request for ``path``?"""
    return log.exists() and f"pathname={path}\n".encode() in log.read_bytes()


def remove(repo: Path, *names: str) -> None:
    for name in names:
        (repo / name).unlink()


def test_stored_objects_are_served_without_git_lfs(
    good: Path, tap: tuple[dict[str, str], Path]
) -> None:
    env, log = tap
    remove(good, *CONTENT)
    r = git("checkout", "--", ".", cwd=good, env=env, check=False)
    assert r.returncode == 0, r.output
    for name, data in CONTENT.items():
        assert (good / name).read_bytes() == data
        assert not asked(log, name), name
    assert git("status", "--porcelain", cwd=good).stdout == ""


def test_a_tampered_stored_object_never_reaches_the_work_tree(
    good: Path, tap: tuple[dict[str, str], Path]
) -> None:
    env, log = tap
    oid = sha256(CONTENT["a.bin"])
    rot = b"Y" * len(CONTENT["a.bin"])  # same size: only its sha256 tells
    replace_bytes(lfs_object(good / ".git", oid), rot)
    remove(good, "a.bin", "b.bin")
    r = git("checkout", "--", ".", cwd=good, env=env, check=False)
    assert r.returncode == 1, r.output
    assert is_pointer(good / "a.bin")
    assert rot not in (good / "a.bin").read_bytes()
    assert "REFUSED a.bin" in r.stderr and "corrupt" in r.stderr
    assert (good / ".git" / "lfs" / "quarantine" / oid).read_bytes() == rot
    assert not lfs_object(good / ".git", oid).exists()
    assert not asked(log, "a.bin")  # refused from the store, git-lfs never saw it
    assert (good / "b.bin").read_bytes() == CONTENT["b.bin"]


def test_a_tampered_stored_object_is_refused_on_a_branch_switch(
    world: World, good: Path, tap: tuple[dict[str, str], Path]
) -> None:
    """The object of another branch is in the store already (fetched), and rotted."""
    env, _ = tap
    git("checkout", "-q", "-b", "side", cwd=good)
    (good / "a.bin").write_bytes(b"side weights\n")
    git("add", "a.bin", cwd=good)
    r = mi("sign-repo", "--key", world.key, cwd=good)
    assert r.returncode == 0, r.output
    git("commit", "-q", "-m", "side", cwd=good)
    git("checkout", "-q", "main", cwd=good)
    side_oid = sha256(b"side weights\n")
    replace_bytes(lfs_object(good / ".git", side_oid), b"side wEights\n")
    r = git("checkout", "-q", "side", cwd=good, env=env, check=False)
    assert r.returncode == 1, r.output
    assert is_pointer(good / "a.bin")
    assert "corrupt" in r.stderr
    assert (good / ".git" / "lfs" / "quarantine" / side_oid).exists()


def test_a_stored_object_of_the_wrong_size_is_left_to_git_lfs(
    good: Path, tap: tuple[dict[str, str], Path]
) -> None:
    """git-lfs handles a stored object of the wrong size its own way (3.x: removes it
    and fails the smudge); the proxy asks it, and its bytes never reach the file."""
    env, log = tap
    oid = sha256(CONTENT["b.bin"])
    replace_bytes(lfs_object(good / ".git", oid), b"short")
    remove(good, "b.bin")
    git("checkout", "--", "b.bin", cwd=good, env=env, check=False)
    assert asked(log, "b.bin")
    b = good / "b.bin"
    assert not b.exists() or b.read_bytes() in (CONTENT["b.bin"],) or is_pointer(b)


def test_a_missing_object_is_downloaded_then_served_from_the_store(
    good: Path, tap: tuple[dict[str, str], Path]
) -> None:
    """A delayed download still works: git is told ``delayed`` at once, git-lfs gets the
    request (can-delay=1) and downloads, the file is then read from the store."""
    env, log = tap
    oid = sha256(CONTENT["data/c.bin"])
    lfs_object(good / ".git", oid).unlink()
    remove(good, "data/c.bin")
    traced = {**env, "GIT_TRACE_PACKET": "1"}
    r = git("checkout", "--", "data/c.bin", cwd=good, env=traced, check=False)
    assert r.returncode == 0, r.output
    assert (good / "data/c.bin").read_bytes() == CONTENT["data/c.bin"]
    assert "status=delayed" in r.stderr
    assert asked(log, "data/c.bin") and b"can-delay=1\n" in log.read_bytes()
    assert lfs_object(good / ".git", oid).read_bytes() == CONTENT["data/c.bin"]


@pytest.mark.parametrize(
    "how",
    ["skip-smudge", "fetchexclude", "lfsconfig"],
)
def test_git_lfs_decides_when_it_would_not_serve_the_stored_object(good: Path, how: str) -> None:
    """The same result as git-lfs alone, whatever git-lfs does with an excluded file."""

    def checkout(process: str | None) -> bytes:
        remove(good, "a.bin")
        args = ["-c", f"filter.lfs.process={process}"] if process else []
        env = {**os.environ}
        if how == "skip-smudge":
            env["GIT_LFS_SKIP_SMUDGE"] = "1"
        elif how == "fetchexclude":
            args += ["-c", "lfs.fetchexclude=a.bin"]
        git(*args, "checkout", "--", "a.bin", cwd=good, env=env, check=False)
        return (good / "a.bin").read_bytes()

    if how == "lfsconfig":
        (good / ".lfsconfig").write_text("[lfs]\n\tfetchexclude = a.bin\n")
    alone = checkout("git-lfs filter-process")
    assert checkout(None) == alone


@pytest.mark.parametrize("target", ["/dev/stdin", "config.d/elsewhere"])
def test_an_lfsconfig_that_is_not_a_file_never_hangs_the_checkout(good: Path, target: str) -> None:
    """`.lfsconfig` as a link to /dev/stdin (the filter's stdin is git's pkt-line pipe):
    no child of the filter may read it; git-lfs decides, and the content is verified."""
    import subprocess

    (good / ".lfsconfig").symlink_to(target)
    remove(good, "a.bin")
    proc = subprocess.run(
        ["git", "checkout", "--", "a.bin"],
        cwd=good,
        capture_output=True,
        text=True,
        timeout=60,  # a hang fails here instead of blocking the run
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert (good / "a.bin").read_bytes() == CONTENT["a.bin"]


def test_clone_with_a_reference_repository(world: World, good: Path, tmp_path: Path) -> None:
    """git-lfs copies objects from the reference instead of delaying: requests sent
    ahead are answered with content, and the files are then served from the store."""
    dest = tmp_path / "ref"
    r = mi(
        "clone",
        world.remote,
        dest,
        "--key",
        world.pub,
        f"--git-arg=--reference={good}",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.output
    for name, data in CONTENT.items():
        assert (dest / name).read_bytes() == data


def test_clone_of_files_with_the_same_content(world: World, tmp_path: Path) -> None:
    """One object at several paths: asked ahead once, the other paths the usual way."""
    author = tmp_path / "dup-author"
    git("init", "-q", author, cwd=tmp_path)
    git("lfs", "track", "*.bin", cwd=author)
    mi("init", cwd=author, check=True)
    git("config", "ml-integrity.publicKey", world.pub, cwd=author)
    same = b"the same weights\n"
    names = ["one.bin", "two.bin", "sub/three.bin"]
    for name in names:
        (author / name).parent.mkdir(parents=True, exist_ok=True)
        (author / name).write_bytes(same)
    (author / "other.bin").write_bytes(b"other\n")
    git("add", ".", cwd=author)
    mi("sign-repo", "--key", world.key, cwd=author, check=True)
    git("commit", "-q", "-m", "dups", cwd=author)
    remote = tmp_path / "dup.git"
    git("init", "-q", "--bare", remote, cwd=tmp_path)
    git("remote", "add", "origin", remote, cwd=author)
    git("push", "-q", "origin", "main", cwd=author)
    dest = tmp_path / "dup-clone"
    r = mi("clone", remote, dest, "--key", world.pub, cwd=tmp_path)
    assert r.returncode == 0, r.output
    for name in names:
        assert (dest / name).read_bytes() == same
    assert (dest / "other.bin").read_bytes() == b"other\n"
