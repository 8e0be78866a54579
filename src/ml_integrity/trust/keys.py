"""Key-based signing and verification (air-gapped use), over ``cryptography``.

Supported keys: EC P-256, P-384 and P-521 (ECDSA with SHA-256/384/512,
chosen by curve, as OMS and model_signing do) and Ed25519 (an extension:
model_signing 1.1.1 itself verifies EC keys only). A signer may carry a
certificate chain (the OMS ``certificate`` method); the verifier then checks
the chain against the trust anchors given by the user, the leaf's validity
period at verification time, and its key usage.

The key ``hint`` in a bundle is the hex SHA-256 of the public key's PEM text
(SubjectPublicKeyInfo, 64-column base64, trailing newline), as model_signing
writes it.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from ml_integrity.core import oms
from ml_integrity.core.verifying import VerifiedPayload
from ml_integrity.errors import BundleError, ConfigError, SignatureError, UsageError
from ml_integrity.trust.policy import ChainRule, KeyRule

if TYPE_CHECKING:  # imported where certificates are used: 20 ms that key checks never need
    from cryptography import x509

KeyType = Literal["ec-p256", "ec-p384", "ec-p521", "ed25519"]
KEY_TYPES: tuple[str, ...] = ("ec-p256", "ec-p384", "ec-p521", "ed25519")

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "secp256r1": ec.SECP256R1,
    "secp384r1": ec.SECP384R1,
    "secp521r1": ec.SECP521R1,
}
_SUPPORTED = "EC P-256, P-384, P-521 or Ed25519"


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{what} not found", path=path) from None
    except IsADirectoryError:
        raise UsageError(f"{what} is a directory, expected a PEM file", path=path) from None
    except OSError as exc:
        raise UsageError(
            f"cannot read {what}: {exc.strerror}", path=path, hint="check the file's permissions"
        ) from None


def _hash_for(key: ec.EllipticCurvePublicKey) -> hashes.HashAlgorithm:
    size = key.curve.key_size
    if size <= 256:
        return hashes.SHA256()
    if size <= 384:
        return hashes.SHA384()
    return hashes.SHA512()


def public_pem(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_hint(key: PublicKey) -> str:
    """The OMS key hint: hex SHA-256 of the public key's PEM text."""
    return hashlib.sha256(public_pem(key)).hexdigest()


def describe_key(key: PublicKey) -> str:
    if isinstance(key, ed25519.Ed25519PublicKey):
        kind = "Ed25519"
    else:
        kind = {"secp256r1": "EC P-256", "secp384r1": "EC P-384", "secp521r1": "EC P-521"}.get(
            key.curve.name, f"EC {key.curve.name}"
        )
    return f"{kind} key {key_hint(key)[:16]}"


def _check_public(key: object, path: Path) -> PublicKey:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _CURVES:
        return key
    raise ConfigError(
        f"unsupported key type {type(key).__name__.lstrip('_')}",
        path=path,
        hint=f"use an {_SUPPORTED} key ('ml-integrity keygen' makes one)",
    )


def load_public_key(path: Path) -> PublicKey:
    """A public key from a PEM file; a certificate or a private key is refused, named."""
    data = _read(path, "public key")
    try:
        return _check_public(serialization.load_pem_public_key(data), path)
    except (ValueError, UnsupportedAlgorithm):
        pass
    if b"-----BEGIN CERTIFICATE-----" in data:
        raise ConfigError(
            "this is a certificate, not a public key",
            path=path,
            hint="for bundles signed with a certificate chain, trust the issuing CA with "
            f"--cert-chain ROOT.pem; to trust the certified key itself, extract it: "
            f"openssl x509 -in {path} -pubkey -noout > {path}.pub",
        )
    if b"PRIVATE KEY" in data:
        raise ConfigError(
            "this is a private key; verification needs the public key",
            path=path,
            hint=f"pass {path}.pub (from 'ml-integrity keygen'); keep the private key secret",
        )
    raise ConfigError(
        "not a PEM public key",
        path=path,
        hint="expected '-----BEGIN PUBLIC KEY-----' (SubjectPublicKeyInfo)",
    )


