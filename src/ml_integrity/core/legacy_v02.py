"""The historical model_signing 0.2.0 bundle: verified, never produced.

Before OMS v1.0, model_signing 0.2.0 signed a different statement and a
different byte string, and bundles of that era are still around (the OMS
spec says verifiers MAY accept them; the conformance suite checks it):

- the predicate type is ``https://model_signing/Digests/v0.1`` and the
  predicate carries nothing; every file is one in-toto **subject**
  (``name`` = its relative path, ``digest.sha256``, annotation
  ``actual_hash_algorithm: file-sha256``). There is no root digest, no
  serialization block (it means files + SHA-256, no symbolic links) and no
  model name;
- the signature covers 0.2.0's own pre-authentication encoding, which
  differs from DSSE's (:func:`pae`): the prefix is ``DSSEV1`` (capital V)
  and the payload is inserted as Python's ``repr`` of the bytes
  (``b'...'`` with escapes) instead of the bytes themselves. The prefix
  cannot be confused with a DSSE one, and it is used only for key and
  certificate bundles whose payload has the legacy predicate type; keyless
  bundles were always signed by sigstore-python, with DSSE's encoding.

Verdicts name the format ("legacy v0.2.0 bundle"); re-signing produces OMS v1.0.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ml_integrity.core.manifest import is_sha256_hex, normalize_path
from ml_integrity.errors import BundleError, ManifestError

if TYPE_CHECKING:
    from ml_integrity.core.oms import SignedModel

__all__ = ["FORMAT", "PREDICATE_TYPE", "is_legacy_payload", "pae", "parse_statement"]

PREDICATE_TYPE = "https://model_signing/Digests/v0.1"
FORMAT = "v0.2.0"
_HASH_ANNOTATION = "actual_hash_algorithm"
_FILE_SHA256 = "file-sha256"


def pae(payload_type: str, payload: bytes) -> bytes:
    """model_signing 0.2.0's pre-authentication encoding (not DSSE's; see above)."""
    return f"DSSEV1 {len(payload_type)} {payload_type} {len(payload)} {payload!r}".encode()


def is_legacy_payload(payload: bytes) -> bool:
    """True when ``payload`` is a statement with the v0.2.0 predicate type.

    Only chooses which encoding the signature is checked against; the
    statement itself is validated after the signature verified.
    """
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(doc, dict) and doc.get("predicateType") == PREDICATE_TYPE


def _require(cond: bool, message: str, source: str) -> None:
    if not cond:
        raise BundleError(
            f"legacy v0.2.0 bundle: {message}",
            path=source,
            hint="re-sign the model with a current signer (OMS v1.0)",
        )


def parse_statement(doc: dict[str, object], source: str) -> SignedModel:
    """The signed files of a verified v0.2.0 statement."""
    from ml_integrity.core.oms import SINGLE_FILE_NAME, SignedModel

    subjects = doc.get("subject")
    _require(
        isinstance(subjects, list) and len(subjects) > 0,
        "statement lists no subject (an empty model is refused)",
        source,
    )
    assert isinstance(subjects, list)
    resources: dict[str, str] = {}
    for subject in subjects:
        _require(isinstance(subject, dict), "subject is not an object", source)
        name = subject.get("name")
        _require(isinstance(name, str) and bool(name), "subject has no name", source)
        assert isinstance(name, str)
        if name != SINGLE_FILE_NAME:
            try:
                name = normalize_path(name, source=source)
            except ManifestError as exc:
                raise BundleError(f"signed {exc.message}", path=source, hint=exc.hint) from None
        digest = subject.get("digest")
        _require(
            isinstance(digest, dict) and is_sha256_hex(digest.get("sha256")),
            f"subject {name!r} has no sha256 digest",
            source,
        )
        assert isinstance(digest, dict)
        annotations = subject.get("annotations", {})
        algorithm = annotations.get(_HASH_ANNOTATION) if isinstance(annotations, dict) else None
        _require(
            algorithm in (None, _FILE_SHA256),
            f"subject {name!r} was hashed as {algorithm!r}; only {_FILE_SHA256!r} is understood",
            source,
        )
        _require(name not in resources, f"subject {name!r} is listed twice", source)
        resources[name] = str(digest["sha256"])
    if SINGLE_FILE_NAME in resources:
        _require(len(resources) == 1, "'.' may only name a single-file model", source)
    return SignedModel(name="(unnamed: legacy v0.2.0)", resources=resources, legacy=FORMAT)
