"""Fixtures for the scanner tests: the generated corpus (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .make_corpus import Case, build


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Case]]:
    root = tmp_path_factory.mktemp("corpus")
    cases = build(root)
    return root, {c.name: c for c in cases}
