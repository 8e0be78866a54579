"""The OpenSSF Model Signing (OMS) v1.0 format: statements and bundles.

Layers, outside in: a Sigstore bundle (``mediaType`` v0.3) holds a DSSE
envelope whose payload is an in-toto Statement v1 with the OMS predicate
``https://model_signing/signature/v1.0``. The predicate lists every file as
a resource (``name``, ``algorithm``, ``digest``) and records how the model
was enumerated (``serialization``). The statement's single subject carries
the root digest: SHA-256 over the raw digest bytes of the resources, in the
order listed.

We emit what ``model_signing`` 1.1.1 accepts (``files`` + ``sha256``,
resources ordered by path component, ``.`` as the name of a single-file
model) and accept on read both resource orders, both single-file names, and
the legacy key material. What OMS cannot carry goes in in-toto
``annotations``, which OMS verifiers ignore: the subject carries
``ml-integrity/repository`` and ``ml-integrity/version`` (rollback binding),
each resource may carry ``size`` and ``format``. See ``docs/format.md``.

Everything here is pure: bytes in, values out; a malformed input raises
:class:`~ml_integrity.errors.BundleError` (fail closed).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ml_integrity.core.manifest import (
    MAX_MANIFEST_SIZE,
    Manifest,
    is_sha256_hex,
    loads_limited,
    normalize_path,
)
from ml_integrity.errors import BundleError, ManifestError

__all__ = [
    "BUNDLE_MEDIA_TYPE",
    "PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "STATEMENT_TYPE",
    "ParsedBundle",
    "SignedModel",
    "build_statement",
    "make_bundle",
    "pae",
    "parse_bundle",
    "parse_statement",
    "root_digest",
]

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
_ACCEPTED_MEDIA_TYPES = frozenset(
    {BUNDLE_MEDIA_TYPE, "application/vnd.dev.sigstore.bundle+json;version=0.3"}
)
SINGLE_FILE_NAME = "."
"""Resource name of a single-file model, as model_signing writes it."""

ANN_REPOSITORY = "ml-integrity/repository"
ANN_VERSION = "ml-integrity/version"
MAX_BUNDLE_SIZE = MAX_MANIFEST_SIZE
"""Parse limit of a bundle (its payload is the statement, as large as a manifest)."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: the bytes a signature covers."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def root_digest(digests_hex: Sequence[str]) -> str:
    """SHA-256 over the raw digest bytes, in order: the OMS subject digest."""
    h = hashlib.sha256()
    for d in digests_hex:
        h.update(bytes.fromhex(d))
    return h.hexdigest()


