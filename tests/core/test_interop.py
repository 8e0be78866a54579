"""Interoperability: the OMS v1.0 vectors, model_signing 1.1.1 both ways, the schemas."""

from __future__ import annotations

import base64
import datetime
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ml_integrity.core import oms
from tests.conftest import CLI, VECTORS
from tests.core.test_cli_keys import make_model

MT = VECTORS / "model-transparency-v1.0.0"
KEYS = MT / "keys" / "certificate"
SPEC = VECTORS / "oms-spec-v1.0"
MODEL_SIGNING = Path(sys.executable).parent / "model_signing"


def model_signing(*args: str | Path) -> subprocess.CompletedProcess[str]:
    if not MODEL_SIGNING.exists():
        pytest.fail("model-signing 1.1.1 is part of the test environment: pip install -e '.[test]'")
    return subprocess.run(
        [MODEL_SIGNING, *map(str, args)], capture_output=True, text=True, timeout=300
    )


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    for p in [dst, *dst.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


# --- the published vectors ----------------------------------------------------


@pytest.mark.parametrize(
    ("target", "bundle", "trust"),
    [
        pytest.param(
            MT / "v1.0.0-elliptic-key" / "signme-1",
            MT / "v1.0.0-elliptic-key" / "model.sig",
            ("--key", KEYS / "signing-key-pub.pem"),
            id="mt-v1.0.0-key-single-file",
        ),
        pytest.param(
            MT / "v1.0.0-certificate",
            MT / "v1.0.0-certificate" / "model.sig",
            ("--cert-chain", KEYS / "ca-cert.pem"),
            id="mt-v1.0.0-certificate",
        ),
        pytest.param(
            SPEC / "models" / "model",
            SPEC / "valid" / "key.bundle.json",
            ("--key", KEYS / "signing-key-pub.pem"),
            id="oms-valid-key",
        ),
        pytest.param(
            SPEC / "models" / "model",
            SPEC / "valid" / "certificate.bundle.json",
            ("--cert-chain", KEYS / "ca-cert.pem"),
            id="oms-valid-certificate",
        ),
    ],
)
def test_published_vectors_verify(
    cli: CLI, target: Path, bundle: Path, trust: tuple[str, Path]
) -> None:
    r = cli("verify", target, "--bundle", bundle, *trust)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("OK: ")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("invalid/empty.bundle.json", "bundle is empty"),
        ("invalid/missing-envelope.bundle.json", "no dsseEnvelope"),
        ("invalid/missing-tlog-entries.bundle.json", "no transparency-log entry"),
        ("invalid/missing-verification-material.bundle.json", "no verificationMaterial"),
        ("invalid-payload/wrong-predicate.bundle.json", "signature does not verify"),
    ],
)
def test_invalid_oms_vectors_are_refused(cli: CLI, name: str, reason: str) -> None:
    r = cli(
        "verify",
        SPEC / "models" / "model",
        "--bundle",
        SPEC / name,
        "--key",
        KEYS / "signing-key-pub.pem",
    )
    assert r.returncode == 1
    assert reason in r.stderr


