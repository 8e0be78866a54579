"""install / uninstall / init, hook chaining, and the manifest at commit time."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.git.lfs.lfs_support import CONTENT, World, git, is_pointer, lfs_object, mi, sha256

HOOK_NAMES = ("post-checkout", "post-merge", "pre-push", "pre-commit")


def local_config(repo: Path) -> str:
    return git("config", "--local", "--list", cwd=repo).stdout


def snapshot_hooks(repo: Path) -> dict[str, bytes]:
    hooks = repo / ".git" / "hooks"
    return {
        p.name: p.read_bytes() for p in sorted(hooks.iterdir()) if not p.name.endswith(".sample")
    }


def test_install_chains_existing_hook_and_uninstall_restores_exactly(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    git("init", "-q", repo, cwd=tmp_path)
    git("lfs", "install", "--local", cwd=repo)  # git-lfs's own hooks and local filter config
    custom = repo / ".git" / "hooks" / "post-checkout"
    lfs_hook = custom.read_text()
    assert "git lfs post-checkout" in lfs_hook
    # a user hook that also records that it ran (and keeps git-lfs's line)
    custom.write_text(lfs_hook + 'echo "custom $*" >> "$(git rev-parse --git-dir)/custom.log"\n')
    custom.chmod(0o755)
    git("config", "--local", "filter.lfs.process", "git-lfs filter-process --skip", cwd=repo)
    before_config, before_hooks = local_config(repo), snapshot_hooks(repo)

    r = mi("install", cwd=repo)
    assert r.returncode == 0, r.output
    assert "hook post-checkout: chained" in r.stdout
    assert (
        repo / ".git/hooks/post-checkout.pre-ml-integrity"
    ).read_text() == custom.read_text().replace(
        custom.read_text(),
        lfs_hook + 'echo "custom $*" >> "$(git rev-parse --git-dir)/custom.log"\n',
    )
    assert "ml_integrity filter-process" in git("config", "filter.lfs.process", cwd=repo).stdout
    assert git("config", "lfs.standalonetransferagent", cwd=repo).stdout.strip() == "ml-integrity"

    # the chained user hook still runs (with git's arguments)
    git("commit", "-q", "--allow-empty", "-m", "x", cwd=repo)
    git("checkout", "-q", "-b", "other", cwd=repo)
    assert "custom " in (repo / ".git" / "custom.log").read_text()

    # a later `git lfs install` breaks nothing: it keeps our hooks
    r = git("lfs", "install", cwd=repo, check=False)
    assert "ml-integrity-hook" in (repo / ".git/hooks/post-checkout").read_text()
    assert "ml_integrity filter-process" in git("config", "filter.lfs.process", cwd=repo).stdout

    r = mi("uninstall", cwd=repo)
    assert r.returncode == 0, r.output
    assert local_config(repo) == before_config
    assert snapshot_hooks(repo) == before_hooks
    assert not (repo / ".git" / "ml-integrity").exists()


def test_install_in_a_fresh_repo_and_uninstall(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    git("init", "-q", repo, cwd=tmp_path)
    before_config, before_hooks = local_config(repo), snapshot_hooks(repo)
    assert mi("install", "--strict", cwd=repo).returncode == 0
    assert git("config", "--bool", "ml-integrity.strict", cwd=repo).stdout.strip() == "true"
    for name in HOOK_NAMES:
        assert os.access(repo / ".git" / "hooks" / name, os.X_OK)
    assert mi("install", cwd=repo).returncode == 0  # idempotent
    assert mi("uninstall", cwd=repo).returncode == 0
    assert local_config(repo) == before_config
    assert snapshot_hooks(repo) == before_hooks
    r = mi("uninstall", cwd=repo)
    assert r.returncode == 0 and "nothing to undo" in r.stderr


def test_install_needs_git_lfs(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    git("init", "-q", repo, cwd=tmp_path)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "git").symlink_to(os.popen("command -v git").read().strip())
    r = mi("install", cwd=repo, env={**os.environ, "PATH": str(bindir)})
    assert r.returncode == 3, r.output
    assert "git-lfs is not installed" in r.stderr and "apt-get install git-lfs" in r.stderr


def test_pre_push_still_uploads_lfs_objects(world: World, tmp_path: Path) -> None:
    remote = tmp_path / "new-remote.git"
    git("init", "-q", "--bare", remote, cwd=tmp_path)
    repo = tmp_path / "w"
    git("clone", "-q", world.remote, repo, cwd=tmp_path)
    assert mi("install", cwd=repo).returncode == 0
    git("config", "ml-integrity.publicKey", world.pub, cwd=repo)
    (repo / "new.bin").write_bytes(b"brand new weights\n")
    git("add", "new.bin", cwd=repo)
    assert mi("sign-repo", "--key", world.key, cwd=repo).returncode == 0  # pre-push checks it
    git("commit", "-q", "-m", "new", cwd=repo)
    git("remote", "add", "mirror", remote, cwd=repo)
    r = git("push", "mirror", "main", cwd=repo, check=False)
    assert r.returncode == 0, r.output
    for data in [b"brand new weights\n", *CONTENT.values()]:
        assert lfs_object(remote, sha256(data)).is_file()


def test_manifest_follows_commit_a_and_commit_path(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    git("init", "-q", repo, cwd=tmp_path)
    git("lfs", "track", "*.bin", cwd=repo)
    r = mi("init", cwd=repo)
    assert r.returncode == 0, r.output
    assert json.loads((repo / ".ml-integrity/manifest.json").read_text())["entries"] == []
    (repo / "a.bin").write_bytes(b"v1\n")
    (repo / "b.bin").write_bytes(b"b1\n")
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "one", cwd=repo)

    def committed() -> dict[str, str]:
        doc = json.loads(git("show", "HEAD:.ml-integrity/manifest.json", cwd=repo).stdout)
        return {e["path"]: e["sha256"] for e in doc["entries"] if e["path"].endswith(".bin")}

    assert committed() == {"a.bin": sha256(b"v1\n"), "b.bin": sha256(b"b1\n")}
    (repo / "a.bin").write_bytes(b"v2\n")
    git("commit", "-q", "-a", "-m", "commit -a", cwd=repo)
    assert committed()["a.bin"] == sha256(b"v2\n")
    (repo / "a.bin").write_bytes(b"v3\n")
    (repo / "b.bin").write_bytes(b"b3 not committed\n")
    git("commit", "-q", "-m", "commit PATH", "a.bin", cwd=repo)
    assert committed() == {"a.bin": sha256(b"v3\n"), "b.bin": sha256(b"b1\n")}
    assert git("status", "--porcelain", cwd=repo).stdout.strip() == "M b.bin"


def test_sign_repo_then_verify_with_trust_from_git_config(world: World, tmp_path: Path) -> None:
    repo = tmp_path / "c"
    git("clone", "-q", world.remote, repo, cwd=tmp_path)
    # no trust configured: fail closed, with a hint
    r = mi("install", cwd=repo)
    assert r.returncode == 0
    (repo / "a.bin").unlink()
    r = git("checkout", "--", "a.bin", cwd=repo, check=False)
    assert r.returncode == 1, r.output
    assert "no trust" in r.stderr and is_pointer(repo / "a.bin")
    git("config", "ml-integrity.publicKey", world.pub, cwd=repo)
    r = mi("pull", cwd=repo)
    assert r.returncode == 0, r.output
    assert (repo / "a.bin").read_bytes() == CONTENT["a.bin"]


def test_global_install_verifies_plain_git_clone(world: World, tmp_path: Path) -> None:
    home_config = Path(os.environ["GIT_CONFIG_GLOBAL"])
    before = home_config.read_text()
    r = mi("install", "--global", cwd=tmp_path)
    assert r.returncode == 0, r.output
    git("config", "--global", "ml-integrity.publicKey", world.pub, cwd=tmp_path)
    r = git("clone", "-q", world.remote, tmp_path / "ok", cwd=tmp_path, check=False)
    assert r.returncode == 0, r.output
    assert (tmp_path / "ok" / "a.bin").read_bytes() == CONTENT["a.bin"]
    r = git(
        "clone", "-q", "-b", "tampered", world.remote, tmp_path / "bad", cwd=tmp_path, check=False
    )
    assert "REFUSED a.bin" in r.stderr
    assert is_pointer(tmp_path / "bad" / "a.bin")
    # git lfs install afterwards (refreshing git-lfs's global settings)
    git("lfs", "install", "--skip-repo", cwd=tmp_path, check=False)
    assert "ml_integrity" in git("config", "--global", "filter.lfs.process", cwd=tmp_path).stdout
    git("config", "--global", "--unset", "ml-integrity.publicKey", cwd=tmp_path)
    r = mi("uninstall", "--global", cwd=tmp_path)
    assert r.returncode == 0, r.output
    assert home_config.read_text() == before


def test_install_honours_core_hooks_path(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    git("init", "-q", repo, cwd=tmp_path)
    hooks = tmp_path / "shared-hooks"
    hooks.mkdir()
    (hooks / "pre-push").write_text("#!/bin/sh\ncat >/dev/null\necho shared-pre-push\n")
    (hooks / "pre-push").chmod(0o755)
    git("config", "core.hooksPath", hooks, cwd=repo)
    assert mi("install", cwd=repo).returncode == 0
    assert "ml-integrity-hook" in (hooks / "pre-push").read_text()
    assert (hooks / "pre-push.pre-ml-integrity").read_text().endswith("echo shared-pre-push\n")
    assert not (repo / ".git" / "hooks" / "post-checkout").exists()
    assert mi("uninstall", cwd=repo).returncode == 0
    assert sorted(p.name for p in hooks.iterdir()) == ["pre-push"]
    assert (hooks / "pre-push").read_text().endswith("echo shared-pre-push\n")
