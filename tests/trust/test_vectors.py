"""Real public keyless bundles (tests/assets/vectors), verified with no network at all.

The bundles were signed by stefanb@us.ibm.com through IBM's OIDC provider
against Sigstore's public-good Fulcio and Rekor. Trust comes from
``custom_trust_config.json`` (the public-good roots) or from the trust root
shipped with sigstore-python (``--offline``). Nothing here is a stand-in.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from ml_integrity.core import verifying
from ml_integrity.errors import BundleError, PolicyError, SignatureError
from ml_integrity.trust.policy import IdentityRule
from ml_integrity.trust.sigstore import SigstoreTrust, SigstoreVerifier
from tests.conftest import CLI, VECTORS

MT = VECTORS / "model-transparency-v1.0.0"
SPEC = VECTORS / "oms-spec-v1.0"
TRUST = MT / "custom_trust_config.json"
IDENTITY = "stefanb@us.ibm.com"
ISSUER = "https://sigstore.verify.ibm.com/oauth2"

# (model folder, bundle): the OMS spec's keyless vector and model_signing v1.0.0's
CASES = [
    pytest.param(
        SPEC / "models" / "model-sigstore", SPEC / "valid" / "sigstore.bundle.json", id="oms-spec"
    ),
    pytest.param(
        MT / "v1.0.0-sigstore", MT / "v1.0.0-sigstore" / "model.sig", id="model-transparency"
    ),
]


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    for p in [dst, *dst.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


def identity_args(identity: str = IDENTITY, issuer: str = ISSUER) -> list[str]:
    return ["--identity", identity, "--issuer", issuer]


@pytest.mark.parametrize(("model", "bundle"), CASES)
def test_vector_verifies_offline_with_its_trust_config(cli: CLI, model: Path, bundle: Path) -> None:
    r = cli(
        "verify", model, "--bundle", bundle, *identity_args(), "--trusted-root", TRUST, "--json"
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["files"] == 2
    assert report["details"]["identity"] == IDENTITY
    assert report["details"]["issuer"] == ISSUER
    assert report["details"]["log_index"] in (598151086, 206344181)
    assert report["policy"]["kind"] == "command line"


def test_vector_verifies_with_the_root_shipped_in_sigstore(cli: CLI) -> None:
    model, bundle = MT / "v1.0.0-sigstore", MT / "v1.0.0-sigstore" / "model.sig"
    r = cli("verify", model, "--bundle", bundle, *identity_args(), "--offline")
    assert r.returncode == 0, r.stderr
    assert "signed by stefanb@us.ibm.com" in r.stdout
    assert "policy: command-line options" in r.stdout
    assert "TUF" not in r.stderr  # sigstore's offline-mode warning is not shown


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (identity_args("someone@example.com"), "identity someone@example.com issued by " + ISSUER),
        (
            identity_args(issuer="https://accounts.google.com"),
            f"identity {IDENTITY} issued by https://accounts.google.com",
        ),
        (["--github-repository", "stefanb/models"], "GitHub Actions (repository stefanb/models)"),
        # a regular expression must match the whole identity
        (
            ["--identity-regex", "stefanb", "--issuer", ISSUER],
            "identity matching /stefanb/ issued by " + ISSUER,
        ),
    ],
    ids=["identity", "issuer", "repository", "partial-regex"],
)
def test_wrong_signer_is_refused_naming_expected_and_actual(
    cli: CLI, args: list[str], expected: str
) -> None:
    model, bundle = SPEC / "models" / "model-sigstore", SPEC / "valid" / "sigstore.bundle.json"
    r = cli("verify", model, "--bundle", bundle, *args, "--trusted-root", TRUST)
    assert r.returncode == 1, r.stderr
    assert "signer is not trusted" in r.stderr
    assert f"expected {expected};" in r.stderr
    assert f"the certificate holds identity {IDENTITY} issued by {ISSUER}" in r.stderr


def test_identity_regex_matching_the_whole_identity_passes(cli: CLI) -> None:
    model, bundle = SPEC / "models" / "model-sigstore", SPEC / "valid" / "sigstore.bundle.json"
    args = ["--identity-regex", r"[a-z]+@us\.ibm\.com", "--issuer", ISSUER]
    r = cli("verify", model, "--bundle", bundle, *args, "--trusted-root", TRUST)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(("model", "bundle"), CASES)
def test_one_byte_change_of_the_model_is_refused(
    cli: CLI, tmp_path: Path, model: Path, bundle: Path
) -> None:
    copy = copy_model(model, tmp_path / "model")
    sig = tmp_path / "model.sig"
    shutil.copy(bundle, sig)
    (copy / "model.sig").unlink(missing_ok=True)
    ok = cli("verify", copy, "--bundle", sig, *identity_args(), "--trusted-root", TRUST)
    assert ok.returncode == 0, ok.stderr
    target = copy / "signme-2"
    data = bytearray(target.read_bytes())
    data[3] ^= 0x01
    target.write_bytes(bytes(data))
    r = cli("verify", copy, "--bundle", sig, *identity_args(), "--trusted-root", TRUST)
    assert r.returncode == 1
    assert "changed: signme-2" in r.stderr
    assert "policy: command-line options" in r.stderr


def test_another_instance_root_refuses_the_certificate(cli: CLI) -> None:
    model, bundle = SPEC / "models" / "model-sigstore", SPEC / "valid" / "sigstore.bundle.json"
    r = cli("verify", model, "--bundle", bundle, *identity_args(), "--staging", "--offline")
    assert r.returncode == 1
    assert "does not chain to the Sigstore staging" in r.stderr
    assert "--trusted-root" in r.stderr


def test_key_signed_bundle_when_an_identity_is_required(cli: CLI) -> None:
    r = cli(
        "verify",
        SPEC / "models" / "model",
        "--bundle",
        SPEC / "valid" / "key.bundle.json",
        *identity_args(),
        "--trusted-root",
        TRUST,
    )
    assert r.returncode == 1
    assert "signed with a public key, but a Sigstore (keyless) identity was required" in r.stderr


def test_keyless_bundle_when_a_key_is_required(cli: CLI) -> None:
    model, bundle = SPEC / "models" / "model-sigstore", SPEC / "valid" / "sigstore.bundle.json"
    key = MT / "keys" / "certificate" / "signing-key-pub.pem"
    r = cli("verify", model, "--bundle", bundle, "--key", key, "--offline")
    assert r.returncode == 1
    assert "Sigstore keyless signing" in r.stderr


# --- the verifier itself (no CLI) ------------------------------------------------------


def verifier(*rules: IdentityRule, deny: tuple[IdentityRule, ...] = ()) -> SigstoreVerifier:
    return SigstoreVerifier(
        [(f"r{i}", r) for i, r in enumerate(rules)],
        trust=SigstoreTrust.from_file(TRUST),
        deny=deny,
    )


def test_verifier_reports_payload_and_matching_rules() -> None:
    bundle = SPEC / "valid" / "sigstore.bundle.json"
    v = verifier(
        IdentityRule(issuer=ISSUER, identity=IDENTITY),
        IdentityRule(issuer=ISSUER, identity="other@example.com"),
        IdentityRule(issuer=ISSUER, identity_regex=r".*@us\.ibm\.com"),
    )
    verified, signed = verifying.verify_signed_payload(bundle, v)
    assert verified.details["matched_signers"] == ["r0", "r2"]
    assert signed.resources == {
        "signme-1": "f6310066c7320497ea554260c32c43660bff648cb2a61194832cc086077085e1",
        "signme-2": "32dcb1f8e1ae52d5963e56a6ba06ab58b424c15ed2a6b70d2feca1d089370028",
    }


def test_deny_rule_wins_over_a_matching_signer() -> None:
    bundle = (SPEC / "valid" / "sigstore.bundle.json").read_bytes()
    v = verifier(
        IdentityRule(issuer=ISSUER, identity=IDENTITY),
        deny=(IdentityRule(issuer=ISSUER, identity_regex=r"stefanb@.*"),),
    )
    with pytest.raises(PolicyError, match="denied by the policy"):
        v.verify_bundle(bundle, "b")


def _tampered(mutate: str) -> bytes:
    doc = json.loads((SPEC / "valid" / "sigstore.bundle.json").read_bytes())
    if mutate == "payload":
        payload = base64.b64decode(doc["dsseEnvelope"]["payload"])
        payload = payload.replace(b"f6310066c7", b"f6310066c8")
        doc["dsseEnvelope"]["payload"] = base64.b64encode(payload).decode()
    elif mutate == "signature":
        sig = bytearray(base64.b64decode(doc["dsseEnvelope"]["signatures"][0]["sig"]))
        sig[-1] ^= 1
        doc["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(sig).decode()
    elif mutate == "log-entry":
        entry = doc["verificationMaterial"]["tlogEntries"][0]
        entry["logIndex"] = str(int(entry["logIndex"]) + 1)
    elif mutate == "certificate":
        raw = bytearray(base64.b64decode(doc["verificationMaterial"]["certificate"]["rawBytes"]))
        raw[-5] ^= 1
        doc["verificationMaterial"]["certificate"]["rawBytes"] = base64.b64encode(raw).decode()
    return json.dumps(doc).encode()


@pytest.mark.parametrize("mutate", ["payload", "signature", "log-entry", "certificate"])
def test_altered_bundles_are_refused(mutate: str) -> None:
    v = verifier(IdentityRule(issuer=ISSUER, identity=IDENTITY))
    with pytest.raises(SignatureError):
        v.verify_bundle(_tampered(mutate), "altered")


@pytest.mark.parametrize(
    "name", ["missing-tlog-entries", "missing-envelope", "missing-verification-material", "empty"]
)
def test_invalid_spec_bundles_fail_closed(name: str) -> None:
    v = verifier(IdentityRule(issuer=ISSUER, identity=IDENTITY))
    with pytest.raises(BundleError):
        v.verify_bundle((SPEC / "invalid" / f"{name}.bundle.json").read_bytes(), name)
