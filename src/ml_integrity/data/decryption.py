"""The seam for encrypted datasets: where :mod:`ml_integrity.crypto` plugs into the loader.

:func:`decryptor` is called once per process when a
:class:`~ml_integrity.data.VerifiedDataset` gets a ``decryption_key``. Without
the crypto package it raises the :class:`~ml_integrity.errors.UsageError`
"encryption support is not installed in this build".
"""

from __future__ import annotations

from collections.abc import Callable

from ml_integrity.data.reader import Source
from ml_integrity.errors import UsageError

__all__ = ["DECRYPTION_SEAM", "decryptor"]

DECRYPTION_SEAM = "ml_integrity.crypto.open_decrypted"
"""What the loader calls to read an encrypted item (see :func:`_decryptor`)."""


def decryptor(key: object) -> Callable[[str, str], Source] | None:
    """The decrypting opener for ``decryption_key``, or None without one.

    The seam for :mod:`ml_integrity.crypto`: it must provide
    ``open_decrypted(path: str, key: object) -> Source``, a stream of the
    plaintext with ``read(n)``, ``finish()`` (raise ``IntegrityError`` when
    the ciphertext was truncated, reordered or tampered) and ``close()``;
    plaintext never touches disk. The loader then checks the plaintext
    against the signed digest, as for plain items.
    """
    if key is None:
        return None
    import importlib

    try:
        crypto = importlib.import_module("ml_integrity.crypto")
    except ImportError:
        crypto = None
    opener = getattr(crypto, "open_decrypted", None)
    if opener is None:
        raise UsageError(
            "encryption support is not installed in this build",
            hint="install an ml-integrity build with ml_integrity.crypto, or pass no "
            "decryption_key for a dataset that is not encrypted",
        )

    def open_item(full: str, rel: str) -> Source:
        source: Source = opener(full, key)
        return source

    return open_item
