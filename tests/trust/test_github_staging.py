"""Keyless signing with GitHub's real OIDC token against Sigstore staging.

Runs only in ``.github/workflows/sigstore-staging.yml`` (``id-token: write``,
``ML_INTEGRITY_GITHUB_TESTS=1``); skipped everywhere else. No stand-ins: the
token comes from GitHub, the certificate from staging Fulcio, the log entry
from staging Rekor, the trust root from staging's TUF repository.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import CLI

pytestmark = [
    pytest.mark.github,
    pytest.mark.skipif(
        os.environ.get("ML_INTEGRITY_GITHUB_TESTS") != "1",
        reason="needs a real GitHub Actions OIDC token (ML_INTEGRITY_GITHUB_TESTS=1)",
    ),
]

# conftest's isolated_env removes GITHUB_* and ACTIONS_* for each test; keep the real ones.
GITHUB_ENV = {k: v for k, v in os.environ.items() if k.startswith(("GITHUB_", "ACTIONS_"))}
GITHUB_ENV.update({k: v for k, v in os.environ.items() if k in ("CI", "RUNNER_TEMP")})


def test_sign_with_github_token_and_verify_on_staging(cli: CLI, tmp_path: Path) -> None:
    repository = GITHUB_ENV["GITHUB_REPOSITORY"]
    workflow_ref = GITHUB_ENV["GITHUB_WORKFLOW_REF"]  # OWNER/REPO/PATH@REF
    path_at_ref = workflow_ref.removeprefix(repository + "/")
    workflow, ref = path_at_ref.split("@", 1)
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(os.urandom(1024))
    (model / "config.json").write_text('{"staging": true}')
    bundle = tmp_path / "model.sig"

    signed = cli("sign", model, "--sigstore", "--staging", "--bundle", bundle, env=GITHUB_ENV)
    assert signed.returncode == 0, signed.stderr

    github = ["--github-repository", repository, "--github-workflow", workflow, "--github-ref", ref]
    ok = cli("verify", model, "--bundle", bundle, "--staging", *github)
    assert ok.returncode == 0, ok.stderr
    identity = [
        "--identity",
        f"https://github.com/{workflow_ref}",
        "--issuer",
        "https://token.actions.githubusercontent.com",
    ]
    assert cli("verify", model, "--bundle", bundle, "--staging", *identity).returncode == 0

    other_repo = ["--github-repository", "octo-org/not-this-one", "--github-ref", ref]
    assert cli("verify", model, "--bundle", bundle, "--staging", *other_repo).returncode == 1
    production = cli("verify", model, "--bundle", bundle, *github)
    assert production.returncode == 1
