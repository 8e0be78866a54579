"""Environment variables are validated like the options they stand for: exit 2, named."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import CLI

BAD = [
    ("ML_INTEGRITY_WORKERS", "xyz"),
    ("ML_INTEGRITY_WORKERS", "-3"),
    ("ML_INTEGRITY_WORKERS", "0"),
    ("ML_INTEGRITY_PICKLE", "bogus"),
    ("ML_INTEGRITY_LOGLEVEL", "bogus"),
    ("ML_INTEGRITY_JSON", "maybe"),
]


@pytest.mark.parametrize(("name", "value"), BAD)
@pytest.mark.parametrize("command", [["scan", "--help"], ["manifest", "."], ["--version"]])
def test_a_bad_value_is_a_usage_error_naming_the_variable(
    cli: CLI, tmp_path: Path, name: str, value: str, command: list[str]
) -> None:
    r = cli(*command, cwd=tmp_path, env={name: value})
    assert r.returncode == 2, r.stderr
    assert name in r.stderr and repr(value) in r.stderr
    assert "hint:" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ML_INTEGRITY_WORKERS", "2"),
        ("ML_INTEGRITY_PICKLE", "allowlist"),
        ("ML_INTEGRITY_LOGLEVEL", "debug"),
        ("ML_INTEGRITY_JSON", "off"),
        ("ML_INTEGRITY_WORKERS", ""),
    ],
)
def test_valid_values_are_accepted(cli: CLI, tmp_path: Path, name: str, value: str) -> None:
    (tmp_path / "notes.txt").write_text("hello\n")
    r = cli("scan", tmp_path / "notes.txt", env={name: value})
    assert r.returncode == 0, r.stderr


def test_the_variables_become_the_option_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from ml_integrity.cli.main import build_parser

    monkeypatch.setenv("ML_INTEGRITY_WORKERS", "3")
    monkeypatch.setenv("ML_INTEGRITY_PICKLE", "allowlist")
    assert build_parser("manifest").parse_args(["manifest", "."]).workers == 3
    assert build_parser("scan").parse_args(["scan", "."]).pickle == "allowlist"
    assert build_parser("manifest").parse_args(["manifest", ".", "--workers", "1"]).workers == 1
