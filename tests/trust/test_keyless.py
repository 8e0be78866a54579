"""Keyless signing end to end, on loopback, and its failure modes.

Stand-ins (``tests/support/sigstore_doubles.py``), because the real services
cannot run here:

- ``oidc_server`` stands in for GitHub Actions' OIDC token endpoint
  (``ACTIONS_ID_TOKEN_REQUEST_URL``): it mints HS256 JWTs with GitHub's claims;
- ``fake_sigstore`` stands in for Sigstore's Fulcio (certificate authority and
  CT log) and Rekor v1 (transparency log): npm's ``@sigstore/mock`` behind our
  Node adapter ``tests/tools/sigstore-mock/server.js``.

Everything else is real: our CLI, sigstore-python's ambient credential
detection, CSR, SCT check, log submission and all of its verification, and
model_signing 1.1.1 verifying our keyless bundle.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ml_integrity.errors import ConfigError, Error, NetworkError, OperationalError, UsageError
from ml_integrity.trust import sigstore_roots as _sigstore_roots
from ml_integrity.trust.sigstore import SigstoreSigner
from tests.conftest import CLI
from tests.support.sigstore_doubles import (
    GITHUB_ISSUER,
    FakeSigstore,
    OIDCTokenServer,
    closed_port_url,
    mint_jwt,
)

REPO = "octo-org/models"
WORKFLOW_SAN = f"https://github.com/{REPO}/.github/workflows/release.yml@refs/heads/main"
STATEMENT = json.dumps(
    {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "m", "digest": {"sha256": "ab" * 32}}],
        "predicateType": "https://model_signing/signature/v1.0",
        "predicate": {"resources": []},
    }
).encode()


def make_model(root: Path) -> Path:
    model = root / "model"
    model.mkdir()
    (model / "weights.safetensors").write_bytes(os.urandom(4096))
    (model / "config.json").write_text('{"layers": 2}')
    return model


def github_env(oidc: OIDCTokenServer, **extra: str) -> dict[str, str]:
    return {**oidc.env(), "GITHUB_EVENT_NAME": "push", **extra}


def email_claims() -> dict[str, str]:
    return {"iss": "https://accounts.google.com", "sub": "1029384756", "email": "alice@example.com"}


GITHUB_TRUST = [
    "--github-repository",
    REPO,
    "--github-workflow",
    "release.yml",
    "--github-ref",
    "refs/heads/main",
]


def test_ambient_github_credential_signs_and_verifies(
    cli: CLI, tmp_path: Path, oidc_server: OIDCTokenServer, sigstore_trust_config: Path
) -> None:
    model = make_model(tmp_path)
    bundle = tmp_path / "model.sig"
    r = cli(
        "sign", model, "--sigstore", "--trust-config", sigstore_trust_config, "--bundle", bundle,
        "--json",
        env=github_env(oidc_server),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (
        json.loads(r.stdout)["signer"]
        == f"Sigstore identity {WORKFLOW_SAN} (issuer {GITHUB_ISSUER})"
    )
    # the token was fetched the way GitHub hands it out
    (request,) = oidc_server.requests
    assert request["audience"] == "sigstore"
    assert request["api-version"] == "2.0"
    assert request["authorization"] == f"bearer {oidc_server.request_token}"

    root = ["--trusted-root", sigstore_trust_config]
    ok = cli("verify", model, "--bundle", bundle, *root, *GITHUB_TRUST, "--json")
    assert ok.returncode == 0, ok.stderr
    details = json.loads(ok.stdout)["details"]
    assert details["identity"] == WORKFLOW_SAN
    assert details["github"]["repository"] == REPO

    production = cli("verify", model, "--bundle", bundle, "--offline", *GITHUB_TRUST)
    assert production.returncode == 1
    assert "does not chain to the Sigstore production" in production.stderr

    other_ref = [*GITHUB_TRUST[:-1], "refs/heads/feature"]
    wrong = cli("verify", model, "--bundle", bundle, *root, *other_ref)
    assert wrong.returncode == 1
    assert "ref refs/heads/feature" in wrong.stderr and "ref refs/heads/main" in wrong.stderr

    other_workflow = cli(
        "verify", model, "--bundle", bundle, *root, "--github-repository", REPO,
        "--github-workflow", ".github/workflows/ci.yml",
    )  # fmt: skip
    assert other_workflow.returncode == 1

    (model / "config.json").write_text('{"layers": 3}')
    tampered = cli("verify", model, "--bundle", bundle, *root, *GITHUB_TRUST)
    assert tampered.returncode == 1
    assert "changed: config.json" in tampered.stderr


def test_our_keyless_bundle_verifies_with_model_signing(
    cli: CLI, tmp_path: Path, oidc_server: OIDCTokenServer, sigstore_trust_config: Path
) -> None:
    model = make_model(tmp_path)
    bundle = tmp_path / "model.sig"
    r = cli(
        "sign", model, "--sigstore", "--trust-config", sigstore_trust_config, "--bundle", bundle,
        env=github_env(oidc_server),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    exe = Path(sys.executable).parent / "model_signing"
    if not exe.exists():
        pytest.fail("model-signing 1.1.1 is part of the test environment: pip install -e '.[test]'")
    args = [
        exe, "verify", "sigstore", "--signature", bundle, "--identity", WORKFLOW_SAN,
        "--identity_provider", GITHUB_ISSUER, "--trust_config", sigstore_trust_config, model,
    ]  # fmt: skip
    ms = subprocess.run(list(map(str, args)), capture_output=True, text=True, timeout=300)
    assert ms.returncode == 0, ms.stderr
    wrong = subprocess.run(
        [*map(str, args[:6]), "https://github.com/someone/else", *map(str, args[7:])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert wrong.returncode != 0


def test_explicit_token_and_email_identity(
    cli: CLI, tmp_path: Path, oidc_server: OIDCTokenServer, sigstore_trust_config: Path
) -> None:
    oidc_server.claims = email_claims()
    model = make_model(tmp_path)
    bundle = tmp_path / "model.sig"
    token = oidc_server.mint()
    r = cli(
        "sign", model, "--sigstore", "--identity-token", token,
        "--trust-config", sigstore_trust_config, "--bundle", bundle,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "alice@example.com" in r.stdout
    root = ["--trusted-root", sigstore_trust_config]
    ok = cli(
        "verify", model, "--bundle", bundle, *root,
        "--identity", "alice@example.com", "--issuer", "https://accounts.google.com",
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    regex = cli(
        "verify", model, "--bundle", bundle, *root,
        "--identity-regex", r"[a-z]+@example\.com", "--issuer", "https://accounts.google.com",
    )  # fmt: skip
    assert regex.returncode == 0, regex.stderr
    # the token may also come from the environment (not visible in the process list)
    again = cli(
        "sign", model, "--sigstore", "--trust-config", sigstore_trust_config,
        "--bundle", tmp_path / "again.sig",
        env={"ML_INTEGRITY_IDENTITY_TOKEN": oidc_server.mint()},
    )  # fmt: skip
    assert again.returncode == 0, again.stderr


def test_release_workflow_and_security_team_both_required(
    cli: CLI,
    tmp_path: Path,
    oidc_server: OIDCTokenServer,
    sigstore_trust_config: Path,
) -> None:
    model = make_model(tmp_path)
    release, security = tmp_path / "release.sig", tmp_path / "security.sig"
    sign = ["--sigstore", "--trust-config", sigstore_trust_config]
    r = cli("sign", model, *sign, "--bundle", release, env=github_env(oidc_server))
    assert r.returncode == 0, r.stderr
    oidc_server.claims = email_claims()
    token = oidc_server.mint()
    r = cli("sign", model, *sign, "--identity-token", token, "--bundle", security)
    assert r.returncode == 0, r.stderr
    policy = tmp_path / "trust.yaml"
    policy.write_text(
        f"""\
