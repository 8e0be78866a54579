"""Encryption key files: make them, read them, refuse the wrong kind with a clear reason.

Formats (``docs/crypto.md``):

- X25519 private key: PKCS#8 PEM (``-----BEGIN PRIVATE KEY-----``, mode 0600);
  its public key beside it as ``KEY.pub`` (SubjectPublicKeyInfo PEM). OpenSSL
  reads both (``openssl pkey -in KEY -text``).
- AES-256 key: ``-----BEGIN ML-INTEGRITY AES-256 KEY-----``, the 32 key bytes
  in base64, mode 0600. It is both a recipient and a decryption key.

A recipient must be a public X25519 key or an AES-256 key; a decryption key
a private X25519 key or an AES-256 key. A private key given as a recipient, a
public key given as a decryption key, or a signing key (EC, Ed25519, RSA)
given as either is a usage error (exit 2) that names the file and says what
to pass instead. ``SCHEME:REF`` names a plug-in provider (:mod:`.providers`).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Sequence
from pathlib import Path

from ml_integrity.core.fileio import write_atomic
from ml_integrity.crypto import providers
from ml_integrity.crypto.providers import AesKey, KeyProvider, X25519Identity, X25519Recipient
from ml_integrity.errors import UsageError

AES_PEM_LABEL = "ML-INTEGRITY AES-256 KEY"
_AES_RE = re.compile(
    rb"\A\s*-----BEGIN " + AES_PEM_LABEL.encode() + rb"-----\s*([A-Za-z0-9+/=\s]+?)\s*"
    rb"-----END " + AES_PEM_LABEL.encode() + rb"-----\s*\Z"
)
_MAX_KEY_FILE = 64 << 10
_KEYGEN_HINT = "make one with 'ml-integrity keygen --type x25519 --out KEY' (or --type aes256)"


def generate_x25519(out: Path, *, force: bool = False) -> tuple[Path, Path]:
    """Write a private key to ``out`` (0600) and its public key to ``out.pub``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    public_path = out.with_name(out.name + ".pub")
    _refuse_existing([out, public_path], force)
    key = X25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write(out, private_pem, 0o600)
    _write(public_path, public_pem, None)
    return out, public_path


def generate_aes256(out: Path, *, force: bool = False) -> Path:
    """Write a new random AES-256 key to ``out`` (0600)."""
    _refuse_existing([out], force)
    _write(out, aes_pem(os.urandom(32)), 0o600)
    return out


def aes_pem(key: bytes) -> bytes:
    body = base64.b64encode(key).decode()
    return f"-----BEGIN {AES_PEM_LABEL}-----\n{body}\n-----END {AES_PEM_LABEL}-----\n".encode()


def _refuse_existing(paths: Sequence[Path], force: bool) -> None:
    if force:
        return
    for path in paths:
        if path.exists() or path.is_symlink():
            raise UsageError(
                "key file already exists", path=path, hint="pass --force to overwrite it"
            )


def _write(path: Path, data: bytes, mode: int | None) -> None:
    try:
        write_atomic(path, data, mode=mode)
    except OSError as exc:
        raise UsageError(f"cannot write key file: {exc.strerror}", path=path) from None


def _read(path: Path, what: str) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(_MAX_KEY_FILE + 1)
    except FileNotFoundError:
        raise UsageError(f"{what} not found", path=path, hint=_KEYGEN_HINT) from None
    except IsADirectoryError:
        raise UsageError(f"{what} is a directory, expected a key file", path=path) from None
    except OSError as exc:
        raise UsageError(f"cannot read {what}: {exc.strerror}", path=path) from None
    if len(data) > _MAX_KEY_FILE:
        raise UsageError(f"{what} is too large to be a key file", path=path)
    return data


def _aes(data: bytes, path: Path, what: str) -> AesKey | None:
    if AES_PEM_LABEL.encode() not in data:
        return None
    match = _AES_RE.match(data)
    try:
        key = base64.b64decode(b"".join(match.group(1).split()), validate=True) if match else b""
    except binascii.Error:
        key = b""
    if len(key) != 32:
        raise UsageError(f"{what} is a malformed AES-256 key file", path=path, hint=_KEYGEN_HINT)
    return AesKey(key, providers.aes_key_name(key), label=str(path))


def _kind(key: object) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return f"EC {key.curve.name} key (a signing key)"
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return "Ed25519 key (a signing key)"
    if isinstance(key, (ed448.Ed448PrivateKey, ed448.Ed448PublicKey)):
        return "Ed448 key (a signing key)"
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "RSA key"
    return f"{type(key).__name__.lstrip('_')}"


