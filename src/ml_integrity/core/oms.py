"""The OpenSSF Model Signing (OMS) v1.0 format: statements and bundles.

Layers, outside in: a Sigstore bundle (``mediaType`` v0.3) holds a DSSE
envelope whose payload is an in-toto Statement v1 with the OMS predicate
``https://model_signing/signature/v1.0``. The predicate lists every file as
a resource (``name``, ``algorithm``, ``digest``) and records how the model
was enumerated (``serialization``). The statement's single subject carries
the root digest: SHA-256 over the raw digest bytes of the resources, in the
order listed.

We emit what ``model_signing`` 1.1.1 accepts (``files`` or ``shards``;
``sha256``, ``blake2b`` or ``blake3``; resources ordered by path component,
``.`` as the name of a single-file model; see :mod:`oms_predicate`) and
accept on read both resource orders, both single-file names, both spellings
of a shard's algorithm and size, the legacy key material, and model_signing
0.2.0's statements (:mod:`legacy_v02`). What OMS cannot carry goes in in-toto
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
from typing import Any, Literal

from ml_integrity.core import legacy_v02
from ml_integrity.core.hashing_algorithms import is_hex_digest
from ml_integrity.core.manifest import (
    MAX_MANIFEST_SIZE,
    Manifest,
    is_sha256_hex,
    loads_limited,
)
from ml_integrity.core.oms_predicate import (
    SINGLE_FILE_NAME,
    Resource,
    Serialization,
    check_shards,
    parse_serialization,
    resource_path,
    shard_name,
    split_shard,
)
from ml_integrity.errors import BundleError, ManifestError

__all__ = [
    "BUNDLE_MEDIA_TYPE",
    "PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "SINGLE_FILE_NAME",
    "STATEMENT_TYPE",
    "ParsedBundle",
    "Resource",
    "Serialization",
    "SignedModel",
    "build_statement",
    "make_bundle",
    "pae",
    "parse_bundle",
    "parse_statement",
    "root_digest",
    "shard_name",
    "statement_bytes",
]

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
_ACCEPTED_MEDIA_TYPES = frozenset(
    {BUNDLE_MEDIA_TYPE, "application/vnd.dev.sigstore.bundle+json;version=0.3"}
)
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
    allow_symlinks: bool = False,
) -> bytes:
    """The in-toto statement (exact bytes to sign) for a SHA-256 ``manifest`` of files."""
    if not manifest.entries:
        raise ManifestError("nothing to sign: the manifest is empty")
    if single_file and len(manifest.entries) != 1:
        raise ManifestError("a single-file statement needs exactly one entry")
    resources: list[Resource] = []
    for e in manifest.entries:  # already in path-component order
        ann: dict[str, object] = {"size": e.size}
        if e.format:
            ann["format"] = e.format
        ann.update(dict(sorted(e.annotations.items())))
        resources.append(
            Resource(SINGLE_FILE_NAME if single_file else e.path, "sha256", e.sha256, ann)
        )
    return statement_bytes(
        resources,
        Serialization(ignore_paths=tuple(ignore_paths), allow_symlinks=allow_symlinks),
        model_name=model_name,
        repository=manifest.repository,
        version=manifest.version,
    )


def statement_bytes(
    resources: Sequence[Resource],
    serialization: Serialization,
    *,
    model_name: str,
    repository: str | None = None,
    version: int | None = None,
) -> bytes:
    """The in-toto statement for ``resources``, listed in the order given."""
    if not resources:
        raise ManifestError("nothing to sign: the model has no file to sign")
    listed: list[dict[str, object]] = []
    for r in resources:
        res: dict[str, object] = {"name": r.name, "algorithm": r.algorithm, "digest": r.digest}
        if r.annotations:
            res["annotations"] = dict(r.annotations)
        listed.append(res)
    subject: dict[str, object] = {
        "name": model_name or "model",
        "digest": {"sha256": root_digest([r.digest for r in resources])},
    }
    subject_ann: dict[str, object] = {}
    if repository is not None:
        subject_ann[ANN_REPOSITORY] = repository
    if version is not None:
        subject_ann[ANN_VERSION] = version
    if subject_ann:
        subject["annotations"] = subject_ann
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [subject],
        "predicateType": PREDICATE_TYPE,
        "predicate": {"resources": listed, "serialization": serialization.to_json()},
    }
    return json.dumps(statement, indent=2, ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class SignedModel:
    """What a verified statement says was signed."""

    name: str
    resources: dict[str, str]
    """Resource name -> hex digest (of :attr:`hash_type`). A single-file model
    has the one name ``.`` (or, as the OMS spec writes it, the file's base
    name). In a shard bundle the names are ``path:start:end``."""
    sizes: dict[str, int] = field(default_factory=dict)
    formats: dict[str, str] = field(default_factory=dict)
    allow_symlinks: bool = False
    ignore_paths: tuple[str, ...] = ()
    repository: str | None = None
    version: int | None = None
    hash_type: str = "sha256"
    method: Literal["files", "shards"] = "files"
    shard_size: int | None = None
    shards: Mapping[str, tuple[tuple[int, int, str], ...]] = field(default_factory=dict)
    """Shard bundles: file path -> its ``(start, end, digest)`` shards, in order."""
    legacy: str | None = None
    """``"v0.2.0"`` for a historical model_signing 0.2.0 bundle (verified, never made)."""

    @property
    def is_single_file(self) -> bool:
        return self.files == {SINGLE_FILE_NAME}

    @property
    def files(self) -> set[str]:
        """The signed file paths (for shards: the files the shards belong to)."""
        return set(self.shards) if self.method == "shards" else set(self.resources)

    @property
    def is_sha256_files(self) -> bool:
        """True when every resource is a whole file's SHA-256 (what LFS oids are)."""
        return self.method == "files" and self.hash_type == "sha256"

    @property
    def format_name(self) -> str:
        """How the verdict names the bundle format."""
        if self.legacy:
            return f"legacy {self.legacy} bundle"
        return "OMS v1.0"

    @property
    def hashing(self) -> str:
        """The signed hashing, for messages (``sha256 files``, ``sha256 shards of N bytes``)."""
        if self.method == "shards":
            return f"{self.hash_type} shards of {self.shard_size} bytes"
        return f"{self.hash_type} files"


