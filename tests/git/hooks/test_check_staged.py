"""``ml-integrity check-staged``: the three checks in one process (the ``ml-integrity`` hook)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.git.hooks.support import (
    EVIL_PICKLE,
    PLAIN_PICKLE,
    SAFE,
    git,
    lfs_repo,
    make_keys,
    mi,
    write,
)


def test_all_checks_report_and_the_worst_exit_code_wins(tmp_path: Path) -> None:
    repo = lfs_repo(tmp_path / "r")
    keys = make_keys(tmp_path / "keys")
    git("config", "ml-integrity.publicKey", keys.pub, cwd=repo)
    write(repo, {"model.pt": EVIL_PICKLE, "notes.txt": b"fine\n"})
    git("add", ".", cwd=repo)
    r = mi("check-staged", cwd=repo)
    assert r.returncode == 1, r.output
    assert "model.pt: UNSAFE: pickle imports posix.system" in r.stdout
    assert "manifest.json is not staged" in r.stderr
    assert "2 staged path(s) are not covered by a valid signature" in r.stderr
    # a configuration error (exit 2) outranks the integrity failures (exit 1)
    r = mi("check-staged", "--policy", tmp_path / "missing.yaml", cwd=repo)
    assert r.returncode == 2, r.output
    assert "policy file not found" in r.stderr and "model.pt: UNSAFE" in r.stdout
    # fixed: data, manifest, signature
    write(repo, {"model.pt": SAFE})
    git("add", "model.pt", cwd=repo)
    assert mi("sign-repo", "--key", keys.key, cwd=repo).returncode == 0
    ok = mi("check-staged", "--json", cwd=repo)
    assert ok.returncode == 0, ok.output
    doc = json.loads(ok.stdout)
    assert doc["ok"] and doc["checks"] == ["scan", "manifest", "signed"]
    assert {f["path"] for f in doc["scan"]["files"]} >= {"model.pt", "notes.txt"}
    assert doc["manifest"]["files"] == 2 and doc["signed"]["files"] == 2  # model.pt, notes.txt


def test_only_paths_skip_and_the_policy_pickle_rule(tmp_path: Path) -> None:
    repo = lfs_repo(tmp_path / "r")
    write(repo, {"weights.pkl": PLAIN_PICKLE})
    git("add", "weights.pkl", cwd=repo)
    skip = ("--skip", "manifest", "--skip", "signed")
    assert mi("check-staged", *skip, cwd=repo).returncode == 1  # pickle: block
    # pre-commit passed no file (its filters excluded them): nothing to scan
    assert mi("check-staged", *skip, "--only-paths", "--", cwd=repo).returncode == 0
    assert mi("check-staged", *skip, "--only-paths", "--", "weights.pkl", cwd=repo).returncode == 1
    assert mi("check-staged", *skip, "--pickle", "allowlist", cwd=repo).returncode == 0
    keys = make_keys(tmp_path / "keys")
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"version: 1\nsigners:\n  a:\n    key: {keys.pub}\npickle: allowlist\n")
    r = mi("check-staged", "--skip", "manifest", "--policy", policy, cwd=repo)
    assert r.returncode == 0, r.output  # the policy's pickle rule; no LFS file to sign


def test_before_the_first_commit(tmp_path: Path) -> None:
    """No HEAD yet: everything staged is the change (and trust inside the repository is new)."""
    repo = tmp_path / "r"
    git("init", "-q", repo, cwd=tmp_path)
    git("lfs", "track", "*.bin", cwd=repo)
    keys = make_keys(repo / "keys")  # inside the repository
    write(repo, {"a.bin": SAFE, "x.pkl": PLAIN_PICKLE})
    git("add", ".gitattributes", "a.bin", "x.pkl", cwd=repo)
    scanned = mi("scan", "--staged", "--json", cwd=repo)
    assert scanned.returncode == 1 and "x.pkl" in scanned.stdout, scanned.output
    git("rm", "-q", "--cached", "x.pkl", cwd=repo)
    assert mi("sign-repo", "--key", keys.key, cwd=repo).returncode == 0
    assert mi("check-staged", "--key", keys.pub, cwd=repo).returncode == 0  # key not staged
    git("add", keys.pub, cwd=repo)
    brought = mi("check-staged", "--key", keys.pub, cwd=repo)
    assert brought.returncode == 2 and "part of the change" in brought.stderr, brought.output
