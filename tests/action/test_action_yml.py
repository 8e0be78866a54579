"""Static checks of action.yml, the self-test workflow and the install file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
ACTION = REPO_ROOT / "action.yml"
SELFTEST = REPO_ROOT / ".github" / "workflows" / "selftest.yml"
DOCS = REPO_ROOT / "docs" / "action.md"
REQUIREMENTS = REPO_ROOT / "install" / "requirements.txt"


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def env_name(input_name: str) -> str:
    return "GHA_ML_INTEGRITY_" + input_name.upper().replace("-", "_")


def test_no_expression_inside_any_run_script() -> None:
    # Template injection: ${{ ... }} in a run: script is pasted into the shell
    # text before it runs. Inputs must reach the code only through env:.
    for step in load(ACTION)["runs"]["steps"]:
        assert "${{" not in step.get("run", ""), step["name"]


def test_every_input_reaches_the_code_through_env() -> None:
    action = load(ACTION)
    steps = {s["id"]: s for s in action["runs"]["steps"]}
    env = steps["run"]["env"]
    for name in action["inputs"]:
        if name == "internal-be-careful-python":
            assert (
                steps["setup"]["env"][env_name(name)] == "${{ inputs.internal-be-careful-python }}"
            )
            continue
        assert env[env_name(name)] == f"${{{{ inputs.{name} }}}}", name


def test_the_code_reads_only_variables_action_yml_sets() -> None:
    package = REPO_ROOT / "src" / "ml_integrity" / "action"
    source = "\n".join(p.read_text() for p in sorted(package.glob("*.py")))
    read = set(re.findall(r'ENV_PREFIX \+ "([A-Z_]+)"', source))
    read |= set(re.findall(r'_choice\(env, "([A-Z_]+)"', source))
    read |= set(re.findall(r'(?<![.\w])get\("([A-Z_]+)"\)', source))
    set_by_yml = {
        k.removeprefix("GHA_ML_INTEGRITY_") for k in load(ACTION)["runs"]["steps"][1]["env"]
    }
    assert read, "no input variables found in _action.py"
    assert read <= set_by_yml, read - set_by_yml


def test_outputs_come_from_the_run_step() -> None:
    for name, spec in load(ACTION)["outputs"].items():
        assert spec["value"] == f"${{{{ steps.run.outputs.{name} }}}}"
        assert spec["description"]


def test_composite_and_every_step_has_a_shell() -> None:
    action = load(ACTION)
    assert action["runs"]["using"] == "composite"
    for step in action["runs"]["steps"]:
        assert step["shell"] == "bash"


def test_docs_cover_every_input_and_output() -> None:
    docs = DOCS.read_text()
    action = load(ACTION)
    for name in [*action["inputs"], *action["outputs"]]:
        assert f"`{name}`" in docs, name
    for permission in ("id-token: write", "contents: write", "security-events: write"):
        assert permission in docs


def test_requirements_are_pinned_with_hashes() -> None:
    text = REQUIREMENTS.read_text()
    requirements = re.findall(r"^([A-Za-z0-9_.-]+)==([^ ;\\]+)", text, re.M)
    assert requirements
    blocks = re.split(r"\n(?=[A-Za-z])", text.split("\n", 2)[2])
    for block in blocks:
        if block.strip():
            assert "--hash=sha256:" in block, block.splitlines()[0]
    names = {n.lower() for n, _ in requirements}
    assert "hatchling" in names  # builds ml-integrity with --no-build-isolation
    import tomllib

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    for dependency in project["dependencies"]:  # every runtime dependency is pinned
        name = re.split(r"[<>=!~ ;\[]", dependency, maxsplit=1)[0].lower()
        assert name in names, f"{name} (pyproject.toml) is not in install/requirements.txt"


def test_selftest_workflow_is_locked_down() -> None:
    wf: dict[Any, Any] = load(SELFTEST)
    assert wf["permissions"] == {}
    on: Any = wf["on"] if "on" in wf else wf[True]  # YAML 1.1 reads the key `on` as True
    assert "pull_request" in on and "push" in on
    for name, job in wf["jobs"].items():
        assert "permissions" in job, name
        uses_self = False
        for step in job["steps"]:
            uses = step.get("uses")
            if uses is None:
                assert "${{ inputs." not in step.get("run", "")
                continue
            if uses == "./":
                uses_self = True
                continue
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", uses), uses
            if uses.startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False
        assert uses_self, name
    raw = SELFTEST.read_text()
    for line in raw.splitlines():
        if "uses:" in line and "@" in line:
            assert re.search(r"@[0-9a-f]{40} # v\d", line), line
    assert wf["jobs"]["sign-staging"]["permissions"]["id-token"] == "write"


@pytest.mark.github
def test_selftest_runs_on_github() -> None:
    """Real GitHub only: .github/workflows/selftest.yml runs `uses: ./` there.

    It verifies a model on every pull request and keyless-signs one against
    Sigstore staging (a genuine OIDC token, real Fulcio and Rekor) on tags.
    Nothing here can reproduce that offline; this marker records it.
    """
    pytest.skip("runs only on GitHub Actions: see .github/workflows/selftest.yml")
