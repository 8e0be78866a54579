"""Running real commands (git, git-lfs, ml-integrity) from tests."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Proc:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run(
    args: list[str | Path],
    cwd: Path,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    *,
    input: str | None = None,
    inherit: bool = False,
) -> Proc:
    """Run a command and capture its output; never a traceback from ml-integrity.

    Without ``env`` the command inherits this process's environment; with it,
    ``env`` is the whole environment, or (``inherit``) is added to this
    process's environment.
    """
    full_env = {**os.environ, **(env or {})} if env is None or inherit else dict(env)
    proc = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        input=input,
        timeout=300,
        check=False,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return Proc(proc.returncode, proc.stdout, proc.stderr)
