"""Encryption at rest and in transit: the streaming AES-256-GCM format, recipients, key providers.

The wire format is the AWS Encryption SDK message format version 2 with the
committing algorithm suite ``0x0478`` (AES-256-GCM, HKDF-SHA512, key
commitment, no signature: the plaintext is signed with OMS before it is
encrypted), framed with frames of 64 KiB to 1 MiB. ``docs/format.md``
("Encryption") specifies every byte; ``tests/crypto/vectors/`` holds vectors.

Owns:

- :mod:`.message`: the header and frames (serialize, parse, key derivation,
  commitment, header authentication);
- :mod:`.providers`: the :class:`~.providers.KeyProvider` protocol (wrap and
  unwrap a data key, as a cloud KMS does), the local providers (X25519
  recipients, AES-256 keys; symmetric keys are AWS "raw AES keyring"
  compatible) and the registry through which a KMS plug-in is found;
- :mod:`.keys`: key files (generate, load, refuse the wrong kind);
- :mod:`.stream`: encrypt a stream, decrypt a stream frame by frame
  (:func:`open_decrypted`, which never writes plaintext to disk), and whole
  files written to a temporary file renamed only after the last frame verified;
- :mod:`.tree`: files and folders (same layout) for the command line;
- :mod:`.content`: the plaintext digests of encrypted files, for
  ``verify --decryption-key`` (the :mod:`ml_integrity.core.content` seam).

The loader's API (``ml_integrity.data``) is :func:`open_decrypted` with keys
from :func:`load_decryption_keys`.

May import: :mod:`ml_integrity.core`, :mod:`ml_integrity.errors` and the
``cryptography`` library. This package is imported lazily (only when
encryption is asked for), so hooks and filters that do not encrypt never load
``cryptography`` through it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ml_integrity.crypto.keys import load_decryption_keys, load_recipients
    from ml_integrity.crypto.providers import EncryptedDataKey, KeyProvider
    from ml_integrity.crypto.stream import (
        DecryptingReader,
        decrypt_file,
        encrypt_file,
        is_encrypted,
        open_decrypted,
    )

__all__ = [
    "DecryptingReader",
    "EncryptedDataKey",
    "KeyProvider",
    "decrypt_file",
    "encrypt_file",
    "is_encrypted",
    "load_decryption_keys",
    "load_recipients",
    "open_decrypted",
]

_LAZY = {
    "load_decryption_keys": "keys",
    "load_recipients": "keys",
    "EncryptedDataKey": "providers",
    "KeyProvider": "providers",
    "DecryptingReader": "stream",
    "decrypt_file": "stream",
    "encrypt_file": "stream",
    "is_encrypted": "stream",
    "open_decrypted": "stream",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(f"ml_integrity.crypto.{module}"), name)
