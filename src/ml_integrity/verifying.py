"""Verify an OMS bundle over a model folder, a single file or a repository.

Order, always: the signature (DSSE over the payload), then trust (the key,
the certificate chain or the Sigstore identity given by the caller), then the
digests (the signed resources against the content on disk). A failure at any
step raises an :class:`~ml_integrity.errors.IntegrityError` subclass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class VerifiedPayload:
    """The payload of a bundle whose signature and signer were verified."""

    payload_type: str
    payload: bytes
    signer: str
    """Who signed, for the verdict (key fingerprint, certificate subject, identity)."""
    details: dict[str, object]
    """Backend facts for JSON output (e.g. transparency-log index, issuer)."""


class BundleVerifier(Protocol):
    """Checks a bundle's signature and that its signer is trusted.

    ``bundle`` is the raw bundle file content and ``source`` its file name,
    for messages. Raises ``BundleError`` when the bundle cannot be parsed and
    ``SignatureError`` when the signature or signer is wrong. Returns the
    verified payload; the caller checks the payload type and the digests.
    """

    def verify_bundle(self, bundle: bytes, source: str) -> VerifiedPayload: ...
