"""ml-integrity bom: CycloneDX 1.6 against the official schema, SPDX 3.0.1 against its model."""

from __future__ import annotations

import io
import json
from pathlib import Path

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from tests.conftest import CLI
from tests.data.conftest import Signed, make_model, sign
from tests.data.test_journal import train


def made(signed: Signed, tmp_path: Path) -> tuple[Path, Path, Path]:
    model, journal = train(signed, tmp_path)
    bundle = sign(model, signed.key, tmp_path / "model.sig")
    return model, bundle, journal


def test_cyclonedx_validates_and_names_everything(signed: Signed, tmp_path: Path, cli: CLI) -> None:
    model, bundle, journal = made(signed, tmp_path)
    out = tmp_path / "bom.cdx.json"
    r = cli("bom", model, "--bundle", bundle, "--journal", journal, "--key", signed.pub,
            "--output", out)  # fmt: skip
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    doc = json.loads(text)
    ml, *data = doc["components"]
    assert ml["type"] == "machine-learning-model" and ml["name"] == "model"
    assert [c["name"] for c in ml["components"]] == ["config.json", "weights.safetensors"]
    props = {p["name"]: p["value"] for p in ml["properties"]}
    assert props["ml-integrity:verified"] == "true" and "EC P-256" in props["ml-integrity:signer"]
    assert [d["type"] for d in data] == ["data", "data"]
    assert ml["modelCard"]["modelParameters"]["datasets"] == [{"ref": d["bom-ref"]} for d in data]
    splits = {d["name"]: {p["name"]: p["value"] for p in d["properties"]} for d in data}
    assert splits["dataset"]["ml-integrity:splits"] == "train"
    assert splits["holdout"]["ml-integrity:split:test:items-read"] == "3"
    # the validator is not a rubber stamp
    broken = json.loads(text)
    broken["components"][0]["type"] = "ml-model"
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(broken)) is not None


def test_spdx_loads_in_the_spdx_model(signed: Signed, tmp_path: Path, cli: CLI) -> None:
    import spdx_python_model as spdx

    model, bundle, journal = made(signed, tmp_path)
    out = tmp_path / "bom.spdx.json"
    r = cli("bom", model, "--bundle", bundle, "--journal", journal, "--format", "spdx",
            "--output", out)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "not verified" in r.stdout
    doc = json.loads(out.read_text())
    bindings, objects = spdx.load_data(doc)  # types, enums and unknown properties
    buf = io.BytesIO()
    bindings.JSONLDSerializer().write(objects, buf)  # required properties and counts
    assert len(json.loads(buf.getvalue())["@graph"]) == len(doc["@graph"])
    by_type: dict[str, list[dict[str, object]]] = {}
    for element in doc["@graph"]:
        by_type.setdefault(str(element["type"]), []).append(element)
    (ai,) = by_type["ai_AIPackage"]
    rels = {str(r["relationshipType"]): r for r in by_type["Relationship"]}
    assert set(rels) == {"trainedOn", "testedOn"}
    assert all(r["from"] == ai["spdxId"] for r in rels.values())
    assert len(by_type["dataset_DatasetPackage"]) == 2
    # the model rejects what the spec does not allow
    missing = json.loads(out.read_text())
    for element in missing["@graph"]:
        if element["type"] == "dataset_DatasetPackage":
            del element["dataset_datasetType"]
    _, objs = spdx.load_data(missing)
    try:
        bindings.JSONLDSerializer().write(objs, io.BytesIO())
    except ValueError as exc:
        assert "dataset_datasetType" in str(exc)
    else:
        raise AssertionError("a dataset without dataset_datasetType was accepted")


def test_bom_refuses_mismatches(signed: Signed, tmp_path: Path, cli: CLI) -> None:
    model, bundle, journal = made(signed, tmp_path)
    other = make_model(tmp_path, "other")
    other_sig = sign(other, signed.key, tmp_path / "other.sig")
    r = cli("bom", other, "--bundle", other_sig, "--journal", journal, "--output",
            tmp_path / "x.json")  # fmt: skip
    assert r.returncode == 1 and "journal is for another model" in r.stderr
    (model / "config.json").write_text("{}")
    r = cli("bom", model, "--bundle", bundle, "--output", tmp_path / "y.json")
    assert r.returncode == 1 and "does not match" in r.stderr
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "y.json").exists()
