"""Hints printed by hooks name a command that works where the user is (issue 16):
a user who has only pre-commit has no ``ml-integrity`` on PATH, and no trust
configured means the fix is git config, not signing again."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

from tests.git.hooks.conftest import HooksRepo
from tests.git.hooks.support import SAFE, git, lfs_repo, make_keys, mi, run, write


def test_pre_commit_hint_names_a_command_that_works(tmp_path: Path, hooks_repo: HooksRepo) -> None:
    repo = lfs_repo(tmp_path / "consumer")
    keys = make_keys(tmp_path / "keys")
    git("config", "ml-integrity.publicKey", keys.pub, cwd=repo)
    (repo / ".pre-commit-config.yaml").write_text(hooks_repo.config("ml-integrity"))
    run([sys.executable, "-m", "pre_commit", "install"], repo, hooks_repo.env)
    git("add", ".pre-commit-config.yaml", cwd=repo)
    assert mi("init", cwd=repo).returncode == 0
    write(repo, {"data.bin": SAFE})
    git("add", ".", cwd=repo)
    r = git("commit", "-m", "data", cwd=repo, env=hooks_repo.env, check=False)
    assert r.returncode != 0, r.output
    found = re.search(r"`(\S+ -m ml_integrity) sign-repo --key KEY`", r.output)
    assert found, r.output
    assert "`ml-integrity sign-repo" not in r.output
    # the named command runs from the user's shell (no pre-commit PATH): it signs
    argv: list[str | Path] = [*shlex.split(found.group(1)), "sign-repo", "--key", keys.key]
    assert "pre-commit-home" in str(argv[0])  # the hook's own interpreter
    run(argv, repo)
    r = git("commit", "-m", "data", cwd=repo, env=hooks_repo.env, check=False)
    assert r.returncode == 0, r.output


def test_no_trust_configured_says_git_config(tmp_path: Path) -> None:
    repo = lfs_repo(tmp_path / "r")
    assert mi("init", cwd=repo).returncode == 0
    write(repo, {"data.bin": SAFE})
    git("add", ".", cwd=repo)
    r = mi("check-staged", "--skip", "manifest", cwd=repo)
    assert r.returncode == 1, r.output
    assert "no trust configured" in r.stderr
    assert "git config ml-integrity.publicKey" in r.stderr


def test_the_single_signed_hook_says_git_config_too(tmp_path: Path) -> None:
    # the ml-integrity-signed hook is `verify --staged`: the same fix as check-staged
    repo = lfs_repo(tmp_path / "r")
    assert mi("init", cwd=repo).returncode == 0
    write(repo, {"data.bin": SAFE})
    git("add", ".", cwd=repo)
    r = mi("verify", "--staged", cwd=repo)
    assert r.returncode == 1, r.output
    assert "no trust configured" in r.stderr
    assert "git config ml-integrity.publicKey" in r.stderr


def test_single_hooks_hints_name_the_hook_interpreter_under_pre_commit(tmp_path: Path) -> None:
    repo = lfs_repo(tmp_path / "r")
    assert mi("init", cwd=repo).returncode == 0
    write(repo, {"data.bin": SAFE})
    git("add", ".", cwd=repo)
    r = mi("verify", "--staged", cwd=repo, env={"PRE_COMMIT": "1"})
    assert r.returncode == 1, r.output
    assert f"`{sys.executable} -m ml_integrity sign-repo" in r.stderr, r.stderr
    assert "`ml-integrity sign-repo" not in r.stderr
