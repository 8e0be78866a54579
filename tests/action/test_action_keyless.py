"""Keyless signing and verification through the Action, against loopback Sigstore doubles.

The doubles come from ``tests/support/sigstore_doubles.py``: a stand-in for
GitHub Actions' OIDC token endpoint (``ACTIONS_ID_TOKEN_REQUEST_URL``) and a
fake Fulcio + Rekor v1 (npm ``@sigstore/mock`` behind a Node adapter), wired
in with the ``trust-config`` / ``trusted-root`` inputs. sigstore-python's
real signing and verification code runs; the GitHub REST API is the
stand-in from ``github_api.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import ActionEnv, commit_all
from .github_api import TOKEN, FakeGitHub, fake_github

pytest.importorskip("ml_integrity.trust.sigstore", reason="needs the Sigstore backend")
pytest.importorskip("ml_integrity.git.repository", reason="needs the LFS repository layer")
sigstore_fixtures = pytest.importorskip("tests.support.sigstore_fixtures")
fake_sigstore = sigstore_fixtures.fake_sigstore
oidc_secret = sigstore_fixtures.oidc_secret
oidc_server = sigstore_fixtures.oidc_server
sigstore_trust_config = sigstore_fixtures.sigstore_trust_config

REPO = "octo-org/models"  # the repository in the OIDC stand-in's token claims


@pytest.fixture
def gh() -> Iterator[FakeGitHub]:
    with fake_github() as fake:
        yield fake


def test_release_signed_keyless_then_verified_by_identity(
    action_env: ActionEnv,
    gh: FakeGitHub,
    oidc_server: object,
    sigstore_trust_config: Path,
) -> None:
    model = action_env.workspace / "models" / "tiny"
    model.mkdir(parents=True)
    (model / "config.json").write_text('{"layers": 2}\n')
    (model / "weights.bin").write_bytes(b"w" * 256)
    commit_all(action_env.workspace, "model")
    release = gh.add_release("v1.0")
    action_env.event_name = "release"
    action_env.event = {"action": "published", "release": release}
    action_env.extra.update(
        {"GITHUB_REF": "refs/tags/v1.0", "GITHUB_API_URL": gh.url, **oidc_server.env()}  # type: ignore[attr-defined]
    )
    action_env.inputs.update(
        {
            "mode": "sign",
            "path": "models/tiny",
            "trust-config": str(sigstore_trust_config),
            "github-token": TOKEN,
        }
    )
    signed = action_env.run()
    assert signed.returncode == 0, signed.stdout + signed.stderr
    log_index = signed.outputs["log-index"]
    assert log_index.isdigit()
    bundle = Path(signed.outputs["bundle-path"])
    assert json.loads(bundle.read_text())["verificationMaterial"]["tlogEntries"]
    assert gh.asset_data("v1.0", "tiny.sig") == bundle.read_bytes()
    assert f"**Transparency log index:** {log_index}" in signed.summary
    assert "Sigstore identity https://github.com/octo-org/models/" in signed.report["signer"]

    # A later job verifies the model against the release workflow's identity.
    action_env.event_name = "push"
    action_env.event = {}
    action_env.inputs = {
        "path": "models/tiny",
        "bundle": str(bundle),
        "github-repository": REPO,
        "github-workflow": "release.yml",
        "trusted-root": str(sigstore_trust_config),
        "scan": "all",
    }
    ok = action_env.run()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.outputs["verified"] == "true"
    assert any(REPO in t for t in ok.report["trust"])

    action_env.inputs["github-repository"] = "someone-else/models"
    wrong = action_env.run()
    assert wrong.returncode == 1
    assert wrong.outputs["verified"] == "false"
    assert wrong.errors()


def test_keyless_verify_needs_a_complete_identity(action_env: ActionEnv) -> None:
    action_env.event_name = "push"
    action_env.inputs.update(
        {"path": ".", "bundle": "x.sig", "issuer": "https://accounts.google.com"}
    )
    result = action_env.run()
    assert result.returncode == 2
    assert "issuer alone would trust every identity" in result.errors()[0].message
