"""``ml-integrity manifest --staged --check/--write``: the manifest of the index."""

from __future__ import annotations

import json
from pathlib import Path

from tests.git.hooks.support import SAFE, git, lfs_repo, mi, write

FIX = "ml-integrity manifest --staged --write"


def test_stale_manifest_fails_with_the_fix_then_passes(tmp_path: Path) -> None:
    repo = lfs_repo(tmp_path / "r")
    assert mi("manifest", "--staged", "--check", cwd=repo).returncode == 0  # no LFS files yet
    write(repo, {"a.bin": SAFE, "models/b.bin": b"other weights\n"})
    git("add", ".", cwd=repo)
    missing = mi("manifest", "--staged", "--check", cwd=repo)
    assert missing.returncode == 1, missing.output
    assert "manifest.json is not staged" in missing.stderr and FIX in missing.stderr
    wrote = mi("manifest", "--staged", "--write", cwd=repo)
    assert wrote.returncode == 0 and "wrote and staged" in wrote.stdout, wrote.output
    assert ".ml-integrity/manifest.json" in git("diff", "--cached", "--name-only", cwd=repo).stdout
    assert mi("manifest", "--staged", "--check", cwd=repo).returncode == 0
    git("commit", "-q", "-m", "models", cwd=repo)
    # one file changes, one goes, one comes: each is named
    write(repo, {"a.bin": b"new weights\n", "c.bin": b"more\n"})
    git("rm", "-q", "models/b.bin", cwd=repo)
    git("add", "a.bin", "c.bin", cwd=repo)
    stale = mi("manifest", "--staged", "--check", cwd=repo)
    assert stale.returncode == 1, stale.output
    assert "changed: a.bin (staged sha256:" in stale.stderr
    assert "missing: models/b.bin (listed, but no such file is staged)" in stale.stderr
    assert "extra: c.bin (staged, not listed)" in stale.stderr
    assert FIX in stale.stderr
    assert mi("manifest", "--staged", "--write", cwd=repo).returncode == 0
    ok = mi("manifest", "--staged", "--check", "--json", cwd=repo)
    assert ok.returncode == 0 and json.loads(ok.stdout)["files"] == 2


def test_the_staged_manifest_counts_not_the_work_tree_copy(tmp_path: Path) -> None:
    repo = lfs_repo(tmp_path / "r")
    write(repo, {"a.bin": SAFE})
    git("add", "a.bin", cwd=repo)
    assert mi("manifest", "--staged", "--write", cwd=repo).returncode == 0
    manifest = repo / ".ml-integrity" / "manifest.json"
    manifest.write_text("garbage")  # not staged: does not count
    assert mi("manifest", "--staged", "--check", cwd=repo).returncode == 0
    git("add", manifest, cwd=repo)  # now it does
    bad = mi("manifest", "--staged", "--check", cwd=repo)
    assert bad.returncode == 1 and "is not a valid manifest" in bad.stderr, bad.output


def test_annotations_are_kept_and_free(tmp_path: Path) -> None:
    repo = lfs_repo(tmp_path / "r")
    write(repo, {"a.bin": SAFE})
    git("add", "a.bin", cwd=repo)
    assert mi("manifest", "--staged", "--write", cwd=repo).returncode == 0
    manifest = repo / ".ml-integrity" / "manifest.json"
    doc = json.loads(manifest.read_text())
    doc["entries"][0]["annotations"] = {"kind": "model", "license": "apache-2.0"}
    manifest.write_text(json.dumps(doc))
    git("add", manifest, cwd=repo)
    assert mi("manifest", "--staged", "--check", cwd=repo).returncode == 0
    write(repo, {"b.bin": b"second\n"})
    git("add", "b.bin", cwd=repo)
    assert mi("manifest", "--staged", "--write", cwd=repo).returncode == 0
    kept = json.loads(manifest.read_text())["entries"][0]
    assert kept["path"] == "a.bin" and kept["annotations"]["kind"] == "model"


def test_git_index_file_is_honoured(tmp_path: Path) -> None:
    repo = lfs_repo(tmp_path / "r")
    write(repo, {"a.bin": SAFE})
    git("add", "a.bin", cwd=repo)
    assert mi("manifest", "--staged", "--write", cwd=repo).returncode == 0
    git("commit", "-q", "-m", "a", cwd=repo)
    write(repo, {"b.bin": b"only in the other index\n"})
    other = {"GIT_INDEX_FILE": str(repo / ".git" / "other-index")}
    git("read-tree", "HEAD", cwd=repo, env=other)
    git("add", "b.bin", cwd=repo, env=other)
    stale = mi("manifest", "--staged", "--check", cwd=repo, env=other)
    assert stale.returncode == 1 and "extra: b.bin" in stale.stderr, stale.output
    assert mi("manifest", "--staged", "--check", cwd=repo).returncode == 0
    assert mi("manifest", "--staged", "--write", cwd=repo, env=other).returncode == 0
    assert mi("manifest", "--staged", "--check", cwd=repo, env=other).returncode == 0


def test_usage(tmp_path: Path) -> None:
    repo = lfs_repo(tmp_path / "r")
    assert mi("manifest", "--check", cwd=repo).returncode == 2
    assert mi("manifest", "--staged", "--check", "--write", cwd=repo).returncode == 2
    assert mi("manifest", "--staged", ".", cwd=repo).returncode == 2
    outside = mi("manifest", "--staged", "--check", cwd=tmp_path)
    assert outside.returncode == 2 and "not inside a git work tree" in outside.stderr
