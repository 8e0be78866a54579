"""docs/action.md's tables and action.yml agree: every public input, its default, its outputs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
ACTION = REPO_ROOT / "action.yml"
DOCS = REPO_ROOT / "docs" / "action.md"


def _action() -> dict[str, Any]:
    data = yaml.safe_load(ACTION.read_text())
    assert isinstance(data, dict)
    return data


def _table(heading: str) -> dict[str, list[str]]:
    """The rows of the markdown table under ``## heading``, by the first cell's `name`."""
    text = DOCS.read_text()
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    rows: dict[str, list[str]] = {}
    for line in text[start : end if end != -1 else None].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        m = re.fullmatch(r"`([a-z0-9-]+)`", cells[0]) if line.startswith("|") else None
        if m:
            rows[m.group(1)] = cells[1:]
    return rows


def _code(cell: str) -> str:
    """`x` -> x; an empty cell -> the empty string."""
    m = re.fullmatch(r"`([^`]*)`", cell)
    return m.group(1) if m else cell


def test_every_public_input_is_in_the_inputs_table_with_its_default() -> None:
    inputs = _action()["inputs"]
    table = _table("Inputs")
    public = [name for name in inputs if not name.startswith("internal-")]
    assert sorted(table) == sorted(public)
    for name in public:
        mode, default = table[name][0], _code(table[name][1])
        assert mode in {"verify", "sign", "both"}, name
        assert default == str(inputs[name].get("default", "")), (name, default)
        assert inputs[name]["description"].strip(), name


def test_internal_inputs_are_documented_apart_and_say_so() -> None:
    inputs = _action()["inputs"]
    internal = [name for name in inputs if name.startswith("internal-")]
    assert internal, "the offline tests rely on internal-be-careful-python"
    table = _table("Internal inputs")
    assert sorted(table) == sorted(internal)
    for name in internal:
        assert inputs[name]["description"].lower().startswith("internal"), name


def test_every_output_is_in_the_outputs_table() -> None:
    assert sorted(_table("Outputs")) == sorted(_action()["outputs"])


def test_an_input_described_with_a_default_has_that_default() -> None:
    # action.yml's descriptions say "(default)" or "default: X": the value must be the default.
    for name, spec in _action()["inputs"].items():
        description = spec["description"]
        default = str(spec.get("default", ""))
        for m in re.finditer(r"'([a-z-]+)' \(default\)", description):
            assert m.group(1) == default, (name, m.group(1), default)