def _load_pem(data: bytes, path: Path, what: str) -> tuple[str, object]:
    """("private" | "public", key) for a PEM key file."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    if b"PRIVATE KEY-----" in data:
        try:
            return "private", serialization.load_pem_private_key(data, password=None)
        except TypeError:
            raise UsageError(
                f"{what} is a password-protected private key",
                path=path,
                hint="decryption keys are read without a password; keep the key in a "
                "secret store and pass a decrypted copy, or use an AES-256 key file",
            ) from None
        except (ValueError, UnsupportedAlgorithm):
            raise UsageError(f"{what} is not a readable private key", path=path) from None
    if b"PUBLIC KEY-----" in data:
        try:
            return "public", serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm):
            raise UsageError(f"{what} is not a readable public key", path=path) from None
    raise UsageError(
        f"{what} is not a key file (no PEM key, no AES-256 key)", path=path, hint=_KEYGEN_HINT
    )


def load_recipient(spec: str | Path) -> KeyProvider:
    """A recipient: an X25519 public key file, an AES-256 key file, or ``SCHEME:REF``."""
    plugin = _plugin(spec)
    if plugin is not None:
        return plugin
    path = Path(spec)
    data = _read(path, "recipient key")
    aes = _aes(data, path, "recipient key")
    if aes is not None:
        return aes
    from cryptography.hazmat.primitives.asymmetric import x25519

    kind, key = _load_pem(data, path, "recipient key")
    if kind == "private":
        raise UsageError(
            "recipient key is a private key",
            path=path,
            hint=f"a recipient is a public key: pass {path}.pub (keep {path} secret)"
            if isinstance(key, x25519.X25519PrivateKey)
            else "pass the recipient's X25519 public key (KEY.pub)",
        )
    if not isinstance(key, x25519.X25519PublicKey):
        raise UsageError(
            f"recipient key is an {_kind(key)}, not an X25519 key",
            path=path,
            hint="encryption needs an X25519 public key; " + _KEYGEN_HINT,
        )
    return X25519Recipient(key, label=str(path))


def load_decryption_key(spec: str | Path) -> KeyProvider:
    """A decryption key: an X25519 private key file, an AES-256 key file, or ``SCHEME:REF``."""
    plugin = _plugin(spec)
    if plugin is not None:
        return plugin
    path = Path(spec)
    data = _read(path, "decryption key")
    aes = _aes(data, path, "decryption key")
    if aes is not None:
        return aes
    from cryptography.hazmat.primitives.asymmetric import x25519

    kind, key = _load_pem(data, path, "decryption key")
    if kind == "public":
        raise UsageError(
            "decryption key is a public key",
            path=path,
            hint="decryption needs the private key (the file without .pub)"
            if isinstance(key, x25519.X25519PublicKey)
            else "pass the X25519 private key the file was encrypted for",
        )
    if not isinstance(key, x25519.X25519PrivateKey):
        raise UsageError(
            f"decryption key is an {_kind(key)}, not an X25519 key",
            path=path,
            hint="pass the X25519 private key (or AES-256 key) the file was encrypted for",
        )
    return X25519Identity(key, label=str(path))


def _plugin(spec: str | Path) -> KeyProvider | None:
    if isinstance(spec, Path) or os.path.exists(spec):
        return None
    return providers.provider_for(spec)


def load_recipients(specs: Sequence[str | Path]) -> list[KeyProvider]:
    if not specs:
        raise UsageError("no recipient given", hint="pass --recipient PUB; " + _KEYGEN_HINT)
    return [load_recipient(s) for s in specs]


def load_decryption_keys(specs: Sequence[str | Path]) -> list[KeyProvider]:
    if not specs:
        raise UsageError("no decryption key given", hint="pass --key KEY")
    return [load_decryption_key(s) for s in specs]


KeySpec = object
"""What the Python API accepts as a decryption key (see :func:`as_decryption_keys`)."""

_resolved: dict[tuple[str, int, int], KeyProvider] = {}


def as_decryption_keys(key: KeySpec) -> list[KeyProvider]:
    """Decryption keys from what a caller of the Python API holds.

    - a :class:`~.providers.KeyProvider` (a plug-in, or a key loaded before);
    - a key file path (``str`` or :class:`os.PathLike`), or ``SCHEME:REF`` of a plug-in;
      key files are read once per process (again if the file changes);
    - ``bytes``: the content of a key file (PEM), or the 32 raw bytes of an
      AES-256 key (as kept in a secret store);
    - a list or tuple of any of these.

    Anything else is a :class:`~ml_integrity.errors.UsageError`.
    """
    if isinstance(key, (list, tuple)):
        return [k for item in key for k in as_decryption_keys(item)]
    if isinstance(key, KeyProvider):
        return [key]
    if isinstance(key, (bytes, bytearray, memoryview)):
        return [_from_bytes(bytes(key))]
    if isinstance(key, (str, os.PathLike)):
        spec = os.fspath(key)
        try:
            st = os.stat(spec)
        except OSError:
            return [load_decryption_key(spec)]
        cache_key = (os.path.abspath(spec), st.st_mtime_ns, st.st_size)
        provider = _resolved.get(cache_key)
        if provider is None:
            provider = _resolved[cache_key] = load_decryption_key(Path(spec))
        return [provider]
    raise UsageError(
        f"decryption_key of type {type(key).__name__} is not a key",
        hint="pass a key file path, its bytes, 32 raw AES-256 key bytes or a KeyProvider",
    )


def _from_bytes(data: bytes) -> KeyProvider:
    where = Path("<decryption key bytes>")
    if data.lstrip().startswith(b"-----BEGIN"):
        aes = _aes(data, where, "decryption key")
        if aes is not None:
            return aes
        from cryptography.hazmat.primitives.asymmetric import x25519

        kind, key = _load_pem(data, where, "decryption key")
        if kind == "private" and isinstance(key, x25519.X25519PrivateKey):
            return X25519Identity(key)
        raise UsageError(
            "decryption key bytes are not an X25519 private key or an AES-256 key",
            hint="pass the private key the data was encrypted for",
        )
    if len(data) == 32:
        return AesKey(data, providers.aes_key_name(data))
    raise UsageError(
        f"decryption key bytes are neither a key file nor a 32-byte AES-256 key "
        f"({len(data)} bytes)",
        hint="pass a key file path, its content, or the 32 raw bytes of an AES-256 key",
    )
