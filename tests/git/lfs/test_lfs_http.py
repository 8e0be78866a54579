"""The same flows against a real Git LFS HTTP server (giftless on 127.0.0.1).

The transfer agent speaks the LFS batch API itself here (uploads on push,
downloads on clone and `git lfs pull`); git-lfs re-checks what it returns.
"""

from __future__ import annotations

from pathlib import Path

from tests.git.lfs.lfs_support import (
    CONTENT,
    EVIL,
    Giftless,
    World,
    git,
    is_pointer,
    lfs_object,
    mi,
    replace_bytes,
    sha256,
)

EVIL_OID = sha256(EVIL)


def test_push_went_through_the_agent_to_the_server(http_world: World, giftless: Giftless) -> None:
    for data in [*CONTENT.values(), EVIL]:
        assert giftless.object_path("models", sha256(data)).read_bytes() == data
    assert not lfs_object(http_world.remote, sha256(CONTENT["a.bin"])).exists()


def test_http_good_clone_and_tampered_lfs_pull(http_world: World, tmp_path: Path) -> None:
    dest = tmp_path / "c"
    r = mi("clone", http_world.remote, dest, "--key", http_world.pub, cwd=tmp_path)
    assert r.returncode == 0, r.output
    for name, data in CONTENT.items():
        assert (dest / name).read_bytes() == data
    git("fetch", "-q", "origin", cwd=dest)
    env_skip = {"GIT_LFS_SKIP_SMUDGE": "1"}
    import os

    git(
        "checkout",
        "-q",
        "-b",
        "t",
        "origin/tampered",
        cwd=dest,
        env={**os.environ, **env_skip},
        check=False,
    )
    r = git("lfs", "pull", cwd=dest, check=False)
    assert r.returncode == 2, r.output
    assert "ml-integrity refused" in r.output
    assert is_pointer(dest / "a.bin")
    assert not lfs_object(dest / ".git", EVIL_OID).exists()


def test_http_tampered_clone_is_refused(http_world: World, tmp_path: Path) -> None:
    dest = tmp_path / "c"
    r = mi(
        "clone", http_world.remote, dest, "--key", http_world.pub, "-b", "tampered", cwd=tmp_path
    )
    assert r.returncode == 1, r.output
    assert "REFUSED a.bin" in r.stderr
    assert is_pointer(dest / "a.bin")
    assert (dest / "b.bin").read_bytes() == CONTENT["b.bin"]
    assert not lfs_object(dest / ".git", EVIL_OID).exists()


def test_http_corrupted_server_object(
    http_world: World, giftless: Giftless, tmp_path: Path
) -> None:
    oid = sha256(CONTENT["data/c.bin"])
    obj = giftless.object_path("models", oid)
    good = obj.read_bytes()
    replace_bytes(obj, b"Y" * len(good))
    try:
        dest = tmp_path / "c"
        r = mi("clone", http_world.remote, dest, "--key", http_world.pub, cwd=tmp_path)
        assert r.returncode != 0, r.output
        c = dest / "data" / "c.bin"
        assert not c.exists() or c.read_bytes() != b"Y" * len(good)
        assert not lfs_object(dest / ".git", oid).exists()
        assert (dest / "a.bin").read_bytes() == CONTENT["a.bin"]
    finally:
        replace_bytes(obj, good)


def test_xet_is_not_turned_off_by_our_agent(
    http_world: World, giftless: Giftless, tmp_path: Path
) -> None:
    """With git-xet configured (``lfs.customtransfer.xet``), our standalone agent stays out
    of the Xet hosts: git-lfs 3.3 negotiates there, offering ``xet`` to the server, and the
    filter still verifies what arrives. Elsewhere our agent still gates downloads."""
    import os
    import stat

    xet = tmp_path / "git-xet"
    xet.write_text('#!/bin/sh\necho xet-started >> "$0.log"\nexit 1\n')
    xet.chmod(xet.stat().st_mode | stat.S_IXUSR)
    git("config", "--global", "lfs.customtransfer.xet.path", xet, cwd=tmp_path)
    git("config", "--global", "ml-integrity.xetUrl", giftless.url + "/", cwd=tmp_path)
    dest = tmp_path / "c"
    r = mi("clone", http_world.remote, dest, "--key", http_world.pub, cwd=tmp_path)
    assert r.returncode == 0, r.output
    key = f"lfs.{giftless.url}/.standalonetransferagent"
    assert git("config", "--local", "--get", key, cwd=dest).stdout == "\n"  # set, empty
    assert git("config", "--get", "lfs.standalonetransferagent", cwd=dest).stdout.strip() == (
        "ml-integrity"
    )
    # a fresh download from the Xet host is negotiated: xet is offered, giftless picks basic
    import shutil

    shutil.rmtree(dest / ".git" / "lfs" / "objects")
    (dest / "a.bin").unlink()
    skip = {**os.environ, "GIT_LFS_SKIP_SMUDGE": "1"}
    git("checkout", "--", "a.bin", cwd=dest, env=skip)  # a pointer again, not downloaded
    assert is_pointer(dest / "a.bin")
    trace = {**os.environ, "GIT_TRACE": "1", "GIT_CURL_VERBOSE": "1"}
    traced = git("lfs", "pull", cwd=dest, env=trace, check=False)
    assert traced.returncode == 0, traced.output
    request = next(line for line in traced.output.splitlines() if '"transfers"' in line)
    assert '"xet"' in request  # offered to the server: not turned off
    assert 'xfer: adapter "basic" started' in traced.output  # the server's choice
    assert 'starting transfer adapter "ml-integrity"' not in traced.output
    for name, data in CONTENT.items():
        assert (dest / name).read_bytes() == data
    assert mi("verify", "--git-repo", "--rehash", cwd=dest).returncode == 0
    # install in a clone says so
    report = mi("install", cwd=dest)
    assert report.returncode == 0 and "git-xet is configured" in report.output, report.output
