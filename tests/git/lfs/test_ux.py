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
    for needed in ("--key", "--cert-chain", "--policy", "Sigstore", "ml-integrity.publicKey"):
        assert needed in r.stderr, needed
    assert "recover once" not in r.output.lower()


def test_clone_with_trust_in_the_global_config(world: World, tmp_path: Path) -> None:
    git("config", "--global", "ml-integrity.publicKey", world.pub, cwd=tmp_path)
    dest = tmp_path / "c"
    r = mi("clone", world.remote, dest, cwd=tmp_path)
    assert r.returncode == 0, r.output
    assert (dest / "a.bin").read_bytes().startswith(b"model weights")


def _consumer(world: World, tmp_path: Path) -> Path:
    dest = tmp_path / "w"
    r = mi("clone", world.remote, dest, "--key", world.pub, cwd=tmp_path)
    assert r.returncode == 0, r.output
    return dest


def test_pre_push_refuses_a_stale_signature(world: World, tmp_path: Path) -> None:
    repo = _consumer(world, tmp_path)
    remote = tmp_path / "mirror.git"
    git("init", "-q", "--bare", remote, cwd=tmp_path)
    git("remote", "add", "mirror", remote, cwd=repo)
    assert git("push", "-q", "mirror", "main", cwd=repo, check=False).returncode == 0
    (repo / "a.bin").write_bytes(b"retrained weights\n")
    git("add", "a.bin", cwd=repo)
    r = git("commit", "-q", "-m", "retrain", cwd=repo, check=False)
    assert "sign it before pushing" in r.stderr
    head = git("rev-parse", "HEAD", cwd=repo).stdout.strip()
    r = git("push", "mirror", "main", cwd=repo, check=False)
    assert r.returncode != 0, r.output
    assert "REFUSED a.bin" in r.stderr and "not pushing refs/heads/main" in r.stderr
    assert "--no-verify" in r.stderr and "sign-repo --key KEY" in r.stderr
    remote_head = git("rev-parse", "main", cwd=remote).stdout.strip()
    assert remote_head != head
    # signed: the push goes through
    assert mi("sign-repo", "--key", world.key, cwd=repo).returncode == 0
    git("commit", "-q", "-m", "sign", cwd=repo)
    r = git("push", "mirror", "main", cwd=repo, check=False)
    assert r.returncode == 0, r.output
    # --no-verify skips the hook, as for git's own hooks
    (repo / "b.bin").write_bytes(b"unsigned again\n")
    git("commit", "-q", "-am", "unsigned", cwd=repo)
    r = git("push", "--no-verify", "mirror", "main", cwd=repo, check=False)
    assert r.returncode == 0, r.output


def test_checkout_refusal_names_the_last_verified_commit(world: World, tmp_path: Path) -> None:
    repo = _consumer(world, tmp_path)
    good = git("rev-parse", "HEAD", cwd=repo).stdout.strip()
    git("fetch", "-q", "origin", cwd=repo)
    r = git("checkout", "-q", "-b", "t", "origin/tampered", cwd=repo, check=False)
    assert r.returncode == 1, r.output
    assert f"`git checkout {good[:12]}` (the last commit whose content verifies)" in r.stderr


def test_pull_json_is_one_document_and_each_refusal_is_said_once(
    world: World, tmp_path: Path
) -> None:
    repo = _consumer(world, tmp_path)
    git("fetch", "-q", "origin", cwd=repo)
    git("checkout", "-q", "-b", "t", "origin/tampered", cwd=repo, check=False)
    r = mi("pull", "--json", cwd=repo)
    assert r.returncode == 1, r.output
    doc = json.loads(r.stdout)  # one document: a second one would not parse
    assert doc["ok"] is False and "a.bin" in doc["refused"] and doc["exit_code"] == 1
    assert r.stderr.count("a.bin") == 1, r.stderr
    r = mi("pull", cwd=repo)
    assert r.returncode == 1, r.output
    assert r.stderr.count("a.bin") == 1, r.stderr
    assert "the last commit whose content verifies" in r.stderr
    git("checkout", "-q", "main", cwd=repo)
    ok = mi("pull", "--json", cwd=repo)
    assert ok.returncode == 0, ok.output
    assert json.loads(ok.stdout)["ok"] is True


def test_lenient_git_pull_says_each_refusal_once(world: World, tmp_path: Path) -> None:
    repo = _consumer(world, tmp_path)
    r = git("pull", "-q", "--ff-only", "origin", "tampered", cwd=repo, check=False)
    assert r.returncode == 0, r.output  # git ignores post-merge's exit code
    assert r.stderr.count("REFUSED a.bin") == 1, r.stderr
    assert "post-merge" in r.stderr


def _one_document(stdout: str) -> dict[str, object]:
    doc = json.loads(stdout)  # a second document (or any extra text) does not parse
    assert isinstance(doc, dict)
    return doc


def test_every_json_command_prints_one_document(world: World, tmp_path: Path) -> None:
    repo = _consumer(world, tmp_path)
    evil = repo / "evil.pkl"
    evil.write_bytes(b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x8c\x06system\x93.")
    commands: list[tuple[str, ...]] = [
        ("pull", "--json"),
        ("install", "--json"),
        ("verify", "--git-repo", "--json"),
        ("check-staged", "--json"),
        ("manifest", "--staged", "--check", "--json"),
        ("scan", "--json", "a.bin"),
        ("scan", "--json", "evil.pkl"),
    ]
    for state in ("good", "tampered"):
        if state == "tampered":
            git("fetch", "-q", "origin", cwd=repo)
            git("checkout", "-q", "-b", "t", "origin/tampered", cwd=repo, check=False)
            commands.append(("clone", "--json", str(world.remote), str(tmp_path / "x")))
        codes = set()
        for command in commands:
            r = mi(*command, cwd=repo)
            doc = _one_document(r.stdout)
            assert doc.get("ok") is (r.returncode == 0), (command, r.output)
            codes.add(r.returncode)
        if state == "tampered":
            assert 1 in codes  # failures were among them
