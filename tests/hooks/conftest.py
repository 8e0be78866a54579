"""Fixtures of the hook tests: git-lfs's filters in the per-test global config."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.hooks.support import run


@pytest.fixture(autouse=True)
def lfs_home(isolated_env: Path) -> Path:
    if shutil.which("git-lfs") is None:
        pytest.fail("git-lfs is not installed: run tests/tools/install.sh")
    run(["git", "lfs", "install", "--skip-repo"], isolated_env)
    return isolated_env
