"""``ml-integrity scan --staged``: the staged bytes are scanned, never the work tree."""

from __future__ import annotations

import io
from pathlib import Path

from ml_integrity.scan import scanner as scanning
from tests.git.hooks.support import EVIL_PICKLE, PLAIN_PICKLE, SAFE, git, lfs_repo, mi, write


def test_the_index_is_scanned_not_the_work_tree(tmp_path: Path) -> None:
    repo = lfs_repo(tmp_path / "r")
    write(repo, {"model.pt": EVIL_PICKLE, "notes/weights.pkl": SAFE})
    git("add", ".", cwd=repo)
    # the work tree now differs from what is staged, both ways
    write(repo, {"model.pt": SAFE, "notes/weights.pkl": EVIL_PICKLE})
    staged = mi("scan", "--staged", cwd=repo)
    assert staged.returncode == 1, staged.output
    assert "model.pt: UNSAFE" in staged.stdout and "posix.system" in staged.stdout
    assert "weights.pkl" not in staged.stdout  # safe as staged
    assert "LFS object" in staged.stdout  # the staged pointer was followed to its object
    tree = mi("scan", "model.pt", cwd=repo)
    assert tree.returncode == 0, tree.output  # the work-tree file is harmless
    # explicit paths (files, folders, from a subdirectory) read the index too
    assert mi("scan", "--staged", "notes", cwd=repo).returncode == 0
    sub = mi("scan", "--staged", "../model.pt", cwd=repo / "notes")
    assert sub.returncode == 1 and "model.pt: UNSAFE" in sub.stdout


def test_without_paths_only_the_staged_changes_are_scanned(tmp_path: Path) -> None:
    repo = lfs_repo(tmp_path / "r")
    write(repo, {"old.pkl": PLAIN_PICKLE})
    git("add", "old.pkl", cwd=repo)
    git("commit", "-q", "--no-verify", "-m", "an old pickle", cwd=repo)
    write(repo, {"new.bin": SAFE})
    git("add", "new.bin", cwd=repo)
    r = mi("scan", "--staged", "--json", cwd=repo)
    assert r.returncode == 0, r.output
    import json

    assert [f["path"] for f in json.loads(r.stdout)["files"]] == ["new.bin"]
    # deleting the old pickle is a change with nothing to scan
    git("rm", "-q", "old.pkl", cwd=repo)
    assert mi("scan", "--staged", cwd=repo).returncode == 0
    # ... and the pickle is found when asked for everything staged
    git("reset", "-q", "HEAD", "old.pkl", cwd=repo)
    everything = mi("scan", "--staged", ".", cwd=repo)
    assert everything.returncode == 1 and "old.pkl: UNSAFE" in everything.stdout


def test_git_index_file_is_honoured(tmp_path: Path) -> None:
    """`git commit -a` and `git commit PATH` hand hooks a temporary index."""
    repo = lfs_repo(tmp_path / "r")
    write(repo, {"model.pt": EVIL_PICKLE})
    other = {"GIT_INDEX_FILE": str(repo / ".git" / "other-index")}
    git("read-tree", "HEAD", cwd=repo, env=other)
    git("add", "model.pt", cwd=repo, env=other)
    r = mi("scan", "--staged", cwd=repo, env=other)
    assert r.returncode == 1 and "model.pt: UNSAFE" in r.stdout, r.output
    assert mi("scan", "--staged", cwd=repo).returncode == 0  # the real index is clean


def test_a_smudge_filter_is_applied_as_a_checkout_would(tmp_path: Path) -> None:
    """A file stored through another filter is scanned as checked out (cat-file --filters)."""
    repo = lfs_repo(tmp_path / "r")
    git("config", "filter.b64.clean", "base64 -w0", cwd=repo)
    git("config", "filter.b64.smudge", "base64 -d", cwd=repo)
    (repo / ".gitattributes").write_text("*.enc filter=b64\n*.bin filter=lfs diff=lfs merge=lfs\n")
    write(repo, {"weights.enc": PLAIN_PICKLE})
    git("add", ".gitattributes", "weights.enc", cwd=repo)
    blob = git("cat-file", "-p", ":weights.enc", cwd=repo).stdout
    assert "\x80" not in blob  # stored as base64 text: harmless as a blob
    r = mi("scan", "--staged", cwd=repo)
    assert r.returncode == 1 and "weights.enc: UNSAFE" in r.stdout, r.output


def test_missing_lfs_object_and_usage_errors(tmp_path: Path) -> None:
    repo = lfs_repo(tmp_path / "r")
    write(repo, {"model.bin": SAFE})
    git("add", "model.bin", cwd=repo)
    oid = git("lfs", "ls-files", "-l", cwd=repo).stdout.split()[0]
    obj = repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
    obj.unlink()
    r = mi("scan", "--staged", cwd=repo)
    assert r.returncode == 1 and "not in the local LFS store" in r.stdout, r.output
    assert mi("scan", "--staged", "--lfs-missing", "skip", cwd=repo).returncode == 0
    unknown = mi("scan", "--staged", "nope.bin", cwd=repo)
    assert unknown.returncode == 2 and "not in the index" in unknown.stderr
    assert mi("scan", cwd=repo).returncode == 2  # no PATH without --staged
    outside = mi("scan", "--staged", tmp_path, cwd=repo)
    assert outside.returncode == 2 and "outside the repository" in outside.stderr


def test_scan_stream_judges_bytes_like_scan_file(tmp_path: Path) -> None:
    for data in (EVIL_PICKLE, PLAIN_PICKLE, SAFE):
        f = tmp_path / "f"
        f.write_bytes(data)
        from_file = scanning.scan_file(f, display="x")
        from_bytes = scanning.scan_stream(io.BytesIO(data), "x")
        assert from_bytes.to_json() == from_file.to_json()
    pointer = b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"a" * 64 + b"\nsize 3\n"
    missing = scanning.scan_stream(io.BytesIO(pointer), "p")
    assert missing.verdict == "not-scanned"
    obj = tmp_path / "obj"
    obj.write_bytes(b"abc")
    found = scanning.scan_stream(io.BytesIO(pointer), "p", lfs_object=lambda oid: obj)
    assert found.verdict == "safe" and "local LFS object" in (found.note or "")
