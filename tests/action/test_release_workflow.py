"""Static checks of .github/workflows/release.yml: the project signs its own releases."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
RELEASE = REPO_ROOT / ".github" / "workflows" / "release.yml"


def _workflow() -> dict[Any, Any]:
    data = yaml.safe_load(RELEASE.read_text())
    assert isinstance(data, dict)
    return data


def _steps() -> list[dict[str, Any]]:
    jobs = _workflow()["jobs"]
    assert list(jobs) == ["release"]
    steps = jobs["release"]["steps"]
    assert isinstance(steps, list)
    return steps


def test_least_privilege() -> None:
    wf = _workflow()
    assert wf["permissions"] == {}
    assert wf["jobs"]["release"]["permissions"] == {"contents": "write", "id-token": "write"}


def test_third_party_actions_are_pinned_by_commit() -> None:
    for step in _steps():
        uses = step.get("uses")
        if uses and uses != "./":
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", uses), uses


def test_no_expression_inside_a_run_script() -> None:
    for step in _steps():
        assert "${{" not in step.get("run", ""), step.get("name")


def test_the_wheel_and_the_sdist_are_signed_by_this_commits_action_and_attached() -> None:
    signs = [s for s in _steps() if s.get("uses") == "./"]
    paths = {s["with"]["path"] for s in signs}
    assert paths == {"${{ steps.build.outputs.wheel }}", "${{ steps.build.outputs.sdist }}"}
    for step in signs:
        assert step["with"]["mode"] == "sign"
        assert step["with"]["upload-to-release"] == "true"
        assert "signing-key" not in step["with"]  # keyless: the workflow's OIDC identity


def test_the_release_is_verified_as_a_consumer_would() -> None:
    last = _steps()[-1]
    assert "gh release download" in last["run"]
    assert "ml-integrity verify" in last["run"] and "--github-workflow release.yml" in last["run"]


@pytest.mark.github
def test_release_runs_on_github() -> None:
    """Real GitHub only: tagging, the OIDC token, public Fulcio/Rekor and the release API."""
    pytest.skip("runs only on GitHub Actions: see .github/workflows/release.yml")
