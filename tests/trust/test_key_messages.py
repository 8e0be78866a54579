"""What `verify --key` says about the wrong material and about the wrong key."""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import CLI
from tests.core.test_cli_keys import make_model


def _signed(cli: CLI, tmp_path: Path) -> tuple[Path, Path, Path]:
    model = make_model(tmp_path)
    assert cli("keygen", "--out", tmp_path / "k.pem").returncode == 0
    bundle = tmp_path / "m.sig"
    assert cli("sign", model, "--key", tmp_path / "k.pem", "--bundle", bundle).returncode == 0
    return model, bundle, tmp_path / "k.pem"


def test_a_certificate_given_as_a_key_is_refused_with_the_way_out(cli: CLI, tmp_path: Path) -> None:
    model, bundle, key = _signed(cli, tmp_path)
    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(private, hashes.SHA256())
    )
    crt = tmp_path / "signer.crt"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    r = cli("verify", model, "--bundle", bundle, "--key", crt)
    assert r.returncode == 2, r.stderr  # used to verify silently, as if it were the key
    assert "signer.crt: this is a certificate, not a public key" in r.stderr
    assert "--cert-chain" in r.stderr and "openssl x509" in r.stderr


def test_the_wrong_key_names_both_keys_once(cli: CLI, tmp_path: Path) -> None:
    model, bundle, _ = _signed(cli, tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    assert cli("keygen", "--out", other / "o.pem").returncode == 0
    r = cli("verify", model, "--bundle", bundle, "--key", other / "o.pem.pub")
    assert r.returncode == 1, r.stderr
    assert "signed by another key (" in r.stderr
    assert "which is not a trusted signer (trusted: public key " in r.stderr
    assert "key public key" not in r.stderr
    assert "the policy does not trust" not in r.stderr  # no policy was given
