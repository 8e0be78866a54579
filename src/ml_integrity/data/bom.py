"""The ML-BOM: a model, the datasets its journals name, and who signed what.

:func:`collect` gathers the facts (the model's signed files and OMS root
digest, checked against the folder; each journal's datasets, splits, item
counts and signers; with a policy, every signature verified first).
:func:`cyclonedx` writes them as CycloneDX 1.6 JSON: the model is a
``machine-learning-model`` component with its hashes (the OMS root digest, and
one nested ``file`` component per signed file), each dataset a ``data``
component with its manifest root digest, the model card's
``modelParameters.datasets`` refers to them, the signers are properties.
:func:`spdx` writes SPDX 3.0.1 JSON-LD with the AI and Dataset profiles: an
``ai_AIPackage``, ``dataset_DatasetPackage`` elements and ``trainedOn`` /
``testedOn`` relationships. ``docs/data.md`` maps every field.
"""

from __future__ import annotations

import datetime
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ml_integrity.core import oms
from ml_integrity.core.verifying import read_bundle
from ml_integrity.errors import IntegrityError

if TYPE_CHECKING:
    from ml_integrity.data.journal_check import DatasetRecord, SealedJournal
    from ml_integrity.trust.policy import Policy
    from ml_integrity.trust.verdict import VerifierFactory

__all__ = ["BomFacts", "collect", "cyclonedx", "spdx"]

PREFIX = "ml-integrity:"
SPDX_CONTEXT = "https://spdx.org/rdf/3.0.1/spdx-context.jsonld"


@dataclass(frozen=True)
class BomFacts:
    model_name: str
    model_digest: str
    files: tuple[tuple[str, str], ...]
    """(path, sha256) of every signed file of the model."""
    model_signer: str
    verified: bool
    """True when every signature was verified against a policy (else only digests)."""
    journals: tuple[SealedJournal, ...]

    def datasets(self) -> list[tuple[str, list[DatasetRecord]]]:
        """Distinct datasets (by manifest digest), each with its records (one per split)."""
        out: dict[str, list[DatasetRecord]] = {}
        for j in self.journals:
            for d in j.datasets:
                out.setdefault(d.root_digest, []).append(d)
        return list(out.items())


def collect(
    model: Path,
    bundle: Path,
    journals: Sequence[Path],
    *,
    policy: Policy | None = None,
    factory: VerifierFactory | None = None,
    ignore_paths: Sequence[str] = (),
) -> BomFacts:
    """The facts of the BOM; the model folder must match its bundle, each journal the model.

    With ``policy`` (and ``factory``), the model bundle and each journal are
    verified (signature, signer, content) first; without, the signatures are
    read but not checked, and the BOM says so (``ml-integrity:verified``).
    """
    from ml_integrity.data.journal import model_digest
    from ml_integrity.data.journal_check import read_journal, verify_journal

    if policy is not None and factory is not None:
        from ml_integrity.trust import verdict

        result = verdict.verify(model, [bundle], policy, factory, ignore_paths=ignore_paths)
        signed, signer = result.signed, result.signer
        sealed = [
            verify_journal(j, policy, factory, model=model, ignore_paths=ignore_paths).journal
            for j in journals
        ]
        root = oms.root_digest(list(signed.resources.values()))
    else:
        parsed = oms.parse_bundle(read_bundle(bundle), str(bundle))
        signed = oms.parse_statement(parsed.payload, str(bundle))
        signer = f"unverified {parsed.material} signature"
        root = oms.root_digest(list(signed.resources.values()))
        _name, actual = model_digest(model, [*ignore_paths, *signed.ignore_paths])
        if actual != root:
            raise IntegrityError(
                f"{model} does not match what {bundle} signs",
                path=bundle,
                hint="verify it with 'ml-integrity verify' to see which files differ",
            )
        sealed = [read_journal(j) for j in journals]
    for j in sealed:
        if j.model_digest != root:
            raise IntegrityError(
                f"the journal is for another model ({j.model_name} "
                f"sha256:{j.model_digest[:16]}..., this model is sha256:{root[:16]}...)",
                path=j.path,
                hint="pass the journals sealed for this model",
            )
    return BomFacts(
        model_name=signed.name,
        model_digest=root,
        files=tuple(signed.resources.items()),
        model_signer=signer,
        verified=policy is not None,
        journals=tuple(sealed),
    )


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _serial(facts: BomFacts) -> str:
    seed = facts.model_digest + "".join(j.model_digest + str(j.path.name) for j in facts.journals)
    return str(uuid.UUID(hashlib.sha256(seed.encode()).hexdigest()[:32]))