version: 1
sigstore:
  trusted-root: {sigstore_trust_config.name}
signers:
  release:
    sigstore:
      github:
        repository: {REPO}
        workflow: release.yml
        ref: refs/heads/main
  security-team:
    sigstore:
      identity-regex: '.*@example\\.com'
      issuer: https://accounts.google.com
require:
  all-of: [release, security-team]
"""
    )
    both = cli("verify", model, "--bundle", release, "--bundle", security, "--policy", policy)
    assert both.returncode == 0, both.stderr
    assert f"policy: {policy} (command line)" in both.stdout
    assert "requirement met" in both.stdout
    one = cli("verify", model, "--bundle", release, "--policy", policy)
    assert one.returncode == 1
    assert "requirement is not met" in one.stderr and "security-team" in one.stderr
    twice = cli("verify", model, "--bundle", release, "--bundle", release, "--policy", policy)
    assert twice.returncode == 2


# --- failure modes: identity tokens -------------------------------------------------------


def test_missing_id_token_permission_says_how_to_fix_it(
    cli: CLI, tmp_path: Path, sigstore_trust_config: Path
) -> None:
    model = make_model(tmp_path)
    bundle = tmp_path / "model.sig"
    sign = [
        "sign",
        model,
        "--sigstore",
        "--trust-config",
        sigstore_trust_config,
        "--bundle",
        bundle,
    ]
    r = cli(*sign, env={"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "push"})
    assert r.returncode == 2
    assert "id-token: write" in r.stderr
    assert not bundle.exists()
    fork = cli(*sign, env={"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "pull_request"})
    assert fork.returncode == 2
    assert "forks" in fork.stderr


def test_no_identity_at_all_outside_ci(
    cli: CLI, tmp_path: Path, sigstore_trust_config: Path
) -> None:
    model = make_model(tmp_path)
    r = cli(
        "sign", model, "--sigstore", "--trust-config", sigstore_trust_config,
        "--bundle", tmp_path / "m.sig",
    )  # fmt: skip
    assert r.returncode == 2
    assert "no identity for keyless signing" in r.stderr
    assert "--identity-token" in r.stderr


def signer_for(trust_config: Path, **kwargs: object) -> SigstoreSigner:
    return SigstoreSigner(trust_config=trust_config, interactive=False, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("setup", "error", "text"),
    [
        (lambda s: setattr(s, "status", 500), OperationalError, "code=500"),
        (lambda s: setattr(s, "request_token", "stale"), OperationalError, "code=401"),
        (lambda s: setattr(s, "malformed", True), OperationalError, "malformed"),
        (lambda s: setattr(s, "audience", "not-sigstore"), OperationalError, "audience"),
        (lambda s: setattr(s, "lifetime", -600), UsageError, "expired"),
    ],
    ids=["endpoint-500", "endpoint-401", "malformed-json", "wrong-audience", "expired"],
)
def test_ambient_token_endpoint_failures(
    monkeypatch: pytest.MonkeyPatch,
    oidc_server: OIDCTokenServer,
    sigstore_trust_config: Path,
    setup: object,
    error: type[Error],
    text: str,
) -> None:
    for k, v in oidc_server.env().items():
        monkeypatch.setenv(k, v)
    assert callable(setup)
    setup(oidc_server)
    if oidc_server.request_token == "stale":  # the job's request token no longer matches
        monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "something-else")
        oidc_server.request_token = "current"
    with pytest.raises(error) as info:
        signer_for(sigstore_trust_config)
    assert type(info.value) is error
    assert text in info.value.message
    assert info.value.hint


def test_token_endpoint_unreachable_is_a_network_error(
    monkeypatch: pytest.MonkeyPatch, sigstore_trust_config: Path
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL", closed_port_url() + "/token")
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "x")
    with pytest.raises(NetworkError) as info:
        signer_for(sigstore_trust_config)
    assert info.value.exit_code == 3


@pytest.mark.parametrize("kind", ["garbage", "expired", "wrong-audience", "no-subject"])
def test_unusable_explicit_tokens(
    oidc_server: OIDCTokenServer, sigstore_trust_config: Path, kind: str
) -> None:
    token = {
        "garbage": "not-a-jwt",
        "expired": oidc_server.mint(exp=1_000_000_000),
        "wrong-audience": oidc_server.mint(aud="someone-else"),
        "no-subject": mint_jwt({"iss": GITHUB_ISSUER, "aud": "sigstore"}, oidc_server.secret),
    }[kind]
    with pytest.raises(UsageError) as info:
        signer_for(sigstore_trust_config, identity_token=token)
    assert info.value.exit_code == 2
    assert ("expired" in info.value.message) == (kind == "expired")


# --- failure modes: Fulcio and Rekor ---------------------------------------------------------


def test_fulcio_unreachable_exits_3_and_writes_nothing(
    cli: CLI, tmp_path: Path, oidc_server: OIDCTokenServer, fake_sigstore: FakeSigstore
) -> None:
    config = fake_sigstore.write_trust_config(tmp_path / "tc.json", fulcio_url=closed_port_url())
    model = make_model(tmp_path)
    bundle = tmp_path / "model.sig"
    r = cli(
        "sign", model, "--sigstore", "--trust-config", config, "--bundle", bundle,
        env=github_env(oidc_server),
    )  # fmt: skip
    assert r.returncode == 3
    assert "cannot reach Fulcio" in r.stderr
    assert not bundle.exists()
    assert not list(tmp_path.glob(".model.sig.tmp*"))


def test_rekor_unreachable_is_a_network_error(
    tmp_path: Path, oidc_server: OIDCTokenServer, fake_sigstore: FakeSigstore
) -> None:
    config = fake_sigstore.write_trust_config(tmp_path / "tc.json", rekor_url=closed_port_url())
    signer = signer_for(config, identity_token=oidc_server.mint())
    with pytest.raises(NetworkError, match="cannot reach Rekor"):
        signer.sign_statement(STATEMENT)


@pytest.mark.parametrize(
    ("service", "status", "error", "text"),
    [
        ("fulcio", 503, NetworkError, "Fulcio"),
        ("rekor", 500, NetworkError, "Rekor"),
        ("fulcio", 400, OperationalError, "rejected the request (HTTP 400)"),
    ],
)
def test_service_errors(
    oidc_server: OIDCTokenServer,
    fake_sigstore: FakeSigstore,
    sigstore_trust_config: Path,
    service: str,
    status: int,
    error: type[Error],
    text: str,
) -> None:
    signer = signer_for(sigstore_trust_config, identity_token=oidc_server.mint())
    fake_sigstore.fail_next(service, status)
    with pytest.raises(error) as info:
        signer.sign_statement(STATEMENT)
    assert type(info.value) is error
    assert text in info.value.message
    assert signer.sign_statement(STATEMENT)  # the next attempt goes through


def test_fulcio_refuses_a_token_it_cannot_verify(
    oidc_server: OIDCTokenServer, sigstore_trust_config: Path
) -> None:
    forged = OIDCTokenServer(secret="not-the-issuers-key").mint()  # signature Fulcio rejects
    signer = signer_for(sigstore_trust_config, identity_token=forged)
    with pytest.raises(UsageError, match=r"refused the identity token \(HTTP 401\)"):
        signer.sign_statement(STATEMENT)


def test_signed_payload_is_the_exact_statement(
    oidc_server: OIDCTokenServer, sigstore_trust_config: Path
) -> None:
    import base64

    signer = signer_for(sigstore_trust_config, identity_token=oidc_server.mint())
    bundle = json.loads(signer.sign_statement(STATEMENT))
    assert base64.b64decode(bundle["dsseEnvelope"]["payload"]) == STATEMENT
    assert signer.details["identity"] == WORKFLOW_SAN
    assert isinstance(signer.details["log_index"], int)


def test_trust_root_refresh_failure_is_a_network_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Production/staging trust roots come from TUF; here its URL points at a closed port."""
    monkeypatch.setitem(_sigstore_roots._TUF_URLS, "production", closed_port_url())
    with pytest.raises(NetworkError) as info:
        SigstoreSigner(identity_token="unused", interactive=False)
    assert "--offline" in (info.value.hint or "")


def test_bad_trust_config_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "tc.json"
    bad.write_text('{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}')
    with pytest.raises(ConfigError, match="ClientTrustConfig"):
        SigstoreSigner(trust_config=bad, identity_token="unused", interactive=False)
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="JSON"):
        SigstoreSigner(trust_config=bad, identity_token="unused", interactive=False)


def test_keyless_and_key_options_do_not_mix(cli: CLI, tmp_path: Path) -> None:
    model = make_model(tmp_path)
    r = cli("sign", model, "--sigstore", "--key", tmp_path / "k.pem", "--bundle", tmp_path / "b")
    assert r.returncode == 2 and "--key or --sigstore" in r.stderr
    r = cli("sign", model, "--staging", "--bundle", tmp_path / "b")
    assert r.returncode == 2 and "--staging needs --sigstore" in r.stderr
