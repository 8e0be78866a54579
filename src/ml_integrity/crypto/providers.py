"""Key providers: who can wrap a file's data key, and who can unwrap it.

A file is encrypted under a fresh random data key; the header holds that key
wrapped once per recipient, as an :class:`EncryptedDataKey` (provider id,
provider info, ciphertext: the AWS Encryption SDK's triple). A
:class:`KeyProvider` does the wrapping and the unwrapping, like a cloud KMS's
``Encrypt`` and ``Decrypt`` calls. Shipped, local-file providers:

- :class:`X25519Recipient` / :class:`X25519Identity` (provider id
  ``ml-integrity/x25519``): an ephemeral X25519 key agreement with the
  recipient's public key, HKDF-SHA256 and AES-256-GCM, as age does it; the
  provider info is the SHA-256 of the recipient's raw public key, so a reader
  finds its own wrapped key without trying the others.
- :class:`AesKey` (provider id ``ml-integrity``): a symmetric 256-bit key, the
  AWS Encryption SDK "raw AES keyring" layout (key name, tag bits, IV length,
  IV), so the AWS SDKs can decrypt what ml-integrity encrypts with such a key.

A cloud KMS plugs in as a distribution that registers a factory under the
``ml_integrity.key_providers`` entry-point group (see ``docs/crypto.md``);
``--recipient SCHEME:REF`` and ``--key SCHEME:REF`` then reach it through
:func:`provider_for`. None is built in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

X25519_PROVIDER = "ml-integrity/x25519"
AES_PROVIDER = "ml-integrity"
"""The AWS raw AES keyring's "key namespace" for ml-integrity AES-256 key files."""
X25519_INFO = b"ml-integrity/x25519 v1"
ENTRY_POINT_GROUP = "ml_integrity.key_providers"
_ZERO_IV = bytes(12)


@dataclass(frozen=True)
class EncryptedDataKey:
    """One recipient's copy of the data key, as stored in the header."""

    provider_id: str
    provider_info: bytes
    ciphertext: bytes

    def describe(self) -> str:
        if self.provider_id == X25519_PROVIDER:
            return f"X25519 key {self.provider_info.hex()[:16]}"
        if self.provider_id == AES_PROVIDER:
            name = self.provider_info[:-20] if len(self.provider_info) > 20 else b""
            return f"AES-256 key {name.decode('utf-8', 'replace')}"
        return f"{self.provider_id} key {self.provider_info[:64].decode('utf-8', 'replace')}"


@runtime_checkable
class KeyProvider(Protocol):
    """Wraps and unwraps data keys: a local key file, or a cloud KMS.

    ``context`` is the header's serialized encryption context; it must be
    bound to the wrapped key (as associated data, or the KMS's own context).
    """

    def describe(self) -> str:
        """Who this is, for messages (``X25519 key 3f2a...``, a KMS key ARN)."""
        ...

    def wrap(self, data_key: bytes, context: bytes) -> EncryptedDataKey:
        """The data key wrapped for this recipient."""
        ...

    def unwrap(self, edk: EncryptedDataKey, context: bytes) -> bytes | None:
        """The data key, or None when ``edk`` is not for this key or does not unwrap."""
        ...


def _aesgcm(key: bytes):  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def _open(key: bytes, iv: bytes, sealed: bytes, aad: bytes) -> bytes | None:
    from cryptography.exceptions import InvalidTag

    try:
        opened: bytes = _aesgcm(key).decrypt(iv, sealed, aad)
    except InvalidTag:
        return None
    return opened


def x25519_key_id(public_raw: bytes) -> bytes:
    return hashlib.sha256(public_raw).digest()


def _x25519_wrap_key(shared: bytes, ephemeral_raw: bytes, recipient_raw: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=ephemeral_raw + recipient_raw, info=X25519_INFO
    ).derive(shared)


