"""The Action's set-up step (install/setup.sh) for real: venv, hash-pinned install, --no-deps.

PyPI is replaced by a local folder of the very wheels install/requirements.txt
pins (tests/tools/install.sh downloads them once); pip checks every hash.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
WHEELS = REPO_ROOT / ".cache" / "action-wheels"

pytestmark = pytest.mark.skipif(
    not (WHEELS / ".complete").exists(), reason="run tests/tools/install.sh (wheels for setup.sh)"
)


def copy_action(dest: Path) -> Path:
    dest.mkdir()
    for name in ("action.yml", "pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, dest / name)
    shutil.copytree(REPO_ROOT / "install", dest / "install")
    for tree in ("src", "hooks"):
        shutil.copytree(
            REPO_ROOT / tree, dest / tree, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    return dest


def run_setup(action: Path, temp: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    temp.mkdir(exist_ok=True)
    output = temp / "github-output"
    output.write_text("")
    env = {
        **os.environ,
        "GITHUB_ACTION_PATH": str(action),
        "GITHUB_OUTPUT": str(output),
        "RUNNER_TEMP": str(temp),
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(WHEELS),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        ["bash", str(action / "install" / "setup.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc, output


def test_setup_installs_pinned_dependencies_and_the_action(tmp_path: Path) -> None:
    action = copy_action(tmp_path / "action")
    proc, output = run_setup(action, tmp_path / "temp")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines())
    python = Path(outputs["python"])
    assert python.is_relative_to(tmp_path / "temp")
    assert outputs["pythonpath"] == ""
    # The installed ml-integrity (not this checkout) runs the entry point.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["GHA_ML_INTEGRITY_MODE"] = "publish"
    run = subprocess.run(
        [str(python), "-c", "import ml_integrity, sys; print(ml_integrity.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert run.returncode == 0 and str(tmp_path / "temp") in run.stdout, run.stderr
    bad = subprocess.run(
        [str(python), "-m", "ml_integrity.action"], capture_output=True, text=True, env=env
    )
    assert bad.returncode == 2
    assert "::error title=ml-integrity%3A configuration error::input mode" in bad.stdout
    assert not (action / "build").exists()


def test_setup_refuses_a_wheel_whose_hash_differs(tmp_path: Path) -> None:
    action = copy_action(tmp_path / "action")
    req = action / "install" / "requirements.txt"
    lines = req.read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if re.match(r"[A-Za-z]", line))
    # Every hash of the first requirement changed: whatever wheel pip picks is refused.
    i = first + 1
    while i < len(lines) and lines[i].startswith(" "):
        lines[i] = re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, lines[i])
        i += 1
    assert i > first + 1
    tampered = "\n".join(lines) + "\n"
    req.write_text(tampered)
    proc, output = run_setup(action, tmp_path / "temp")
    assert proc.returncode != 0
    assert "HASHES" in proc.stderr.upper()
    assert "python=" not in output.read_text()


def test_internal_python_skips_the_venv(tmp_path: Path) -> None:
    action = copy_action(tmp_path / "action")
    temp = tmp_path / "temp"
    temp.mkdir()
    output = temp / "github-output"
    output.write_text("")
    env = {
        **os.environ,
        "GITHUB_ACTION_PATH": str(action),
        "GITHUB_OUTPUT": str(output),
        "RUNNER_TEMP": str(temp),
        "GHA_ML_INTEGRITY_INTERNAL_BE_CAREFUL_PYTHON": sys.executable,
    }
    proc = subprocess.run(
        ["bash", str(action / "install" / "setup.sh")], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert output.read_text() == f"python={sys.executable}\npythonpath={action}/src\n"
    assert not (temp / "ml-integrity-venv").exists()

    env["GHA_ML_INTEGRITY_INTERNAL_BE_CAREFUL_PYTHON"] = "/bin/false"
    proc = subprocess.run(
        ["bash", str(action / "install" / "setup.sh")], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "::error" in proc.stdout