def build_statement(
    manifest: Manifest,
    *,
    model_name: str,
    single_file: bool = False,
    ignore_paths: Sequence[str] = (),
) -> bytes:
    """The in-toto statement (exact bytes to sign) for ``manifest``."""
    if not manifest.entries:
        raise ManifestError("nothing to sign: the manifest is empty")
    if single_file and len(manifest.entries) != 1:
        raise ManifestError("a single-file statement needs exactly one entry")
    resources: list[dict[str, object]] = []
    for e in manifest.entries:  # already in path-component order
        res: dict[str, object] = {
            "name": SINGLE_FILE_NAME if single_file else e.path,
            "algorithm": "sha256",
            "digest": e.sha256,
        }
        ann: dict[str, object] = {"size": e.size}
        if e.format:
            ann["format"] = e.format
        ann.update(dict(sorted(e.annotations.items())))
        res["annotations"] = ann
        resources.append(res)
    serialization: dict[str, object] = {
        "method": "files",
        "hash_type": "sha256",
        "allow_symlinks": False,
    }
    if ignore_paths:
        serialization["ignore_paths"] = sorted(set(ignore_paths))
    subject: dict[str, object] = {
        "name": model_name or "model",
        "digest": {"sha256": root_digest([e.sha256 for e in manifest.entries])},
    }
    subject_ann: dict[str, object] = {}
    if manifest.repository is not None:
        subject_ann[ANN_REPOSITORY] = manifest.repository
    if manifest.version is not None:
        subject_ann[ANN_VERSION] = manifest.version
    if subject_ann:
        subject["annotations"] = subject_ann
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [subject],
        "predicateType": PREDICATE_TYPE,
        "predicate": {"resources": resources, "serialization": serialization},
    }
    return json.dumps(statement, indent=2, ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class SignedModel:
    """What a verified statement says was signed."""

    name: str
    resources: dict[str, str]
    """Resource name -> SHA-256 hex. A single-file model has the one name ``.``
    (or, as the OMS spec writes it, the file's base name)."""
    sizes: dict[str, int] = field(default_factory=dict)
    formats: dict[str, str] = field(default_factory=dict)
    allow_symlinks: bool = False
    ignore_paths: tuple[str, ...] = ()
    repository: str | None = None
    version: int | None = None

    @property
    def is_single_file(self) -> bool:
        return len(self.resources) == 1 and SINGLE_FILE_NAME in self.resources

    def to_manifest(self) -> Manifest:
        from ml_integrity.core.manifest import Entry

        return Manifest(
            tuple(
                Entry(path=n, size=self.sizes.get(n, -1), sha256=d, format=self.formats.get(n))
                for n, d in self.resources.items()
            ),
            repository=self.repository,
            version=self.version,
        )


def _require(cond: bool, message: str, source: str) -> None:
    if not cond:
        raise BundleError(
            message,
            path=source,
            hint="the bundle is not a valid OMS v1.0 statement; re-sign the model",
        )


def parse_statement(payload: bytes, source: str) -> SignedModel:
    """Validate an OMS statement (after its signature was verified)."""
    try:
        doc = loads_limited(payload, max_size=MAX_MANIFEST_SIZE)
    except ValueError as exc:
        raise BundleError(f"signed payload is not JSON: {exc}", path=source) from None
    _require(isinstance(doc, dict), "statement is not a JSON object", source)
    _require(
        doc.get("_type") == STATEMENT_TYPE,
        f"statement _type is {doc.get('_type')!r}, expected {STATEMENT_TYPE!r}",
        source,
    )
    ptype = doc.get("predicateType")
    _require(
        ptype == PREDICATE_TYPE,
        f"predicateType is {ptype!r}, expected {PREDICATE_TYPE!r}",
        source,
    )
    subjects = doc.get("subject")
    _require(
        isinstance(subjects, list) and len(subjects) == 1 and isinstance(subjects[0], dict),
        "statement must have exactly one subject",
        source,
    )
    subject = subjects[0]
    name = subject.get("name")
    _require(isinstance(name, str) and bool(name), "subject has no name", source)
    sdigest = subject.get("digest")
    _require(
        isinstance(sdigest, dict) and is_sha256_hex(sdigest.get("sha256")),
        "subject has no sha256 digest",
        source,
    )
    predicate = doc.get("predicate")
    _require(isinstance(predicate, dict), "statement has no predicate", source)
    ser = predicate.get("serialization")
    _require(isinstance(ser, dict), "predicate has no serialization", source)
    method = ser.get("method")
    _require(
        method == "files",
        f"serialization method {method!r} is not supported (only 'files'; "
        "sharded bundles are refused)",
        source,
    )
    _require(
        ser.get("hash_type") == "sha256",
        f"hash_type {ser.get('hash_type')!r} is not supported (only 'sha256')",
        source,
    )
    allow_symlinks = ser.get("allow_symlinks", False)
    _require(isinstance(allow_symlinks, bool), "allow_symlinks must be a boolean", source)
    ignore_raw = ser.get("ignore_paths", [])
    _require(
        isinstance(ignore_raw, list) and all(isinstance(p, str) and p for p in ignore_raw),
        "ignore_paths must be a list of paths",
        source,
    )
    resources_raw = predicate.get("resources")
    _require(
        isinstance(resources_raw, list) and len(resources_raw) > 0,
        "predicate lists no resources (an empty model is refused)",
        source,
    )
    resources: dict[str, str] = {}
    sizes: dict[str, int] = {}
    formats: dict[str, str] = {}
    for res in resources_raw:
        _require(isinstance(res, dict), "resource is not an object", source)
        rname = res.get("name")
        _require(isinstance(rname, str) and bool(rname), "resource has no name", source)
        assert isinstance(rname, str)
        if rname != SINGLE_FILE_NAME:
            try:
                rname = normalize_path(rname, source=source)
            except ManifestError as exc:
                raise BundleError(f"signed {exc.message}", path=source, hint=exc.hint) from None
        _require(
            res.get("algorithm") == "sha256",
            f"resource {rname!r} uses algorithm {res.get('algorithm')!r}, expected 'sha256'",
            source,
        )
        digest = res.get("digest")
        _require(is_sha256_hex(digest), f"resource {rname!r} has a malformed digest", source)
        _require(rname not in resources, f"resource {rname!r} is listed twice", source)
        assert isinstance(digest, str)
        resources[rname] = digest
        ann = res.get("annotations")
        if isinstance(ann, dict):
            if isinstance(ann.get("size"), int) and not isinstance(ann.get("size"), bool):
                sizes[rname] = ann["size"]
            if isinstance(ann.get("format"), str):
                formats[rname] = ann["format"]
    _require(
        root_digest([str(r["digest"]) for r in resources_raw]) == sdigest["sha256"],
        "subject digest does not match the listed resources (inconsistent statement)",
        source,
    )
    if SINGLE_FILE_NAME in resources:
        _require(len(resources) == 1, "'.' may only name a single-file model", source)
    repository = None
    version = None
    sann = subject.get("annotations")
    if isinstance(sann, dict):
        repo_val = sann.get(ANN_REPOSITORY)
        if repo_val is not None:
            _require(isinstance(repo_val, str), f"{ANN_REPOSITORY} must be a string", source)
            repository = repo_val
        ver_val = sann.get(ANN_VERSION)
        if ver_val is not None:
            _require(
                isinstance(ver_val, int) and not isinstance(ver_val, bool),
                f"{ANN_VERSION} must be an integer",
                source,
            )
            version = ver_val
    ignore_paths: list[str] = []
    for p in ignore_raw:
        try:
            ignore_paths.append(normalize_path(p))
        except ManifestError:
            continue  # an ignore path that escapes the root cannot hide anything inside it
    return SignedModel(
        name=name,
        resources=resources,
        sizes=sizes,
        formats=formats,
        allow_symlinks=allow_symlinks,
        ignore_paths=tuple(ignore_paths),
        repository=repository,
        version=version,
    )


# --- bundles ------------------------------------------------------------------

MaterialKind = Literal["key", "certificate", "sigstore"]


@dataclass(frozen=True)
class ParsedBundle:
    """The parts of a Sigstore bundle that verifiers need, validated structurally."""

    media_type: str
    payload_type: str
    payload: bytes
    signature: bytes
    material: MaterialKind
    key_hint: str | None = None
    legacy_key_pem: bytes | None = None
    certificates: tuple[bytes, ...] = ()
    """DER certificates, leaf first (certificate method) or the Fulcio leaf (sigstore)."""
    raw: Mapping[str, object] = field(default_factory=dict)

    @property
    def signed_bytes(self) -> bytes:
        return pae(self.payload_type, self.payload)


def _b64(value: object, what: str, source: str) -> bytes:
    _require(isinstance(value, str), f"{what} is missing or not a string", source)
    assert isinstance(value, str)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        try:  # DSSE allows URL-safe base64
            return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError):
            raise BundleError(f"{what} is not valid base64", path=source) from None