def _props(pairs: Sequence[tuple[str, object]]) -> list[dict[str, str]]:
    return [{"name": PREFIX + k, "value": str(v)} for k, v in pairs if v is not None]


def cyclonedx(facts: BomFacts) -> dict[str, object]:
    """A CycloneDX 1.6 JSON document (as a dict)."""
    from ml_integrity import __version__

    data_components: list[dict[str, object]] = []
    refs: list[dict[str, str]] = []
    for i, (root, records) in enumerate(facts.datasets()):
        ref = f"dataset-{i + 1}"
        first = records[0]
        splits = sorted({r.split or "unspecified" for r in records})
        props: list[tuple[str, object]] = [
            ("manifest-root-sha256", root),
            ("bundle-sha256", first.bundle_digest),
            ("signer", first.signer),
            ("signing-method", first.method),
            ("signed-files", first.files),
            ("splits", ",".join(splits)),
        ]
        for r in records:
            tag = r.split or "unspecified"
            props += [
                (f"split:{tag}:items-read", r.count),
                (f"split:{tag}:reads", r.reads),
                (f"split:{tag}:merkle-root-sha256", r.merkle_root),
            ]
        data_components.append(
            {
                "type": "data",
                "bom-ref": ref,
                "name": first.name,
                "hashes": [{"alg": "SHA-256", "content": root}],
                "data": [
                    {
                        "type": "dataset",
                        "name": first.name,
                        "description": f"signed dataset ({first.files} files); the hash is "
                        "its OMS manifest root digest; used for " + ", ".join(splits),
                    }
                ],
                "properties": _props(props),
            }
        )
        refs.append({"ref": ref})
    journal_props: list[tuple[str, object]] = []
    for j in facts.journals:
        journal_props += [(f"journal:{j.path.name}:signer", j.signer or "unverified")]
    model: dict[str, object] = {
        "type": "machine-learning-model",
        "bom-ref": "model",
        "name": facts.model_name,
        "hashes": [{"alg": "SHA-256", "content": facts.model_digest}],
        "description": "the hash is the OMS root digest (SHA-256 over the files' digests)",
        "properties": _props(
            [
                ("signer", facts.model_signer),
                ("verified", str(facts.verified).lower()),
                ("digest-kind", "oms-root"),
                *journal_props,
            ]
        ),
        "modelCard": {"modelParameters": {"datasets": refs}},
        "components": [
            {
                "type": "file",
                "bom-ref": f"model-file-{i + 1}",
                "name": path,
                "hashes": [{"alg": "SHA-256", "content": digest}],
            }
            for i, (path, digest) in enumerate(facts.files)
        ],
    }
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": f"urn:uuid:{_serial(facts)}",
        "version": 1,
        "metadata": {
            "timestamp": _now(),
            "tools": {
                "components": [
                    {"type": "application", "name": "ml-integrity", "version": __version__}
                ]
            },
            "component": {
                "type": "machine-learning-model",
                "bom-ref": "bom-subject",
                "name": facts.model_name,
            },
        },
        "components": [model, *data_components],
        "dependencies": [
            {"ref": "model", "dependsOn": [r["ref"] for r in refs]},
            *({"ref": r["ref"]} for r in refs),
        ],
    }


