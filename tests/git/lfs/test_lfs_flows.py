"""End to end with real git and git-lfs against a local bare remote.

Each scenario asserts the exit code AND the state of the files: verified
content is checked out; refused content stays an LFS pointer (never a 0-byte
file), its object is never in the store, and something says so loudly.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.git.lfs.lfs_support import (
    CONTENT,
    EVIL,
    World,
    git,
    is_pointer,
    lfs_object,
    mi,
    replace_bytes,
    sha256,
)

EVIL_OID = sha256(EVIL)


def clone(world: World, dest: Path, *args: str) -> tuple[int, str]:
    r = mi("clone", world.remote, dest, "--key", world.pub, *args, cwd=dest.parent)
    return r.returncode, r.output


def assert_good(repo: Path) -> None:
    for name, data in CONTENT.items():
        assert (repo / name).read_bytes() == data, name
    assert git("status", "--porcelain", cwd=repo).stdout == ""


def assert_refused_a(repo: Path, output: str) -> None:
    """a.bin is the tampered file: pointer text, not the evil bytes, not empty."""
    a = repo / "a.bin"
    assert is_pointer(a), a.read_bytes()
    assert EVIL_OID in a.read_text()
    assert "REFUSED a.bin" in output
    assert not lfs_object(repo / ".git", EVIL_OID).exists()
    for name in ("b.bin", "data/c.bin"):
        assert (repo / name).read_bytes() == CONTENT[name]


def test_good_clone(good: Path) -> None:
    assert_good(good)
    assert (good / ".git" / "hooks" / "post-checkout").read_text().count("ml-integrity-hook") == 1
    assert "ml_integrity filter-process" in git("config", "filter.lfs.process", cwd=good).stdout


def test_filter_passes_delay_capability(world: World, tmp_path: Path) -> None:
    """Without delay, git-lfs downloads one file at a time (25x slower clones)."""
    dest = tmp_path / "traced"
    r = mi(
        "clone",
        world.remote,
        dest,
        "--key",
        world.pub,
        cwd=tmp_path,
        env={**world.env, "GIT_TRACE_PACKET": "1"} | _test_env(),
    )
    assert r.returncode == 0, r.output
    assert "capability=delay" in r.stderr
    assert "status=delayed" in r.stderr  # git-lfs really delayed, and we passed it on
    assert_good(dest)


def _test_env() -> dict[str, str]:
    import os

    return dict(os.environ)


@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
def test_tampered_clone(world: World, tmp_path: Path, strict: bool) -> None:
    if strict:
        rc, out = clone(world, tmp_path / "s", "--strict", "-b", "tampered")
        repo = tmp_path / "s"
        assert rc == 1, out
        assert "smudge filter lfs failed" in out
        a = repo / "a.bin"
        assert not a.exists() or (is_pointer(a) or a.read_bytes() != EVIL)
        assert not lfs_object(repo / ".git", EVIL_OID).exists()
    else:
        rc, out = clone(world, tmp_path / "c", "-b", "tampered")
        assert rc == 1, out
        assert_refused_a(tmp_path / "c", out)
        assert git("status", "--porcelain", cwd=tmp_path / "c").stdout == ""


def test_tampered_checkout_lenient(good: Path) -> None:
    git("fetch", "-q", "origin", cwd=good)
    r = git("checkout", "-q", "-b", "t", "origin/tampered", cwd=good, check=False)
    assert r.returncode == 1, r.output  # post-checkout failed the command
    assert_refused_a(good, r.output)
    assert "post-checkout" in r.stderr
    # back to a signed commit: everything verified again
    r = git("checkout", "-q", "main", cwd=good, check=False)
    assert r.returncode == 0, r.output
    assert_good(good)


def test_tampered_checkout_strict(good: Path) -> None:
    git("config", "ml-integrity.strict", "true", cwd=good)
    git("fetch", "-q", "origin", cwd=good)
    r = git("checkout", "-q", "origin/tampered", cwd=good, check=False)
    assert r.returncode != 0, r.output
    assert "REFUSED a.bin" in r.output
    a = good / "a.bin"
    # git aborts: the file being replaced is removed, never written with refused bytes
    assert not a.exists() or (a.read_bytes() != EVIL and a.stat().st_size > 0)
    assert not lfs_object(good / ".git", EVIL_OID).exists()
    assert git("rev-parse", "HEAD", cwd=good).stdout == git("rev-parse", "main", cwd=good).stdout
    # recoverable: HEAD did not move and the verified objects are still in the store
    r = git("checkout", "-q", "-f", "main", cwd=good, check=False)
    assert r.returncode == 0, r.output
    assert_good(good)


@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
def test_tampered_git_pull(good: Path, strict: bool) -> None:
    if strict:
        git("config", "ml-integrity.strict", "true", cwd=good)
    head = git("rev-parse", "HEAD", cwd=good).stdout
    r = git("pull", "-q", "--ff-only", "origin", "tampered", cwd=good, check=False)
    assert "REFUSED a.bin" in r.output
    a = good / "a.bin"
    assert not a.exists() or (a.read_bytes() != EVIL and a.stat().st_size > 0)
    assert not lfs_object(good / ".git", EVIL_OID).exists()
    if strict:
        assert r.returncode != 0
        assert git("rev-parse", "HEAD", cwd=good).stdout == head  # the merge did not happen
        assert git("checkout", "-q", "-f", "main", cwd=good, check=False).returncode == 0
        assert_good(good)
    else:
        # git ignores post-merge's exit code: the refusal is loud, not silent
        assert r.returncode == 0
        assert_refused_a(good, r.output)
        assert "post-merge" in r.stderr
        r = mi("pull", cwd=good)
        assert r.returncode == 1, r.output
        assert is_pointer(a)


def test_tampered_git_lfs_pull_and_checkout(good: Path) -> None:
    git("fetch", "-q", "origin", cwd=good)
    env = {**_test_env(), "GIT_LFS_SKIP_SMUDGE": "1"}
    r = git("checkout", "-q", "-b", "t", "origin/tampered", cwd=good, env=env, check=False)
    assert is_pointer(good / "a.bin")
    # git lfs checkout: the evil object is not local, the pointer stays
    r = git("lfs", "checkout", cwd=good, check=False)
    assert r.returncode == 0, r.output
    assert is_pointer(good / "a.bin")
    # git lfs pull: the transfer agent refuses the unsigned object
    r = git("lfs", "pull", cwd=good, check=False)
    assert r.returncode == 2, r.output
    assert "ml-integrity refused" in r.output
    assert_refused_a(good, "REFUSED a.bin")
    # ml-integrity pull: non-zero, says why
    r = mi("pull", cwd=good)
    assert r.returncode == 1, r.output
    assert "a.bin" in r.stderr and is_pointer(good / "a.bin")


def test_unsigned_branch_is_refused_but_nothing_is_lost(good: Path) -> None:
    git("fetch", "-q", "origin", cwd=good)
    r = git("checkout", "-q", "origin/unsigned", cwd=good, check=False)
    assert r.returncode == 1, r.output
    assert "no signature" in r.output
    # the objects are the signed ones from main: kept in the store, not quarantined
    for name in CONTENT:
        assert lfs_object(good / ".git", sha256(CONTENT[name])).exists()
    r = git("checkout", "-q", "main", cwd=good, check=False)
    assert r.returncode == 0, r.output
    assert_good(good)


def test_unsigned_object_already_in_store_is_quarantined(world: World, good: Path) -> None:
    # the evil object got into the store somehow (before install, another tool...)
    src = lfs_object(world.remote, EVIL_OID)
    dst = lfs_object(good / ".git", EVIL_OID)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(src.read_bytes())
    git("fetch", "-q", "origin", cwd=good)
    r = git("checkout", "-q", "origin/tampered", cwd=good, check=False)
    assert r.returncode == 1, r.output
    assert is_pointer(good / "a.bin")
    assert not dst.exists()
    quarantined = good / ".git" / "lfs" / "quarantine" / EVIL_OID
    assert quarantined.read_bytes() == EVIL  # moved, never deleted
    assert "quarantine" in r.stderr
    # git lfs checkout can no longer pick it up
    assert git("lfs", "checkout", cwd=good, check=False).returncode == 0
    assert is_pointer(good / "a.bin")


def private_remote(world: World, tmp_path: Path) -> Path:
    """A copy of the session remote (objects copied, not hard-linked) to change freely."""
    import shutil

    remote = tmp_path / "remote.git"
    git("clone", "-q", "--bare", "--no-local", world.remote, remote, cwd=tmp_path)
    shutil.copytree(world.remote / "lfs", remote / "lfs", copy_function=shutil.copy)
    return remote


def test_corrupted_object_on_server(world: World, tmp_path: Path) -> None:
    remote = private_remote(world, tmp_path)
    obj = lfs_object(remote, sha256(CONTENT["b.bin"]))
    replace_bytes(obj, b"corrupt on the server\n")
    r = mi("clone", remote, tmp_path / "c", "--key", world.pub, cwd=tmp_path)
    assert r.returncode != 0, r.output
    b = tmp_path / "c" / "b.bin"
    assert not b.exists() or b.read_bytes() != b"corrupt on the server\n"
    assert not lfs_object(tmp_path / "c" / ".git", sha256(CONTENT["b.bin"])).exists()


def test_corrupted_local_store(good: Path) -> None:
    oid = sha256(CONTENT["a.bin"])
    obj = lfs_object(good / ".git", oid)
    rot = b"X" * len(CONTENT["a.bin"])  # same size: git-lfs takes it as present
    replace_bytes(obj, rot)
    # no checkout yet: only a rehash can tell
    r = mi("pull", "--rehash", cwd=good)
    assert r.returncode == 1, r.output
    assert "corrupt" in r.stderr
    # a checkout of the file: the filter hashes what git-lfs produces
    (good / "a.bin").unlink()
    r = git("checkout", "--", "a.bin", cwd=good, check=False)
    assert r.returncode == 1, r.output
    assert is_pointer(good / "a.bin")
    assert "corrupt" in r.stderr
    assert (good / ".git" / "lfs" / "quarantine" / oid).read_bytes() == rot
    # recovery: one command fetches a good copy again
    r = mi("pull", cwd=good)
    assert r.returncode == 0, r.output
    assert_good(good)


def test_skip_smudge_clone_then_pull(world: World, tmp_path: Path) -> None:
    env = {**_test_env(), "GIT_LFS_SKIP_SMUDGE": "1"}
    dest = tmp_path / "c"
    r = mi("clone", world.remote, dest, "--key", world.pub, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.output
    assert all(is_pointer(dest / n) for n in CONTENT)
    r = mi("pull", cwd=dest)
    assert r.returncode == 0, r.output
    assert_good(dest)


def test_recovery_after_signing(world: World, tmp_path: Path) -> None:
    """The refused file comes back with one command once its content is signed."""
    remote = private_remote(world, tmp_path)
    good = tmp_path / "good"
    r = mi("clone", remote, good, "--key", world.pub, cwd=tmp_path)
    assert r.returncode == 0, r.output
    r = git("checkout", "-q", "-b", "t", "origin/tampered", cwd=good, check=False)
    assert r.returncode == 1 and is_pointer(good / "a.bin")
    # the publisher signs the new content after all
    author = tmp_path / "author"
    git("clone", "-q", "-b", "tampered", remote, author, cwd=tmp_path)
    mi("install", cwd=author, check=True)
    git("config", "ml-integrity.publicKey", world.pub, cwd=author)  # the pre-push hook checks
    mi("sign-repo", "--key", world.key, cwd=author, check=True)
    git("commit", "-q", "-m", "sign v2", cwd=author)
    git("push", "-q", "origin", "HEAD:refs/heads/signed-v2", cwd=author)
    git("pull", "-q", "origin", "signed-v2", cwd=good, check=False)
    r = mi("pull", cwd=good)
    assert r.returncode == 0, r.output
    assert (good / "a.bin").read_bytes() == EVIL  # now signed, so accepted


def test_verify_repository(world: World, good: Path) -> None:
    r = mi("verify", "--git-repo", cwd=good)
    assert r.returncode == 0, r.output
    assert "4 files (3 LFS) of HEAD verified" in r.stdout  # + .ml-integrity/policy.yaml
    # trust from the command line instead of git config
    git("config", "--unset", "ml-integrity.publicKey", cwd=good)
    assert mi("verify", "--git-repo", cwd=good).returncode == 1
    r = mi("verify", "--git-repo", good, "--key", world.pub, "--json", cwd=good.parent)
    assert r.returncode == 0, r.output
    import json

    assert json.loads(r.stdout)["files"] == 4 and json.loads(r.stdout)["lfs_files"] == 3
    git("config", "ml-integrity.publicKey", world.pub, cwd=good)
    # a tampered HEAD (pointers only: nothing is downloaded)
    git("fetch", "-q", "origin", cwd=good)
    env = {**_test_env(), "GIT_LFS_SKIP_SMUDGE": "1"}
    git("checkout", "-q", "origin/tampered", cwd=good, env=env, check=False)
    r = mi("verify", "--git-repo", cwd=good)
    assert r.returncode == 1, r.output
    assert "changed: a.bin" in r.stderr
    # a corrupted local object: only --rehash sees it
    git("checkout", "-q", "main", cwd=good)
    obj = lfs_object(good / ".git", sha256(CONTENT["b.bin"]))
    replace_bytes(obj, b"Z" * len(CONTENT["b.bin"]))
    assert mi("verify", "--git-repo", cwd=good).returncode == 0
    r = mi("verify", "--git-repo", "--rehash", cwd=good)
    assert r.returncode == 1, r.output
    assert "b.bin" in r.stderr and "corrupt" in r.stderr


def test_raw_content_instead_of_a_pointer_is_refused(good: Path) -> None:
    """A commit that stores a.bin's bytes directly (no pointer) cannot slip through."""
    raw = good / "raw.tmp"
    raw.write_bytes(EVIL)
    blob = git("hash-object", "-w", "--no-filters", raw, cwd=good).stdout.strip()
    raw.unlink()
    git("update-index", "--cacheinfo", f"100644,{blob},a.bin", cwd=good)
    git("commit", "-q", "--no-verify", "-m", "raw bytes", cwd=good)
    git("checkout", "-q", "-f", "HEAD~1", cwd=good)
    r = git("checkout", "-q", "main", cwd=good, check=False)
    assert r.returncode != 0, r.output
    assert "REFUSED a.bin" in r.stderr
    a = good / "a.bin"
    assert not a.exists() or a.read_bytes() != EVIL


