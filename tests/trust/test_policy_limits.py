"""Hostile policies: too deep, too large, too many values. Exit 2 naming the file, never a crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml_integrity.errors import ConfigError
from ml_integrity.trust.policy import PolicySource
from ml_integrity.trust.policy_yaml import (
    MAX_POLICY_BYTES,
    MAX_POLICY_DEPTH,
    MAX_POLICY_NODES,
    parse_policy,
)
from tests.conftest import CLI


def _parse(text: str) -> None:
    def no_files(rel: str) -> bytes:
        raise AssertionError(rel)

    parse_policy(
        text.encode(),
        source=PolicySource("command line", "p.yaml"),
        label="p.yaml",
        reader=no_files,
    )


def _block_mapping(depth: int) -> str:
    return "version: 1\nsigners:\n" + "".join(f"{' ' * (i + 1)}a{i}:\n" for i in range(depth))


@pytest.mark.parametrize(
    "text",
    [
        "version: 1\nsigners: " + "[" * 5000 + "]" * 5000 + "\n",
        "version: 1\nsigners: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n",
        _block_mapping(1000),  # indentation: 5,000 levels would be 12 MB
    ],
    ids=["flow-sequences", "flow-mappings", "block-mappings"],
)
def test_a_policy_nested_5000_deep_is_a_config_error(cli: CLI, tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match=f"nested more than {MAX_POLICY_DEPTH} levels"):
        _parse(text)
    policy = tmp_path / "deep.yaml"
    policy.write_text(text)
    r = cli("policy", "check", policy)  # the CLI helper refuses any traceback
    assert r.returncode == 2, r.stderr
    assert f"{policy}:" in r.stderr and "nested more than" in r.stderr
    model = tmp_path / "model"
    model.mkdir()
    (model / "w.bin").write_bytes(b"x")
    (tmp_path / "m.sig").write_text("{}")
    r = cli("verify", model, "--bundle", tmp_path / "m.sig", "--policy", policy)
    assert r.returncode == 2, r.stderr
    assert str(policy) in r.stderr


def test_depth_within_the_limit_is_parsed_as_usual() -> None:
    # not refused for its depth: the parser then says what is wrong with it
    with pytest.raises(ConfigError, match="signer") as info:
        _parse(_block_mapping(MAX_POLICY_DEPTH - 3))
    assert "nested" not in info.value.message


def test_a_huge_policy_is_a_config_error(cli: CLI, tmp_path: Path) -> None:
    policy = tmp_path / "huge.yaml"
    policy.write_text("version: 1\n" + "#" * (MAX_POLICY_BYTES + 1) + "\n")
    r = cli("policy", "check", policy)
    assert r.returncode == 2, r.stderr
    assert str(policy) in r.stderr and "more than the 1,048,576" in r.stderr


def test_a_policy_of_too_many_values_is_a_config_error() -> None:
    items = ",".join(["a"] * (MAX_POLICY_NODES + 1))
    text = f"version: 1\ndeny:\n  digests: [{items}]\n"
    assert len(text) < MAX_POLICY_BYTES
    with pytest.raises(ConfigError, match="more than 100,000 values") as info:
        _parse(text)
    assert info.value.path == "p.yaml:3"


def test_aliases_count_as_values() -> None:
    # a small document whose aliases would expand without bound if walked as a tree
    lines = ["version: 1", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9000)]
    assert len("\n".join(lines)) < MAX_POLICY_BYTES
    with pytest.raises(ConfigError, match="values"):
        _parse("\n".join(lines) + "\n")
