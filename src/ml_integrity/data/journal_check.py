"""Read and verify a sealed training journal.

Order, as for models: the signature and the signer (through the policy's
verifier, :class:`ml_integrity.trust.verdict.PolicyVerifier`), then the
statement and predicate (strictly; a sidecar must match the digest the
predicate signed, and every dataset's Merkle root its items), then the
subject against the model folder when one is given, then each dataset given
with its bundle: the bundle verifies under the same policy, the folder
matches it, and its manifest is the one the journal names. Every failure is
an :class:`~ml_integrity.errors.IntegrityError` (exit 1) naming the file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml_integrity.core import oms
from ml_integrity.core.verifying import read_bundle
from ml_integrity.data import merkle
from ml_integrity.data.journal import JOURNAL_PREDICATE_TYPE, SIDECAR_SUFFIX, model_digest
from ml_integrity.errors import BundleError, IntegrityError, ManifestDiff, UsageError

if TYPE_CHECKING:
    from ml_integrity.trust.policy import Policy
    from ml_integrity.trust.verdict import VerifierFactory

__all__ = ["DatasetRecord", "JournalVerdict", "SealedJournal", "read_journal", "verify_journal"]


@dataclass(frozen=True)
class DatasetRecord:
    """One dataset (and split) of a sealed journal."""

    index: int
    name: str
    split: str | None
    root_digest: str
    files: int
    bundle_digest: str
    signer: str
    method: str
    count: int
    reads: int
    merkle_root: str
    items: tuple[tuple[str, str, int], ...] = ()
    """(path, sha256, reads), when read from the predicate or the sidecar."""

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "split": self.split,
            "manifest_sha256": self.root_digest,
            "files": self.files,
            "bundle_sha256": self.bundle_digest,
            "signer": self.signer,
            "method": self.method,
            "items": self.count,
            "reads": self.reads,
            "merkle_root": self.merkle_root,
        }


@dataclass(frozen=True)
class SealedJournal:
    path: Path
    model_name: str
    model_digest: str
    datasets: tuple[DatasetRecord, ...]
    predicate: dict[str, Any]
    material: str
    """How the journal itself was signed (key, certificate, sigstore), unverified."""
    signer: str = ""
    """Who signed the journal; set once the signature was verified."""
    details: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "journal": str(self.path),
            "model": {"name": self.model_name, "sha256": self.model_digest},
            "signer": self.signer or None,
            "signing_method": self.material,
            "datasets": [d.to_json() for d in self.datasets],
            "started": self.predicate.get("started"),
            "sealed": self.predicate.get("sealed"),
        }


def _bad(message: str, source: str) -> BundleError:
    return BundleError(
        message, path=source, hint="the journal is not a valid sealed training journal"
    )


def parse_journal(payload: bytes, path: Path, material: str) -> SealedJournal:
    """Validate the statement of a journal (after its signature was verified)."""
    source = str(path)
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _bad("signed payload is not JSON", source) from None
    if not isinstance(doc, dict) or doc.get("_type") != oms.STATEMENT_TYPE:
        raise _bad("not an in-toto Statement v1", source)
    if doc.get("predicateType") != JOURNAL_PREDICATE_TYPE:
        raise _bad(
            f"predicateType is {doc.get('predicateType')!r}, expected {JOURNAL_PREDICATE_TYPE!r}",
            source,
        )
    subjects = doc.get("subject")
    if not (isinstance(subjects, list) and len(subjects) == 1 and isinstance(subjects[0], dict)):
        raise _bad("a journal has exactly one subject (the model)", source)
    name = subjects[0].get("name")
    digest = (subjects[0].get("digest") or {}).get("sha256")
    if not isinstance(name, str) or not _hex(digest):
        raise _bad("the subject has no name or sha256 digest", source)
    predicate = doc.get("predicate")
    if not isinstance(predicate, dict) or not isinstance(predicate.get("datasets"), list):
        raise _bad("the predicate lists no datasets", source)
    sidecar_items = _sidecar(predicate, path)
    records = []
    for index, raw in enumerate(predicate["datasets"]):
        records.append(_dataset(index, raw, sidecar_items, source))
    if sidecar_items is not None and set(sidecar_items) - set(range(len(records))):
        raise _bad("the sidecar names a dataset the predicate does not list", source)
    return SealedJournal(path, name, str(digest), tuple(records), predicate, material)


def _hex(value: object) -> bool:
    return (
        isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    )


def _sidecar(predicate: dict[str, Any], path: Path) -> dict[int, list[bytes]] | None:
    spec = predicate.get("sidecar")
    if spec is None:
        return None
    source = str(path)
    if not isinstance(spec, dict) or not _hex(spec.get("sha256")) or not spec.get("name"):
        raise _bad("the sidecar entry is malformed", source)
    name = str(spec["name"])
    if "/" in name or "\\" in name or name in (".", ".."):
        raise _bad("the sidecar must lie beside the journal", source)
    file = path.with_name(name)
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise IntegrityError(
            "the journal's item list (sidecar) is missing",
            path=file,
            hint=f"keep {name} beside the journal; it holds the items the journal signs",
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot read: {exc.strerror}", path=file) from None
    if hashlib.sha256(data).hexdigest() != spec["sha256"]:
        raise IntegrityError(
            "the journal's item list (sidecar) differs from what was signed (tampered)",
            path=file,
            hint="restore the sidecar that was written with the journal",
        )
    by_dataset: dict[int, list[bytes]] = {}
    for line in data.splitlines():
        parsed = merkle.parse_line(line)
        if parsed is None:
            raise _bad("the sidecar holds a line that is not a canonical item", str(file))
        by_dataset.setdefault(parsed[0], []).append(line)
    return by_dataset


def _dataset(
    index: int, raw: object, sidecar: dict[int, list[bytes]] | None, source: str
) -> DatasetRecord:
    if not isinstance(raw, dict):
        raise _bad(f"dataset {index} is not an object", source)
    manifest, bundle, items = raw.get("manifest"), raw.get("bundle"), raw.get("items")
    if not (isinstance(manifest, dict) and isinstance(bundle, dict) and isinstance(items, dict)):
        raise _bad(f"dataset {index} lacks manifest, bundle or items", source)
    root = (items.get("merkleRoot") or {}).get("sha256")
    if not (_hex(manifest.get("sha256")) and _hex(bundle.get("sha256")) and _hex(root)):
        raise _bad(f"dataset {index} has a malformed digest", source)
    split = raw.get("split")
    if split is not None and split not in ("train", "validation", "test"):
        raise _bad(f"dataset {index} has an unknown split {split!r}", source)
    if "list" in items:
        listed = items["list"]
        if not isinstance(listed, list):
            raise _bad(f"dataset {index}: items.list is not a list", source)
        lines = []
        for item in listed:
            if not isinstance(item, dict):
                raise _bad(f"dataset {index}: an item is not an object", source)
            line = json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            lines.append(line.encode())
    elif sidecar is not None:
        lines = sidecar.get(index, [])
    else:
        raise _bad(f"dataset {index} has no item list and the journal no sidecar", source)
    parsed = [merkle.parse_line(line) for line in lines]
    if any(p is None or p[0] != index for p in parsed):
        raise _bad(f"dataset {index}: an item is malformed", source)
    if merkle.merkle_root(lines) != root:
        raise IntegrityError(
            f"dataset {index} ({raw.get('name')}): the items do not match the signed Merkle root",
            path=source,
            hint="the item list was altered; restore the journal and its sidecar",
        )
    triples = tuple((p[1], p[3], p[2]) for p in parsed if p is not None)
    count, reads = items.get("count"), items.get("reads")
    if count != len(triples) or reads != sum(t[2] for t in triples):
        raise _bad(f"dataset {index}: item counts do not match the list", source)
    return DatasetRecord(
        index=index,
        name=str(raw.get("name", "")),
        split=split,
        root_digest=str(manifest["sha256"]),
        files=int(manifest.get("files", 0)),
        bundle_digest=str(bundle["sha256"]),
        signer=str(bundle.get("signer", "")),
        method=str(bundle.get("method", "")),
        count=len(triples),
        reads=sum(t[2] for t in triples),
        merkle_root=str(root),
        items=triples,
    )


def read_journal(path: Path) -> SealedJournal:
    """Parse a journal WITHOUT verifying its signature (for ``journal show``)."""
    data = read_bundle(path)
    parsed = oms.parse_bundle(data, str(path))
    if parsed.payload_type != oms.PAYLOAD_TYPE:
        raise _bad(f"payload type is {parsed.payload_type!r}", str(path))
    return parse_journal(parsed.payload, path, parsed.material)


@dataclass(frozen=True)
class JournalVerdict:
    journal: SealedJournal
    policy: Policy
    model: Path | None
    datasets: tuple[tuple[Path, DatasetRecord], ...]

    def lines(self) -> list[str]:
        j = self.journal
        out = [
            f"OK: {j.path} verified (signed by {j.signer}); model {j.model_name} "
            f"sha256:{j.model_digest[:16]}..."
            + (f" matches {self.model}" if self.model is not None else " (model not checked)")
        ]
        out.extend(
            f"  {d.name} [{d.split or '-'}]: {d.count} item(s), {d.reads} read(s), "
            f"signed by {d.signer}"
            for d in j.datasets
        )
        out.extend(
            f"dataset {folder} matches {d.name} [{d.split or '-'}]" for folder, d in self.datasets
        )
        out.append(f"policy: {self.policy.source.describe()}")
        return out

    def to_json(self) -> dict[str, object]:
        return {
            "ok": True,
            **self.journal.to_json(),
            "model_checked": None if self.model is None else str(self.model),
            "datasets_checked": [
                {"folder": str(f), "name": d.name, "split": d.split} for f, d in self.datasets
            ],
            "policy": self.policy.source.to_json(),
        }


def verify_journal(
    path: Path,
    policy: Policy,
    factory: VerifierFactory,
    *,
    model: Path | None = None,
    datasets: Sequence[tuple[Path, Path]] = (),
    ignore_paths: Sequence[str] = (),
) -> JournalVerdict:
    """Verify a sealed journal; raise :class:`IntegrityError` on any mismatch."""
    from dataclasses import replace

    from ml_integrity.trust import verdict

    data = read_bundle(path)
    verified = verdict.PolicyVerifier(policy, factory).verify_bundle(data, str(path))
    if verified.payload_type != oms.PAYLOAD_TYPE:
        raise _bad(f"signed payload type is {verified.payload_type!r}", str(path))
    material = oms.parse_bundle(data, str(path)).material
    journal = replace(
        parse_journal(verified.payload, path, material),
        signer=verified.signer,
        details=dict(verified.details),
    )
    if model is not None:
        sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
        _name, root = model_digest(model, ignore_paths, outputs=[path, sidecar])
        if root != journal.model_digest:
            raise IntegrityError(
                f"the journal is for another model: it names {journal.model_name} "
                f"sha256:{journal.model_digest[:16]}..., {model} is sha256:{root[:16]}...",
                path=path,
                hint="pass the model folder the journal was sealed for (unchanged since)",
            )
    checked: list[tuple[Path, DatasetRecord]] = []
    for folder, bundle in datasets:
        checked.extend(_check_dataset(journal, folder, bundle, policy, factory))
    if datasets:
        covered = {d.index for _, d in checked}
        unnamed = [d for d in journal.datasets if d.index not in covered]
        if unnamed:
            first = unnamed[0]
            raise IntegrityError(
                f"the journal names dataset {first.name} (manifest sha256:"
                f"{first.root_digest[:16]}...) whose bundle was not given"
                + (f", and {len(unnamed) - 1} more" if len(unnamed) > 1 else ""),
                path=path,
                hint="pass --dataset DIR --dataset-bundle BUNDLE for every dataset of the journal",
            )
    return JournalVerdict(journal, policy, model, tuple(checked))


def _check_dataset(
    journal: SealedJournal,
    folder: Path,
    bundle: Path,
    policy: Policy,
    factory: VerifierFactory,
) -> list[tuple[Path, DatasetRecord]]:
    from ml_integrity.trust import verdict

    result = verdict.verify(folder, [bundle], policy, factory)
    root = oms.root_digest(list(result.signed.resources.values()))
    bundle_digest = hashlib.sha256(read_bundle(bundle)).hexdigest()
    matches = [d for d in journal.datasets if d.root_digest == root]
    if not matches:
        raise IntegrityError(
            f"dataset {folder} (manifest sha256:{root[:16]}...) is not one the journal names",
            path=bundle,
            hint="the journal lists: "
            + ", ".join(f"{d.name} sha256:{d.root_digest[:16]}..." for d in journal.datasets),
        )
    for d in matches:
        if d.bundle_digest != bundle_digest:
            raise IntegrityError(
                f"dataset {d.name}: the bundle differs from the one the journal names "
                "(same manifest, another signature)",
                path=bundle,
                hint="pass the bundle the training run opened",
            )
        wrong = _not_as_recorded(folder, result.signed, d.items)
        if wrong:
            raise IntegrityError(
                f"dataset {d.name}: {len(wrong)} journal item(s) are not signed as recorded",
                path=bundle,
                diff=ManifestDiff(changed=tuple(wrong)),
            )
    return [(folder, d) for d in matches]


def _not_as_recorded(
    folder: Path, signed: oms.SignedModel, items: Sequence[tuple[str, str, int]]
) -> list[str]:
    """The journal's items whose recorded SHA-256 is not the signed content's.

    A bundle of SHA-256 files signs those digests. Any other bundle (BLAKE2b,
    BLAKE3, shards) does not: the folder was just verified against it, so the
    recorded items are hashed there with SHA-256 (the loader records that).
    """
    if signed.is_sha256_files:
        return [p for p, digest, _ in items if signed.resources.get(p) != digest]
    from ml_integrity.core import hashing

    listed = [p for p, _, _ in items if p in signed.files]
    digests = hashing.hash_files(folder, listed, algorithm="sha256") if listed else {}
    return [p for p, digest, _ in items if p not in digests or digests[p].hexdigest != digest]
