"""The commands git and pre-commit run on every checkout and commit import nothing heavy."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("cryptography", "sigstore", "requests", "yaml", "rich", "pydantic", "git")


def _imported(*args: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ml_integrity", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    assert "ml_integrity" in names, proc.stderr[-2000:]
    return names


@pytest.mark.parametrize(
    "command",
    [
        ["filter-process", "--help"],
        ["transfer-agent", "--help"],
        ["hook", "--help"],
        ["check-staged", "--help"],
        ["scan", "--help"],
    ],
)
def test_hot_paths_import_no_heavy_dependency(command: list[str]) -> None:
    assert not (_imported(*command) & set(HEAVY))
