"""Fixtures of the hook tests.

- ``lfs_home`` (autouse): git-lfs's filters in the per-test global config;
- ``hooks_repo`` (session): this project committed into a throw-away
  repository that consumer repositories reference as a pre-commit hooks
  repository (``repo: <path>``, ``rev: <sha>``), with one ``PRE_COMMIT_HOME``
  for the whole session, so pre-commit builds the hooks' virtualenv once.
  pip runs offline (``PIP_NO_INDEX``) from ``.cache/hooks-wheels``, which
  ``tests/tools/install.sh`` fills.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.git.hooks.support import REPO_ROOT, run


@pytest.fixture(autouse=True)
def lfs_home(isolated_env: Path) -> Path:
    if shutil.which("git-lfs") is None:
        pytest.fail("git-lfs is not installed: run tests/tools/install.sh")
    run(["git", "lfs", "install", "--skip-repo"], isolated_env)
    return isolated_env


# --- the pre-commit framework -------------------------------------------------------


@dataclass(frozen=True)
class HooksRepo:
    """A snapshot of this project as a pre-commit hooks repository, with a shared env."""

    path: Path
    rev: str
    env: dict[str, str]
    """PRE_COMMIT_HOME (shared by every test: its venv is built once) and offline pip."""

    def config(self, *hook_ids: str, args: dict[str, list[str]] | None = None) -> str:
        lines = ["repos:", f"- repo: {self.path}", f"  rev: {self.rev}", "  hooks:"]
        for hook in hook_ids:
            lines.append(f"  - id: {hook}")
            if args and hook in args:
                lines.append(f"    args: {args[hook]!r}")
        return "\n".join(lines) + "\n"


HOOK_IDS = ("ml-integrity-scan", "ml-integrity-manifest", "ml-integrity-signed")
"""The single hooks; ``ml-integrity`` runs the three in one process."""


@pytest.fixture(scope="session")
def hooks_repo(tmp_path_factory: pytest.TempPathFactory) -> HooksRepo:
    """Commit this worktree's package into a throw-away repository, then let pre-commit
    build its environment once (pip offline, from the wheelhouse of install.sh)."""
    wheels = REPO_ROOT / ".cache" / "hooks-wheels"
    if not (wheels / ".complete").is_file():
        pytest.fail("the offline wheelhouse is missing: run tests/tools/install.sh")
    root = tmp_path_factory.mktemp("pre-commit")
    home = root / "home"
    env = hermetic_env(home)
    snap = root / "ml-integrity"
    snap.mkdir()
    for name in ("pyproject.toml", "README.md", ".pre-commit-hooks.yaml"):
        shutil.copy(REPO_ROOT / name, snap / name)
    for tree in ("src", "hooks"):
        shutil.copytree(
            REPO_ROOT / tree, snap / tree, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    dated = {
        **env,
        "GIT_AUTHOR_DATE": "2025-01-01T00:00:00Z",
        "GIT_COMMITTER_DATE": "2025-01-01T00:00:00Z",
    }
    run(["git", "init", "-q"], snap, dated, inherit=False)
    run(["git", "add", "-A"], snap, dated, inherit=False)
    run(["git", "commit", "-q", "-m", "snapshot"], snap, dated, inherit=False)
    rev = run(["git", "rev-parse", "HEAD"], snap, dated, inherit=False).stdout.strip()
    shared = {
        "PRE_COMMIT_HOME": str(root / "pre-commit-home"),
        "PRE_COMMIT_COLOR": "never",
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheels),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "VIRTUALENV_OVERRIDE_APP_DATA": str(root / "virtualenv-data"),
    }
    repo = HooksRepo(snap, rev, shared)
    # build the hooks' environment now, once (the expensive part: about 10 s)
    warm = root / "warm"
    run(["git", "init", "-q", warm], root, env, inherit=False)
    (warm / ".pre-commit-config.yaml").write_text(repo.config("ml-integrity", *HOOK_IDS))
    run(
        [sys.executable, "-m", "pre_commit", "install-hooks"],
        warm,
        {**env, **shared},
        inherit=False,
    )
    return repo


def hermetic_env(home: Path) -> dict[str, str]:
    """The environment of a session fixture: isolated HOME and git config (see conftest)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GIT_", "ML_INTEGRITY_", "XDG_", "PRE_COMMIT", "PIP_"))
    }
    home.mkdir(parents=True, exist_ok=True)
    gitconfig = home / ".gitconfig"
    gitconfig.write_text(
        "[init]\n\tdefaultBranch = main\n[user]\n\tname = Test User\n\temail = test@example.com\n"
    )
    env.update(
        HOME=str(home),
        GIT_CONFIG_GLOBAL=str(gitconfig),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_TERMINAL_PROMPT="0",
    )
    return env