def load_private_key(path: Path, password: bytes | None = None) -> PrivateKey:
    data = _read(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except TypeError:
        raise ConfigError(
            "the private key is encrypted",
            path=path,
            hint="set ML_INTEGRITY_KEY_PASSWORD to its password",
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        if b"PUBLIC KEY" in data:
            raise ConfigError(
                "this is a public key; signing needs the private key",
                path=path,
                hint="pass the private key file (the one without .pub)",
            ) from None
        raise ConfigError(
            "not a PEM private key (or a wrong password)",
            path=path,
            hint="expected '-----BEGIN PRIVATE KEY-----' or '-----BEGIN EC PRIVATE KEY-----'",
        ) from None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _CURVES:
        return key
    raise ConfigError(
        f"unsupported key type {type(key).__name__.lstrip('_')}",
        path=path,
        hint=f"use an {_SUPPORTED} key ('ml-integrity keygen' makes one)",
    )


def generate(out: Path, key_type: str, *, force: bool = False) -> tuple[Path, Path]:
    """Write a new private key to ``out`` (mode 0600) and its public key to ``out.pub``."""
    key: PrivateKey
    if key_type == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    elif key_type in ("ec-p256", "ec-p384", "ec-p521"):
        curves: dict[str, ec.EllipticCurve] = {
            "ec-p256": ec.SECP256R1(),
            "ec-p384": ec.SECP384R1(),
            "ec-p521": ec.SECP521R1(),
        }
        key = ec.generate_private_key(curves[key_type])
    else:
        raise UsageError(f"unknown key type {key_type!r}", hint=f"choose one of {KEY_TYPES}")
    pub_path = out.with_name(out.name + ".pub")
    if not force:
        for p in (out, pub_path):
            if p.exists():
                raise UsageError(
                    "refusing to overwrite an existing key",
                    path=p,
                    hint="choose another --out, or pass --force",
                )
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    from ml_integrity.core.signing import write_atomic

    write_atomic(out, private, mode=0o600)
    write_atomic(pub_path, public_pem(key.public_key()))
    return out, pub_path


def _sign_bytes(key: PrivateKey, data: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    return key.sign(data, ec.ECDSA(_hash_for(key.public_key())))


def _verify_bytes(
    key: PublicKey, signature: bytes, data: bytes, *, legacy_sha256: bool = False
) -> bool:
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            digest = hashes.SHA256() if legacy_sha256 else _hash_for(key)
            key.verify(signature, data, ec.ECDSA(digest))
    except InvalidSignature:
        return False
    return True


def _load_certs(path: Path) -> list[x509.Certificate]:
    from cryptography import x509

    data = _read(path, "certificate file")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        try:
            certs = [x509.load_der_x509_certificate(data)]
        except ValueError:
            raise ConfigError(
                "no PEM or DER certificate in this file",
                path=path,
                hint="expected one or more '-----BEGIN CERTIFICATE-----' blocks",
            ) from None
    return certs


class KeySigner:
    """Signs with a private key; with ``cert_chain`` the bundle carries certificates."""

    def __init__(
        self,
        key_path: Path,
        *,
        cert_chain: Sequence[Path] = (),
        password: bytes | None = None,
    ) -> None:
        self.key = load_private_key(key_path, password)
        self.certificates: list[bytes] = []
        if cert_chain:
            certs = [c for p in cert_chain for c in _load_certs(p)]
            leaf_key = certs[0].public_key()
            if public_pem(_check_public(leaf_key, cert_chain[0])) != public_pem(
                self.key.public_key()
            ):
                raise ConfigError(
                    "the first certificate does not belong to the signing key",
                    path=cert_chain[0],
                    hint="--cert takes the leaf certificate of --key first, then intermediates",
                )
            self.certificates = [c.public_bytes(serialization.Encoding.DER) for c in certs]

    def describe(self) -> str:
        return describe_key(self.key.public_key())

    def sign_statement(self, statement: bytes) -> str:
        signature = _sign_bytes(self.key, oms.pae(oms.PAYLOAD_TYPE, statement))
        if self.certificates:
            return oms.make_bundle(statement, signature, certificates=self.certificates)
        return oms.make_bundle(statement, signature, key_hint=key_hint(self.key.public_key()))


def _wrong_method(bundle: oms.ParsedBundle, expected: str, source: str) -> SignatureError:
    how = {
        "key": "a public key (verify with --key)",
        "certificate": "a certificate chain (verify with --cert-chain)",
        "sigstore": "Sigstore keyless signing (verify with --identity and --issuer)",
    }[bundle.material]
    return SignatureError(
        f"bundle was signed with {how}, but {expected} was required",
        path=source,
        hint="verify with the trust material that matches how the model was signed",
    )


class KeyVerifier:
    """Trusts exactly one public key."""

    def __init__(self, public_key_path: Path) -> None:
        self.key = load_public_key(public_key_path)
        self.key_path = public_key_path

    @classmethod
    def from_pem(cls, pem: bytes, label: str) -> KeyVerifier:
        """Trust the public key in ``pem`` (already validated), named ``label`` in messages."""
        verifier = cls.__new__(cls)
        try:
            key = serialization.load_pem_public_key(pem)
        except (ValueError, UnsupportedAlgorithm):
            raise ConfigError("not a PEM public key", path=label) from None
        verifier.key = _check_public(key, Path(label))
        verifier.key_path = Path(label)
        return verifier

    def trust_fingerprint(self) -> str:
        """Digest of the trusted key (see :func:`verifying.trust_fingerprint`)."""
        return hashlib.sha256(b"ml-integrity key trust v1\0" + public_pem(self.key)).hexdigest()

    def verify_bundle(self, bundle: bytes, source: str) -> VerifiedPayload:
        parsed = oms.parse_bundle(bundle, source)
        if parsed.material != "key":
            raise _wrong_method(parsed, "a public key", source)
        ours = key_hint(self.key)
        if parsed.key_hint is not None and parsed.key_hint != ours:
            raise SignatureError(
                "bundle was signed by another key "
                f"(bundle key hint {parsed.key_hint[:16]}..., given key {ours[:16]}...)",
                path=source,
                hint=f"check that {self.key_path} is the public key of the signer",
            )
        if parsed.legacy_key_pem is not None:
            try:
                legacy = serialization.load_pem_public_key(parsed.legacy_key_pem)
            except (ValueError, UnsupportedAlgorithm):
                raise BundleError(
                    "publicKey.rawBytes is not a PEM public key", path=source
                ) from None
            if public_pem(legacy) != public_pem(self.key):  # type: ignore[arg-type]
                raise SignatureError(
                    "bundle names another public key than the one given",
                    path=source,
                    hint=f"check that {self.key_path} is the public key of the signer",
                )
        if not _verify_bytes(
            self.key, parsed.signature, parsed.signed_bytes, legacy_sha256=parsed.legacy_sha256
        ):
            raise SignatureError(
                f"signature does not verify with the {describe_key(self.key)}",
                path=source,
                hint="the bundle or its payload was altered, or another key signed it",
            )
        return VerifiedPayload(
            payload_type=parsed.payload_type,
            payload=parsed.payload,
            signer=describe_key(self.key),
            details={"method": "key", "key_hint": ours},
        )


class CertificateVerifier:
    """Trusts certificates that chain to one of the given anchors (root CAs)."""

    def __init__(self, anchors: Sequence[Path], *, at: datetime.datetime | None = None) -> None:
        self.anchors = [c for p in anchors for c in _load_certs(p)]
        self.anchor_paths = list(anchors)
        self.at = at

    @classmethod
    def from_pem(cls, pem: bytes, label: str) -> CertificateVerifier:
        """Trust the root certificates in ``pem`` (already validated), named ``label``."""
        from cryptography import x509

        verifier = cls.__new__(cls)
        try:
            verifier.anchors = x509.load_pem_x509_certificates(pem)
        except ValueError:
            raise ConfigError("no PEM certificate", path=label) from None
        verifier.anchor_paths = [Path(label)]
        verifier.at = None
        return verifier

    def trust_fingerprint(self) -> str:
        """Digest of the trust anchors (see :func:`verifying.trust_fingerprint`)."""
        h = hashlib.sha256(b"ml-integrity certificate trust v1\0")
        for der in sorted(c.public_bytes(serialization.Encoding.DER) for c in self.anchors):
            h.update(hashlib.sha256(der).digest())
        h.update(b"at:" + (self.at.isoformat().encode() if self.at else b"now"))
        return h.hexdigest()

    def verify_bundle(self, bundle: bytes, source: str) -> VerifiedPayload:
        from cryptography import x509
        from cryptography.x509 import verification as x509v

        parsed = oms.parse_bundle(bundle, source)
        if parsed.material != "certificate":
            raise _wrong_method(parsed, "a certificate chain", source)
        try:
            chain = [x509.load_der_x509_certificate(c) for c in parsed.certificates]
        except ValueError:
            raise BundleError("bundle carries a malformed certificate", path=source) from None
        leaf, intermediates = chain[0], chain[1:]
        now = self.at or datetime.datetime.now(datetime.timezone.utc)
        if not (leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc):
            raise SignatureError(
                f"signing certificate is not valid now (valid {leaf.not_valid_before_utc:%Y-%m-%d} "
                f"to {leaf.not_valid_after_utc:%Y-%m-%d})",
                path=source,
                hint="re-sign with a current certificate",
            )
        self._check_usage(leaf, source)
        builder = (
            x509v.PolicyBuilder()
            .store(x509v.Store(self.anchors))
            .time(now)
            .extension_policies(
                ca_policy=x509v.ExtensionPolicy.webpki_defaults_ca(),
                ee_policy=x509v.ExtensionPolicy.permit_all(),
            )
        )
        try:
            builder.build_client_verifier().verify(leaf, intermediates)
        except x509v.VerificationError as exc:
            raise SignatureError(
                f"certificate chain does not lead to a trusted root ({exc})",
                path=source,
                hint="pass the root CA that issued the signer's certificate with --cert-chain "
                f"(given: {', '.join(map(str, self.anchor_paths))})",
            ) from None
        key = _check_public(leaf.public_key(), Path(source))
        if not _verify_bytes(
            key, parsed.signature, parsed.signed_bytes, legacy_sha256=parsed.legacy_sha256
        ):
            raise SignatureError(
                "signature does not verify with the signing certificate's key",
                path=source,
                hint="the bundle or its payload was altered",
            )
        subject = leaf.subject.rfc4514_string()
        return VerifiedPayload(
            payload_type=parsed.payload_type,
            payload=parsed.payload,
            signer=f"certificate {subject}",
            details={
                "method": "certificate",
                "subject": subject,
                "issuer": leaf.issuer.rfc4514_string(),
                "serial": format(leaf.serial_number, "x"),
            },
        )

    @staticmethod
    def _check_usage(leaf: x509.Certificate, source: str) -> None:
        problem = end_entity_problem(leaf)
        if problem is not None:
            raise SignatureError(
                f"signing certificate {problem}",
                path=source,
                hint="sign with an end-entity certificate issued for signing (basicConstraints "
                "CA:FALSE or absent, keyUsage digitalSignature), not with a CA's certificate",
            )


def end_entity_problem(cert: x509.Certificate) -> str | None:
    """Why ``cert`` cannot be a signing leaf, or None.

    A signing leaf must be a signing certificate that cannot act as a CA: a
    keyUsage extension with digitalSignature and without keyCertSign (RFC 5280
    §4.2.1.3: only a certificate with keyCertSign can have issued others, so an
    intermediate or root CA presented as the leaf is refused). A basicConstraints
    CA:TRUE bit alone is not refused: without keyCertSign the certificate can
    issue nothing, and the OMS specification's and model-transparency's own
    certificate vectors sign with such leaves (model_signing accepts them).
    """
    from cryptography import x509

    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return "is not for signing (it has no keyUsage extension; digitalSignature is required)"
    if usage.key_cert_sign:
        return "is a CA certificate (its keyUsage includes keyCertSign), not a signing leaf"
    if not usage.digital_signature:
        return "is not for signing (no digitalSignature key usage)"
    return None


# --- policy rules from PEM text -----------------------------------------------------


def key_rule(pem: bytes, label: str, *, path: str | None = None) -> KeyRule:
    """A key rule from PEM text; ConfigError when it is not a usable public key."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        hint = (
            "this is a private key: give the public key (.pub)"
            if b"PRIVATE KEY" in pem
            else "expected '-----BEGIN PUBLIC KEY-----' (SubjectPublicKeyInfo)"
        )
        raise ConfigError(f"{label}: not a PEM public key", hint=hint) from None
    if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise ConfigError(f"{label}: unsupported key type (EC P-256/P-384/P-521 or Ed25519)")
    spki = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return KeyRule(pem=spki, label=label, fingerprint=hashlib.sha256(spki).hexdigest(), path=path)


def chain_rule(parts: Sequence[tuple[bytes, str]], *, paths: Sequence[str] = ()) -> ChainRule:
    """A certificate-chain rule from PEM texts (with labels); ConfigError if one holds none."""
    from cryptography import x509

    pems: list[bytes] = []
    subjects: list[str] = []
    for pem, label in parts:
        try:
            certs = x509.load_pem_x509_certificates(pem)
        except ValueError:
            raise ConfigError(
                f"{label}: no PEM certificate", hint="expected '-----BEGIN CERTIFICATE-----'"
            ) from None
        pems.append(pem if pem.endswith(b"\n") else pem + b"\n")
        subjects.extend(c.subject.rfc4514_string() for c in certs)
    return ChainRule(
        pem=b"".join(pems),
        label=", ".join(label for _, label in parts),
        subjects=tuple(subjects),
        paths=tuple(paths),
    )
