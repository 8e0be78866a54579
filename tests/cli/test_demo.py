"""`make demo`'s script (examples/demo.sh) end to end, so that it cannot break unseen.

It runs in a temporary folder with its own HOME and git config (the script sets
them up); real git and git-lfs, the ml-integrity of this test run on PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("git-lfs") is None, reason="needs git-lfs")
def test_the_demo_signs_verifies_refuses_and_recovers(tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "ml-integrity").exists(), "the console script of this environment"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "ML_INTEGRITY_"))}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", TMPDIR=str(tmp_path))
    proc = subprocess.run(
        ["bash", str(REPO_ROOT / "examples" / "demo.sh")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Demo complete" in out
    assert "REFUSED model/model.safetensors" in out
    assert "Traceback" not in out
    assert "EOF" not in out  # no helper's complaint on stderr