def _raw(public: X25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class X25519Recipient:
    """An X25519 public key: can wrap a data key for its owner, not unwrap."""

    def __init__(self, public: X25519PublicKey, label: str = "") -> None:
        self._public = public
        self._raw = _raw(public)
        self.key_id = x25519_key_id(self._raw)
        self.label = label

    def describe(self) -> str:
        where = f" ({self.label})" if self.label else ""
        return f"X25519 key {self.key_id.hex()[:16]}{where}"

    def wrap(self, data_key: bytes, context: bytes) -> EncryptedDataKey:
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        ephemeral = X25519PrivateKey.generate()
        ephemeral_raw = _raw(ephemeral.public_key())
        shared = ephemeral.exchange(self._public)
        wrap_key = _x25519_wrap_key(shared, ephemeral_raw, self._raw)
        sealed: bytes = _aesgcm(wrap_key).encrypt(_ZERO_IV, data_key, context)
        return EncryptedDataKey(X25519_PROVIDER, self.key_id, ephemeral_raw + sealed)

    def unwrap(self, edk: EncryptedDataKey, context: bytes) -> bytes | None:
        return None


class X25519Identity(X25519Recipient):
    """An X25519 private key: unwraps what was wrapped for its public key."""

    def __init__(self, private: X25519PrivateKey, label: str = "") -> None:
        super().__init__(private.public_key(), label)
        self._private = private

    def unwrap(self, edk: EncryptedDataKey, context: bytes) -> bytes | None:
        if edk.provider_id != X25519_PROVIDER or edk.provider_info != self.key_id:
            return None
        if len(edk.ciphertext) != 32 + 32 + 16:
            return None
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

        ephemeral_raw = edk.ciphertext[:32]
        try:
            shared = self._private.exchange(X25519PublicKey.from_public_bytes(ephemeral_raw))
        except ValueError:  # a low-order point: the shared secret would be all zero
            return None
        wrap_key = _x25519_wrap_key(shared, ephemeral_raw, self._raw)
        return _open(wrap_key, _ZERO_IV, edk.ciphertext[32:], context)


class AesKey:
    """A symmetric AES-256 key (AWS raw AES keyring layout): wraps and unwraps."""

    def __init__(self, key: bytes, name: str, label: str = "") -> None:
        if len(key) != 32:
            raise ValueError("an AES-256 key is 32 bytes")
        self._key = key
        self.name = name
        self.label = label
        self._prefix = name.encode() + (128).to_bytes(4, "big") + (12).to_bytes(4, "big")

    def describe(self) -> str:
        where = f" ({self.label})" if self.label else ""
        return f"AES-256 key {self.name}{where}"

    def wrap(self, data_key: bytes, context: bytes) -> EncryptedDataKey:
        import os

        iv = os.urandom(12)
        sealed: bytes = _aesgcm(self._key).encrypt(iv, data_key, context)
        return EncryptedDataKey(AES_PROVIDER, self._prefix + iv, sealed)

    def unwrap(self, edk: EncryptedDataKey, context: bytes) -> bytes | None:
        info = edk.provider_info
        if edk.provider_id != AES_PROVIDER or len(info) != len(self._prefix) + 12:
            return None
        if not info.startswith(self._prefix) or len(edk.ciphertext) != 32 + 16:
            return None
        return _open(self._key, info[-12:], edk.ciphertext, context)


def aes_key_name(key: bytes) -> str:
    """A key's name in headers: derived from the key, so nobody has to choose one."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    digest = HKDF(hashes.SHA256(), 8, salt=None, info=b"ml-integrity aes256 key id").derive(key)
    return "aes256-" + digest.hex()


ProviderFactory = Callable[[str], KeyProvider]
"""Makes a provider from the reference after ``SCHEME:`` (a KMS key id, an ARN)."""

_registered: dict[str, ProviderFactory] = {}


def register(scheme: str, factory: ProviderFactory) -> None:
    """Register a provider factory for ``SCHEME:REF`` (tests; plug-ins use entry points)."""
    _registered[scheme] = factory


def provider_for(spec: str) -> KeyProvider | None:
    """The plug-in provider for ``SCHEME:REF``, or None when no plug-in has that scheme."""
    scheme, sep, ref = spec.partition(":")
    if not sep or not scheme.isidentifier():
        return None
    factory = _registered.get(scheme)
    if factory is None:
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == scheme:
                factory = ep.load()
                break
    if factory is None:
        return None
    provider = factory(ref)
    if not isinstance(provider, KeyProvider):
        raise TypeError(f"key provider plug-in {scheme!r} returned {type(provider).__name__}")
    return provider