def test_wrong_predicate_is_refused_even_when_properly_signed(tmp_path: Path, cli: CLI) -> None:
    """Re-sign the wrong-predicate payload with the (public, test-only) vector key."""
    doc = json.loads((SPEC / "invalid-payload" / "wrong-predicate.bundle.json").read_text())
    payload = base64.b64decode(doc["dsseEnvelope"]["payload"])
    key = serialization.load_pem_private_key((KEYS / "signing-key.pem").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    sig = key.sign(oms.pae(oms.PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA384()))
    doc["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(sig).decode()
    bundle = tmp_path / "resigned.json"
    bundle.write_text(json.dumps(doc))
    r = cli(
        "verify",
        SPEC / "models" / "model",
        "--bundle",
        bundle,
        "--key",
        KEYS / "signing-key-pub.pem",
    )
    assert r.returncode == 1
    assert "predicateType is 'https://example.com/wrong-predicate/v1.0'" in r.stderr


def test_vector_one_byte_change_is_refused(tmp_path: Path, cli: CLI) -> None:
    model = copy_model(SPEC / "models" / "model", tmp_path / "m")
    (model / "signme-2").write_bytes(b"signme-3")
    bundle = SPEC / "valid" / "key.bundle.json"
    r = cli("verify", model, "--bundle", bundle, "--key", KEYS / "signing-key-pub.pem")
    assert r.returncode == 1
    assert "changed: signme-2" in r.stderr


def test_vector_recorded_ignore_paths_are_honoured(tmp_path: Path, cli: CLI) -> None:
    model = copy_model(SPEC / "models" / "model", tmp_path / "m")
    (model / "ignore-me").write_bytes(b"")
    r = cli(
        "verify",
        model,
        "--bundle",
        SPEC / "valid" / "key.bundle.json",
        "--key",
        KEYS / "signing-key-pub.pem",
    )
    assert r.returncode == 0, r.stderr


def test_certificate_chain_needs_a_trusted_anchor(tmp_path: Path, cli: CLI) -> None:
    """An unrelated CA is no anchor (an intermediate as anchor: tests/trust/test_certificates)."""
    model = make_model(tmp_path)
    _, key, leaf = _make_ca(tmp_path)
    r = cli("sign", model, "--key", key, "--cert", leaf, "--bundle", tmp_path / "c.sig")
    assert r.returncode == 0, r.stderr
    (tmp_path / "other").mkdir()
    unrelated, _, _ = _make_ca(tmp_path / "other")
    r = cli("verify", model, "--bundle", tmp_path / "c.sig", "--cert-chain", unrelated)
    assert r.returncode == 1
    assert "trusted root" in r.stderr


def test_key_bundle_is_not_accepted_as_certificate(cli: CLI) -> None:
    r = cli(
        "verify",
        SPEC / "models" / "model",
        "--bundle",
        SPEC / "valid" / "key.bundle.json",
        "--cert-chain",
        KEYS / "ca-cert.pem",
    )
    assert r.returncode == 1
    assert "signed with a public key" in r.stderr


# --- model_signing 1.1.1, both ways -----------------------------------------


@pytest.mark.parametrize("kind", ["ec-p256", "ec-p384"])
def test_our_bundles_verify_with_model_signing(tmp_path: Path, cli: CLI, kind: str) -> None:
    model = make_model(tmp_path)
    cli("keygen", "--out", tmp_path / "k.pem", "--type", kind)
    assert (
        cli("sign", model, "--key", tmp_path / "k.pem", "--bundle", tmp_path / "m.sig").returncode
        == 0
    )
    r = model_signing(
        "verify",
        "key",
        model,
        "--signature",
        tmp_path / "m.sig",
        "--public_key",
        tmp_path / "k.pem.pub",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    (model / "config.json").write_text("tampered")
    r = model_signing(
        "verify",
        "key",
        model,
        "--signature",
        tmp_path / "m.sig",
        "--public_key",
        tmp_path / "k.pem.pub",
    )
    assert r.returncode != 0


def test_our_single_file_bundle_verifies_with_model_signing(tmp_path: Path, cli: CLI) -> None:
    model = make_model(tmp_path)
    cli("keygen", "--out", tmp_path / "k.pem")
    f = model / "weights.safetensors"
    assert (
        cli("sign", f, "--key", tmp_path / "k.pem", "--bundle", tmp_path / "f.sig").returncode == 0
    )
    r = model_signing(
        "verify",
        "key",
        f,
        "--signature",
        tmp_path / "f.sig",
        "--public_key",
        tmp_path / "k.pem.pub",
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_model_signing_bundles_verify_with_ours(tmp_path: Path, cli: CLI) -> None:
    model = make_model(tmp_path)
    cli("keygen", "--out", tmp_path / "k.pem", "--type", "ec-p384")
    r = model_signing(
        "sign",
        "key",
        model,
        "--private_key",
        tmp_path / "k.pem",
        "--signature",
        tmp_path / "ms.sig",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    ok = cli("verify", model, "--bundle", tmp_path / "ms.sig", "--key", tmp_path / "k.pem.pub")
    assert ok.returncode == 0, ok.stderr
    (model / "tokenizer" / "vocab.txt").write_text("changed")
    bad = cli("verify", model, "--bundle", tmp_path / "ms.sig", "--key", tmp_path / "k.pem.pub")
    assert bad.returncode == 1 and "changed: tokenizer/vocab.txt" in bad.stderr


def _make_ca(tmp_path: Path, *, signing_usage: bool = True) -> tuple[Path, Path, Path]:
    """A root CA, a leaf key and its certificate, made for this test.

    ``signing_usage=False``: the leaf has neither digitalSignature nor codeSigning.
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test root")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA384())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "model signer")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=10))
        .add_extension(
            x509.KeyUsage(
                signing_usage, False, not signing_usage, False, False, False, False, False, False
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [
                    ExtendedKeyUsageOID.CODE_SIGNING
                    if signing_usage
                    else ExtendedKeyUsageOID.EMAIL_PROTECTION
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA384())
    )
    ca_path, key_path, leaf_path = tmp_path / "ca.pem", tmp_path / "leaf.key", tmp_path / "leaf.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    leaf_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, key_path, leaf_path


def test_certificate_signing_round_trip_and_model_signing(tmp_path: Path, cli: CLI) -> None:
    model = make_model(tmp_path)
    ca, key, leaf = _make_ca(tmp_path)
    r = cli("sign", model, "--key", key, "--cert", leaf, "--bundle", tmp_path / "c.sig")
    assert r.returncode == 0, r.stderr
    ok = cli("verify", model, "--bundle", tmp_path / "c.sig", "--cert-chain", ca, "--json")
    assert ok.returncode == 0, ok.stderr
    verdict = json.loads(ok.stdout)
    assert verdict["details"]["subject"] == "CN=model signer"
    assert verdict["policy"]["kind"] == "command line"
    assert verdict["details"]["matched_signers"] == ["cert-chain"]
    ms = model_signing(
        "verify", "certificate", model, "--signature", tmp_path / "c.sig", "--certificate_chain", ca
    )
    assert ms.returncode == 0, ms.stdout + ms.stderr
    (tmp_path / "other").mkdir()
    other_ca, _, _ = _make_ca(tmp_path / "other")
    bad = cli("verify", model, "--bundle", tmp_path / "c.sig", "--cert-chain", other_ca)
    assert bad.returncode == 1
    assert "policy: command-line options" in bad.stderr


def test_cert_that_does_not_match_the_key_is_refused(tmp_path: Path, cli: CLI) -> None:
    model = make_model(tmp_path)
    _, _, leaf = _make_ca(tmp_path)
    cli("keygen", "--out", tmp_path / "k.pem")
    r = cli(
        "sign", model, "--key", tmp_path / "k.pem", "--cert", leaf, "--bundle", tmp_path / "c.sig"
    )
    assert r.returncode == 2
    assert "does not belong to the signing key" in r.stderr


def test_expired_signing_certificate_is_refused(tmp_path: Path, cli: CLI) -> None:
    """The leaf is valid for 10 days: verified 20 days on, it is refused."""
    from ml_integrity.errors import SignatureError
    from ml_integrity.trust.keys import CertificateVerifier

    model = make_model(tmp_path)
    ca, key, leaf = _make_ca(tmp_path)
    r = cli("sign", model, "--key", key, "--cert", leaf, "--bundle", tmp_path / "c.sig")
    assert r.returncode == 0, r.stderr
    bundle = (tmp_path / "c.sig").read_bytes()
    now = datetime.datetime.now(datetime.timezone.utc)
    CertificateVerifier([ca], at=now).verify_bundle(bundle, "c.sig")  # valid today
    later = CertificateVerifier([ca], at=now + datetime.timedelta(days=20))
    with pytest.raises(SignatureError, match="not valid now"):
        later.verify_bundle(bundle, "c.sig")


def test_certificate_not_for_signing_is_refused(tmp_path: Path, cli: CLI) -> None:
    """No digitalSignature key usage and no codeSigning extended key usage: refused."""
    model = make_model(tmp_path)
    ca, key, leaf = _make_ca(tmp_path, signing_usage=False)
    r = cli("sign", model, "--key", key, "--cert", leaf, "--bundle", tmp_path / "c.sig")
    assert r.returncode == 0, r.stderr
    bad = cli("verify", model, "--bundle", tmp_path / "c.sig", "--cert-chain", ca)
    assert bad.returncode == 1
    assert "not for signing" in bad.stderr


# --- the OMS JSON schemas ---------------------------------------------------


def test_our_bundles_pass_the_oms_schemas(tmp_path: Path, cli: CLI) -> None:
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    schemas = {p.stem: json.loads(p.read_text()) for p in (SPEC / "schemas").glob("*.json")}
    registry = Registry().with_resources(
        (s["$id"], Resource.from_contents(s)) for s in schemas.values()
    )
    bundle_v = Draft202012Validator(schemas["bundle.schema"], registry=registry)
    stmt_v = Draft202012Validator(schemas["statement.schema"], registry=registry)
    model = make_model(tmp_path)
    cli("keygen", "--out", tmp_path / "k.pem")
    cli("sign", model, "--key", tmp_path / "k.pem", "--bundle", tmp_path / "m.sig")
    bundle = json.loads((tmp_path / "m.sig").read_text())
    bundle_v.validate(bundle)
    stmt_v.validate(json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"])))
    # and the validator is not vacuous: the spec's invalid vectors fail it
    bad = json.loads((SPEC / "invalid" / "missing-envelope.bundle.json").read_text())
    assert not bundle_v.is_valid(bad)
