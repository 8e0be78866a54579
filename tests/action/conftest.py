"""Running the Action's entry point the way the runner does, with a fake GITHUB_* environment.

``action_run`` starts ``python -m ml_integrity.action`` in a subprocess with
the variables GitHub's runner sets for a step (``GITHUB_WORKSPACE`` = a real
temporary git repository, ``GITHUB_EVENT_PATH`` = an event JSON file,
``GITHUB_OUTPUT``, ``GITHUB_STEP_SUMMARY``, ``RUNNER_TEMP``...) plus the
inputs as ``GHA_ML_INTEGRITY_*`` variables, as ``action.yml`` passes them; it
then parses what the runner would read: outputs, summary, annotations.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ANNOTATION = re.compile(r"^::(error|warning|notice)(?: ([^:]*))?::(.*)$")


def git(repo: Path, *args: str, input: bytes | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, input=input, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode().strip()


def unescape(value: str) -> str:
    return (
        value.replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%3A", ":")
        .replace("%2C", ",")
        .replace("%25", "%")
    )


@dataclass
class Annotation:
    level: str
    message: str
    props: dict[str, str] = field(default_factory=dict)


@dataclass
class ActionResult:
    returncode: int
    stdout: str
    stderr: str
    outputs: dict[str, str]
    summary: str
    annotations: list[Annotation]

    def errors(self) -> list[Annotation]:
        return [a for a in self.annotations if a.level == "error"]

    @property
    def report(self) -> dict[str, Any]:
        return json.loads(self.outputs["report"])  # type: ignore[no-any-return]


def parse_outputs(text: str) -> dict[str, str]:
    """Parse a $GITHUB_OUTPUT file the way the runner does (name=value and heredocs)."""
    out: dict[str, str] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line:
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            value = []
            while lines[i] != delimiter:
                value.append(lines[i])
                i += 1
            i += 1
            out[name] = "\n".join(value)
        else:
            name, value_ = line.split("=", 1)
            out[name] = value_
    return out


@dataclass
class ActionEnv:
    """One step's environment. ``workspace`` is a git repository with a bare ``origin``."""

    root: Path
    workspace: Path
    origin: Path
    event_name: str = "pull_request"
    event: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        temp = self.root / "runner-temp"
        temp.mkdir(exist_ok=True)
        event_path = self.root / "event.json"
        event_path.write_text(json.dumps(self.event))
        out = self.root / "github-output"
        summary = self.root / "step-summary"
        out.write_text("")
        summary.write_text("")
        env = {
            **os.environ,
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_WORKSPACE": str(self.workspace),
            "GITHUB_EVENT_NAME": self.event_name,
            "GITHUB_EVENT_PATH": str(event_path),
            "GITHUB_REPOSITORY": "acme/models",
            "GITHUB_SERVER_URL": "http://127.0.0.1:9",
            "GITHUB_API_URL": "http://127.0.0.1:9",
            "GITHUB_REF": "refs/heads/main",
            "GITHUB_SHA": git(self.workspace, "rev-parse", "HEAD"),
            "GITHUB_OUTPUT": str(out),
            "GITHUB_STEP_SUMMARY": str(summary),
            "RUNNER_TEMP": str(temp),
        }
        for name, value in self.inputs.items():
            env["GHA_ML_INTEGRITY_" + name.upper().replace("-", "_")] = value
        env.update(self.extra)
        return env

    def run(self) -> ActionResult:
        proc = subprocess.run(
            [sys.executable, "-m", "ml_integrity.action"],
            cwd=self.workspace,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        annotations = []
        for line in proc.stdout.splitlines():
            m = ANNOTATION.match(line)
            if m:
                props = {}
                if m.group(2):
                    for part in m.group(2).split(","):
                        k, _, v = part.partition("=")
                        props[k] = unescape(v)
                annotations.append(Annotation(m.group(1), unescape(m.group(3)), props))
        return ActionResult(
            proc.returncode,
            proc.stdout,
            proc.stderr,
            parse_outputs((self.root / "github-output").read_text()),
            (self.root / "step-summary").read_text(),
            annotations,
        )


def make_repo(root: Path) -> tuple[Path, Path]:
    """A work tree with one commit, and a bare repository as its ``origin``."""
    origin = root / "origin.git"
    work = root / "work"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    git(work, "remote", "add", "origin", str(origin))
    (work / "README.md").write_text("models\n")
    git(work, "add", "README.md")
    git(work, "commit", "-q", "-m", "initial")
    git(work, "push", "-q", "origin", "HEAD:main")
    return work, origin


@pytest.fixture
def action_env(tmp_path: Path) -> ActionEnv:
    work, origin = make_repo(tmp_path)
    return ActionEnv(tmp_path, work, origin)


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def pr_event(base: str, head: str) -> dict[str, Any]:
    return {
        "pull_request": {
            "number": 7,
            "base": {"sha": base, "ref": "main"},
            "head": {"sha": head, "ref": "feature"},
        }
    }


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, **(extra or {})}
