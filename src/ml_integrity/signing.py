"""Sign a model folder, a single file or a repository as an OMS v1.0 bundle.

The use case is backend-neutral: it builds the manifest, turns it into an
in-toto statement with the OMS predicate (:mod:`ml_integrity.oms`) and asks a
:class:`Signer` to wrap it in a DSSE envelope inside a Sigstore bundle.
Backends: ``_keys.KeySigner`` (EC P-256/P-384, Ed25519, optionally with a
certificate chain) and ``_sigstore.SigstoreSigner`` (keyless).
"""

from __future__ import annotations

from typing import Protocol


class Signer(Protocol):
    """Signs an in-toto statement; returns the Sigstore bundle as JSON text.

    ``statement`` is the exact payload (``application/vnd.in-toto+json``) to
    sign; implementations must not re-serialise it.
    """

    def sign_statement(self, statement: bytes) -> str: ...

    def describe(self) -> str:
        """Who signs, for messages (a key fingerprint, an identity)."""
        ...