def parse_subject(doc: dict[str, Any], source: str) -> dict[str, Any]:
    """The one subject of an in-toto statement, checked: a name and a sha256 digest."""
    subjects = doc.get("subject")
    _require(
        isinstance(subjects, list) and len(subjects) == 1 and isinstance(subjects[0], dict),
        "statement must have exactly one subject",
        source,
    )
    assert isinstance(subjects, list)
    subject: dict[str, Any] = subjects[0]
    name = subject.get("name")
    _require(isinstance(name, str) and bool(name), "subject has no name", source)
    sdigest = subject.get("digest")
    _require(
        isinstance(sdigest, dict) and is_sha256_hex(sdigest.get("sha256")),
        "subject has no sha256 digest",
        source,
    )
    return subject


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
    if ptype == legacy_v02.PREDICATE_TYPE:
        return legacy_v02.parse_statement(doc, source)
    _require(
        ptype == PREDICATE_TYPE,
        f"predicateType is {ptype!r}, expected {PREDICATE_TYPE!r}",
        source,
    )
    subject = parse_subject(doc, source)
    name, sdigest = subject["name"], subject["digest"]
    predicate = doc.get("predicate")
    _require(isinstance(predicate, dict), "statement has no predicate", source)
    ser = parse_serialization(predicate.get("serialization"), source)
    resources_raw = predicate.get("resources")
    _require(
        isinstance(resources_raw, list) and len(resources_raw) > 0,
        "predicate lists no resources (an empty model is refused)",
        source,
    )
    resources: dict[str, str] = {}
    sizes: dict[str, int] = {}
    formats: dict[str, str] = {}
    shards: dict[str, list[tuple[int, int, str]]] = {}
    algorithms = {ser.hash_type, ser.resource_algorithm()}
    for res in resources_raw:
        _require(isinstance(res, dict), "resource is not an object", source)
        rname = res.get("name")
        _require(isinstance(rname, str) and bool(rname), "resource has no name", source)
        assert isinstance(rname, str)
        if ser.method == "shards":
            path, start, end = split_shard(rname, source)
            rname = shard_name(path, start, end)
        else:
            path, start, end = resource_path(rname, source), 0, 0
            rname = path
        # (each message is built only when its check fails: thousands of resources)
        if res.get("algorithm") not in algorithms:
            _require(
                False,
                f"resource {rname!r} uses algorithm {res.get('algorithm')!r}, expected "
                + " or ".join(repr(a) for a in sorted(algorithms)),
                source,
            )
        digest = res.get("digest")
        if not is_hex_digest(digest, ser.hash_type):
            _require(False, f"resource {rname!r} has a malformed {ser.hash_type} digest", source)
        if rname in resources:
            _require(False, f"resource {rname!r} is listed twice", source)
        assert isinstance(digest, str)
        resources[rname] = digest
        if ser.method == "shards":
            shards.setdefault(path, []).append((start, end, digest))
        ann = res.get("annotations")
        if isinstance(ann, dict) and ser.method == "files":
            if isinstance(ann.get("size"), int) and not isinstance(ann.get("size"), bool):
                sizes[rname] = ann["size"]
            if isinstance(ann.get("format"), str):
                formats[rname] = ann["format"]
    _require(
        root_digest([str(r["digest"]) for r in resources_raw]) == sdigest["sha256"],
        "subject digest does not match the listed resources (inconsistent statement)",
        source,
    )
    ordered_shards = {p: check_shards(p, s, ser, source) for p, s in shards.items()}
    files = set(ordered_shards) if ser.method == "shards" else set(resources)
    if SINGLE_FILE_NAME in files:
        _require(len(files) == 1, "'.' may only name a single-file model", source)
    repository, version = _subject_binding(subject.get("annotations"), source)
    return SignedModel(
        name=name,
        resources=resources,
        sizes=sizes,
        formats=formats,
        allow_symlinks=ser.allow_symlinks,
        ignore_paths=ser.ignore_paths,
        repository=repository,
        version=version,
        hash_type=ser.hash_type,
        method=ser.method,
        shard_size=ser.shard_size,
        shards=ordered_shards,
    )


def _subject_binding(sann: object, source: str) -> tuple[str | None, int | None]:
    repository = None
    version = None
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
    return repository, version


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
    legacy: bool = False
    """The payload is a model_signing 0.2.0 statement (:mod:`legacy_v02`)."""

    @property
    def signed_bytes(self) -> bytes:
        """What the signature covers: DSSE's encoding, or 0.2.0's own for its
        key and certificate bundles (keyless ones always used DSSE's)."""
        if self.legacy and self.material != "sigstore":
            return legacy_v02.pae(self.payload_type, self.payload)
        return pae(self.payload_type, self.payload)

    @property
    def legacy_sha256(self) -> bool:
        """model_signing 0.2.0 hashed what it signed with SHA-256 whatever the curve
        (key and certificate bundles; a P-384 key, for one, normally uses SHA-384)."""
        return self.legacy and self.material != "sigstore"


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
        legacy=legacy_v02.is_legacy_payload(payload),
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