def test_skip_download_errors_does_not_bypass(world: World, tmp_path: Path) -> None:
    env = {**_test_env(), "GIT_LFS_SKIP_DOWNLOAD_ERRORS": "1"}
    dest = tmp_path / "c"
    r = mi("clone", world.remote, dest, "--key", world.pub, "-b", "tampered", cwd=tmp_path, env=env)
    assert r.returncode == 1, r.output
    assert_refused_a(dest, r.output)


def test_swapped_pointer_keeps_the_signed_object(world: World, good: Path) -> None:
    """a.bin pointing at b.bin's (signed) object: refused, but b.bin's object stays."""
    b_oid = sha256(CONTENT["b.bin"])
    blob = git("rev-parse", "HEAD:b.bin", cwd=good).stdout.strip()  # b.bin's pointer
    git("update-index", "--cacheinfo", f"100644,{blob},a.bin", cwd=good)
    git("commit", "-q", "--no-verify", "-m", "swap", cwd=good)
    git("checkout", "-q", "-f", "HEAD~1", cwd=good)
    r = git("checkout", "-q", "main", cwd=good, check=False)
    assert r.returncode == 1, r.output
    assert "REFUSED a.bin" in r.stderr
    assert is_pointer(good / "a.bin")
    assert lfs_object(good / ".git", b_oid).is_file()
    assert (good / "b.bin").read_bytes() == CONTENT["b.bin"]


def test_clone_needs_an_existing_key(world: World, tmp_path: Path) -> None:
    r = mi("clone", world.remote, tmp_path / "c", "--key", tmp_path / "nope.pub", cwd=tmp_path)
    assert r.returncode == 2, r.output
    assert not (tmp_path / "c").exists()