def parse_bundle(data: bytes, source: str) -> ParsedBundle:
    """Parse a bundle file strictly; anything unexpected raises BundleError."""
    if not data.strip():
        raise BundleError(
            "bundle is empty",
            path=source,
            hint="the signature file was truncated or never written; re-sign the model",
        )
    try:
        doc = loads_limited(data, max_size=MAX_BUNDLE_SIZE)
    except ValueError as exc:
        raise BundleError(
            f"bundle is not valid JSON ({exc})",
            path=source,
            hint="the file is corrupt or truncated; re-sign the model or fetch the bundle again",
        ) from None
    _require(isinstance(doc, dict), "bundle is not a JSON object", source)
    media_type = doc.get("mediaType")
    _require(
        media_type in _ACCEPTED_MEDIA_TYPES,
        f"unsupported bundle mediaType {media_type!r} (expected {BUNDLE_MEDIA_TYPE})",
        source,
    )
    env = doc.get("dsseEnvelope")
    _require(
        isinstance(env, dict),
        "bundle has no dsseEnvelope (OMS bundles sign an in-toto statement)",
        source,
    )
    _require("messageSignature" not in doc, "bundle has both messageSignature and dsse", source)
    payload_type = env.get("payloadType")
    _require(isinstance(payload_type, str), "dsseEnvelope has no payloadType", source)
    payload = _b64(env.get("payload"), "dsseEnvelope.payload", source)
    sigs = env.get("signatures")
    _require(
        isinstance(sigs, list) and len(sigs) == 1 and isinstance(sigs[0], dict),
        "dsseEnvelope must carry exactly one signature",
        source,
    )
    signature = _b64(sigs[0].get("sig"), "signature", source)
    vm = doc.get("verificationMaterial")
    _require(isinstance(vm, dict), "bundle has no verificationMaterial", source)
    material: MaterialKind
    key_hint = None
    legacy_pem = None
    certs: list[bytes] = []
    if "publicKey" in vm:
        pk = vm["publicKey"]
        _require(isinstance(pk, dict), "publicKey is not an object", source)
        _require(
            "x509CertificateChain" not in vm and "certificate" not in vm,
            "bundle mixes a public key with certificates",
            source,
        )
        material = "key"
        hint = pk.get("hint")
        if hint is not None:
            _require(isinstance(hint, str) and bool(hint), "publicKey.hint is malformed", source)
            key_hint = hint
        if pk.get("rawBytes") is not None:
            legacy_pem = _b64(pk.get("rawBytes"), "publicKey.rawBytes", source)
    elif "x509CertificateChain" in vm:
        chain = vm["x509CertificateChain"]
        _require(
            isinstance(chain, dict) and isinstance(chain.get("certificates"), list),
            "x509CertificateChain has no certificates",
            source,
        )
        for c in chain["certificates"]:
            _require(isinstance(c, dict), "certificate entry is not an object", source)
            certs.append(_b64(c.get("rawBytes"), "certificate", source))
        _require(len(certs) > 0, "x509CertificateChain is empty", source)
        material = "certificate"
    elif "certificate" in vm:
        cert = vm["certificate"]
        _require(isinstance(cert, dict), "certificate is not an object", source)
        certs.append(_b64(cert.get("rawBytes"), "certificate", source))
        tlog = vm.get("tlogEntries")
        _require(
            isinstance(tlog, list) and len(tlog) > 0,
            "keyless bundle has no transparency-log entry (tlogEntries)",
            source,
        )
        material = "sigstore"
    else:
        raise BundleError(
            "verificationMaterial holds no public key, certificate chain or certificate",
            path=source,
        )
    return ParsedBundle(
        media_type=str(media_type),
        payload_type=payload_type,
        payload=payload,
        signature=signature,
        material=material,
        key_hint=key_hint,
        legacy_key_pem=legacy_pem,
        certificates=tuple(certs),
        raw=doc,
    )


def make_bundle(
    statement: bytes,
    signature: bytes,
    *,
    key_hint: str | None = None,
    certificates: Sequence[bytes] = (),
) -> str:
    """A v0.3 bundle (JSON text) for a key or certificate-chain signature."""
    material: dict[str, object]
    if certificates:
        material = {
            "x509CertificateChain": {
                "certificates": [
                    {"rawBytes": base64.b64encode(c).decode("ascii")} for c in certificates
                ]
            },
            "tlogEntries": [],
        }
    else:
        material = {"publicKey": {"hint": key_hint}, "tlogEntries": []}
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": material,
        "dsseEnvelope": {
            "payload": base64.b64encode(statement).decode("ascii"),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(signature).decode("ascii"), "keyid": ""}],
        },
    }
    return json.dumps(bundle, indent=2) + "\n"
