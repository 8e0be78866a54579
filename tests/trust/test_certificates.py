"""The signing leaf of a certificate chain must be an end-entity certificate.

Real certificates, made here with ``cryptography``: a root CA, an
intermediate CA and an end-entity leaf. A CA certificate (a keyCertSign key
usage: it can issue certificates) presented as the signing leaf is refused
(exit 1), in the certificate method and for Sigstore leaves alike; so is a
leaf without the digitalSignature key usage.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ml_integrity.trust.keys import end_entity_problem
from tests.conftest import CLI

NOW = datetime.datetime.now(datetime.timezone.utc)


def _usage(*, signature: bool, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _cert(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool | None,
    usage: x509.KeyUsage | None,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = issuer or (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=30))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if issuer is not None and ca is not True:  # leaves sign code; CAs carry no EKU
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False
        )
    if ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=None), critical=True
        )
    if usage is not None:
        builder = builder.add_extension(usage, critical=True)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class Pki:
    root: Path
    intermediate: Path
    intermediate_key: Path
    folder: Path

    def leaf(self, name: str, *, ca: bool | None, usage: x509.KeyUsage | None) -> Path:
        """A key and its certificate issued by the intermediate; returns the key file."""
        key = ec.generate_private_key(ec.SECP256R1())
        issuer_key = serialization.load_pem_private_key(self.intermediate_key.read_bytes(), None)
        assert isinstance(issuer_key, ec.EllipticCurvePrivateKey)
        issuer = x509.load_pem_x509_certificate(self.intermediate.read_bytes()).subject
        cert = _cert(name, key, (issuer, issuer_key), ca=ca, usage=usage)
        return _write(self.folder / name, key, cert)


def _write(stem: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> Path:
    stem.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    stem.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return stem.with_suffix(".key")


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    root_key = ec.generate_private_key(ec.SECP384R1())
    root = _cert(
        "test root", root_key, None, ca=True, usage=_usage(signature=False, cert_sign=True)
    )
    root_key_path = _write(tmp_path / "root", root_key, root)
    int_key = ec.generate_private_key(ec.SECP256R1())
    # a real-world intermediate: a CA that may also sign (digitalSignature + keyCertSign)
    intermediate = _cert(
        "test intermediate",
        int_key,
        (root.subject, root_key),
        ca=True,
        usage=_usage(signature=True, cert_sign=True),
    )
    int_key_path = _write(tmp_path / "intermediate", int_key, intermediate)
    assert root_key_path.is_file()
    return Pki(
        root=tmp_path / "root.pem",
        intermediate=tmp_path / "intermediate.pem",
        intermediate_key=int_key_path,
        folder=tmp_path,
    )


def _model(tmp_path: Path) -> Path:
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"\x00" * 64)
    return model


def _sign(cli: CLI, model: Path, key: Path, *chain: Path) -> Path:
    bundle = model.parent / f"{key.stem}.sig"
    certs = [arg for c in chain for arg in ("--cert", c)]
    r = cli("sign", model, "--key", key, *certs, "--bundle", bundle)
    assert r.returncode == 0, r.stderr
    return bundle


def test_an_end_entity_leaf_verifies_against_the_root_or_the_intermediate(
    cli: CLI, pki: Pki, tmp_path: Path
) -> None:
    model = _model(tmp_path)
    key = pki.leaf("signer", ca=False, usage=_usage(signature=True, cert_sign=False))
    bundle = _sign(cli, model, key, key.with_suffix(".pem"), pki.intermediate)
    for anchor in (pki.root, pki.intermediate):  # any certificate given is a trust anchor
        ok = cli("verify", model, "--bundle", bundle, "--cert-chain", anchor)
        assert ok.returncode == 0, ok.stderr


def test_the_intermediate_ca_presented_as_the_leaf_is_refused(
    cli: CLI, pki: Pki, tmp_path: Path
) -> None:
    model = _model(tmp_path)
    bundle = _sign(cli, model, pki.intermediate_key, pki.intermediate)
    r = cli("verify", model, "--bundle", bundle, "--cert-chain", pki.root)
    assert r.returncode == 1, r.stderr
    assert "signing certificate is a CA certificate (its keyUsage includes keyCertSign)" in r.stderr
    # the same under a policy (git config or a file): the rule is the verifier's
    policy = tmp_path / "p.yaml"
    policy.write_text(f"version: 1\nsigners:\n  ca:\n    certificate-chain: [{pki.root}]\n")
    r = cli("verify", model, "--bundle", bundle, "--policy", policy)
    assert r.returncode == 1, r.stderr
    assert "is a CA certificate" in r.stderr


@pytest.mark.parametrize(
    ("ca", "usage", "reason"),
    [
        (True, _usage(signature=True, cert_sign=True), "keyUsage includes keyCertSign"),
        (None, _usage(signature=True, cert_sign=True), "keyUsage includes keyCertSign"),
        (False, _usage(signature=False, cert_sign=False), "no digitalSignature key usage"),
        (True, None, "no keyUsage extension"),
        (False, None, "no keyUsage extension"),
    ],
    ids=["ca", "cert-sign", "no-digital-signature", "ca-no-key-usage", "no-key-usage"],
)
def test_leaves_that_are_not_end_entity_signing_certificates_are_refused(
    cli: CLI, pki: Pki, tmp_path: Path, ca: bool | None, usage: x509.KeyUsage | None, reason: str
) -> None:
    model = _model(tmp_path)
    key = pki.leaf("odd", ca=ca, usage=usage)
    bundle = _sign(cli, model, key, key.with_suffix(".pem"), pki.intermediate)
    r = cli("verify", model, "--bundle", bundle, "--cert-chain", pki.root)
    assert r.returncode == 1, r.stderr
    assert reason in r.stderr
    cert = x509.load_pem_x509_certificate(key.with_suffix(".pem").read_bytes())
    problem = end_entity_problem(cert)
    assert problem is not None and reason in problem


def test_a_ca_bit_alone_does_not_make_a_signing_leaf_a_ca(
    cli: CLI, pki: Pki, tmp_path: Path
) -> None:
    # what the OMS and model-transparency certificate vectors do: CA:TRUE, but only
    # digitalSignature (no keyCertSign: it can issue nothing); model_signing accepts it
    model = _model(tmp_path)
    key = pki.leaf("vector-like", ca=True, usage=_usage(signature=True, cert_sign=False))
    bundle = _sign(cli, model, key, key.with_suffix(".pem"), pki.intermediate)
    ok = cli("verify", model, "--bundle", bundle, "--cert-chain", pki.root)
    assert ok.returncode == 0, ok.stderr


def test_a_sigstore_leaf_that_is_a_ca_is_refused(pki: Pki) -> None:
    from sigstore.errors import VerificationError

    from ml_integrity.trust.policy import IdentityRule
    from ml_integrity.trust.sigstore_identity import TrustedIdentities

    rule = IdentityRule(issuer="https://issuer.example", identity="ci@example.com")
    policy = TrustedIdentities([("ci", rule)], [])
    with pytest.raises(VerificationError, match="is a CA certificate"):
        policy.verify(x509.load_pem_x509_certificate(pki.intermediate.read_bytes()))
    assert policy.matched == []