_RELATIONSHIP = {"train": "trainedOn", "test": "testedOn", "validation": "testedOn"}


def spdx(facts: BomFacts) -> dict[str, object]:
    """An SPDX 3.0.1 JSON-LD document with the AI and Dataset profiles (as a dict)."""
    from ml_integrity import __version__

    base = f"urn:ml-integrity:bom:{_serial(facts)}"
    created = _now()
    info = "_:creationinfo"
    tool_id = f"{base}#tool"
    agent_id = f"{base}#agent"
    model_id = f"{base}#model"
    graph: list[dict[str, object]] = [
        {
            "type": "CreationInfo",
            "@id": info,
            "specVersion": "3.0.1",
            "created": created,
            "createdBy": [agent_id],
            "createdUsing": [tool_id],
        },
        {
            "type": "SoftwareAgent",
            "spdxId": agent_id,
            "creationInfo": info,
            "name": "ml-integrity",
        },
        {
            "type": "Tool",
            "spdxId": tool_id,
            "creationInfo": info,
            "name": f"ml-integrity {__version__}",
        },
    ]
    elements = [agent_id, tool_id, model_id]
    graph.append(
        {
            "type": "ai_AIPackage",
            "spdxId": model_id,
            "creationInfo": info,
            "name": facts.model_name,
            "software_primaryPurpose": "model",
            "software_downloadLocation": "NOASSERTION",
            "verifiedUsing": [
                {"type": "Hash", "algorithm": "sha256", "hashValue": facts.model_digest}
            ],
            "comment": f"hash: OMS root digest; signer: {facts.model_signer}; "
            f"verified: {str(facts.verified).lower()}",
        }
    )
    relationships: dict[str, list[str]] = {}
    comments: dict[str, set[str]] = {}
    for i, (root, records) in enumerate(facts.datasets()):
        first = records[0]
        ds_id = f"{base}#dataset-{i + 1}"
        elements.append(ds_id)
        splits = sorted({r.split or "unspecified" for r in records})
        graph.append(
            {
                "type": "dataset_DatasetPackage",
                "spdxId": ds_id,
                "creationInfo": info,
                "name": first.name,
                "software_primaryPurpose": "data",
                "software_downloadLocation": "NOASSERTION",
                "dataset_datasetType": ["other"],
                "dataset_datasetSize": first.files,
                "verifiedUsing": [{"type": "Hash", "algorithm": "sha256", "hashValue": root}],
                "comment": f"hash: OMS manifest root digest; signer: {first.signer}; "
                f"bundle sha256: {first.bundle_digest}; splits: {', '.join(splits)}; "
                + "; ".join(f"{r.split or 'unspecified'}: {r.count} items read" for r in records),
            }
        )
        for r in records:
            rel = _RELATIONSHIP.get(r.split or "", "trainedOn")
            relationships.setdefault(rel, []).append(ds_id)
            if r.split == "validation":
                comments.setdefault(rel, set()).add("includes validation split(s)")
    for n, (rel, targets) in enumerate(sorted(relationships.items())):
        rel_id = f"{base}#relationship-{n + 1}"
        elements.append(rel_id)
        entry: dict[str, object] = {
            "type": "Relationship",
            "spdxId": rel_id,
            "creationInfo": info,
            "from": model_id,
            "to": sorted(set(targets)),
            "relationshipType": rel,
        }
        if rel in comments:
            entry["comment"] = "; ".join(sorted(comments[rel]))
        graph.append(entry)
    graph.append(
        {
            "type": "SpdxDocument",
            "spdxId": f"{base}#document",
            "creationInfo": info,
            "name": f"ML-BOM of {facts.model_name}",
            "profileConformance": ["core", "software", "ai", "dataset"],
            "rootElement": [model_id],
            "element": elements,
        }
    )
    return {"@context": SPDX_CONTEXT, "@graph": graph}
