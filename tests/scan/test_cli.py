"""``ml-integrity scan`` end to end: exit codes, human/JSON/SARIF output, LFS pointers."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from ml_integrity.scan.scanner import RULES, ScanPolicy, scan_file, scan_path
from tests.conftest import CLI
from tests.support.privileges import unprivileged_prefix

from .make_corpus import Case, lfs_pointer, os_system, safetensors_bytes


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "model.safetensors").write_bytes(safetensors_bytes())
    (tmp_path / "ok" / "table.csv").write_bytes(b"a,b\n1,2\n")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "weights v2.bin").write_bytes(os_system())
    return tmp_path


def test_exit_0_when_all_safe(cli: CLI, files: Path) -> None:
    r = cli("scan", files / "ok")
    assert r.returncode == 0, r.stderr
    assert "2 safe" in r.stderr
    assert r.stdout == ""


def test_exit_1_names_file_global_and_hint(cli: CLI, files: Path) -> None:
    r = cli("scan", files)
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert len(lines) == 1, r.stdout  # one line per unsafe file
    assert "weights v2.bin: UNSAFE: pickle imports os.system" in lines[0]
    assert "hint:" in lines[0]


def test_exit_2_on_usage_errors(cli: CLI, files: Path) -> None:
    assert cli("scan", files / "missing").returncode == 2
    assert cli("scan", "--pickle", "maybe", files).returncode == 2
    r = cli("scan", "--allow-sha256", "not-hex", files)
    assert r.returncode == 2 and "sha256" in r.stderr


def test_allow_by_sha256_not_by_name(cli: CLI, files: Path) -> None:
    bad = files / "bad" / "weights v2.bin"
    digest = hashlib.sha256(bad.read_bytes()).hexdigest()
    r = cli("scan", "--allow-sha256", digest, bad)
    assert r.returncode == 0 and "allowed" in r.stdout
    # the same name with other content is not allowed
    bad.write_bytes(os_system(4))
    assert cli("scan", "--allow-sha256", digest, bad).returncode == 1


def test_block_vs_allowlist(cli: CLI, corpus: tuple[Path, dict[str, Case]]) -> None:
    root, cases = corpus
    ckpt = root / cases["torch state_dict checkpoint"].path
    blocked = cli("scan", ckpt)
    assert blocked.returncode == 1 and "safetensors" in blocked.stdout
    assert cli("scan", "--pickle", "allowlist", ckpt).returncode == 0
    env = {"ML_INTEGRITY_PICKLE": "allowlist"}
    assert cli("scan", ckpt, env=env).returncode == 0


def test_json_report(cli: CLI, files: Path) -> None:
    r = cli("scan", "--json", files)
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and doc["policy"]["pickle"] == "block"
    verdicts = {Path(f["path"]).name: f["verdict"] for f in doc["files"]}
    assert verdicts == {
        "model.safetensors": "safe",
        "table.csv": "safe",
        "weights v2.bin": "unsafe",
    }
    [bad] = [f for f in doc["files"] if f["verdict"] == "unsafe"]
    assert bad["format"] == "pickle"
    assert bad["findings"][0]["detail"] == "os.system"


def _check_sarif(doc: dict[str, Any]) -> None:
    """The structure GitHub code scanning requires of an uploaded SARIF 2.1.0 log."""
    assert doc["version"] == "2.1.0" and "$schema" in doc
    [run] = doc["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "ml-integrity"
    rule_ids = [r["id"] for r in driver["rules"]]
    assert len(rule_ids) == len(set(rule_ids))
    for rule in driver["rules"]:
        assert rule["shortDescription"]["text"] and rule["fullDescription"]["text"]
    for res in run["results"]:
        assert res["ruleId"] in rule_ids
        assert rule_ids[res["ruleIndex"]] == res["ruleId"]
        assert res["level"] == "error"
        assert res["message"]["text"]
        loc = res["locations"][0]["physicalLocation"]["artifactLocation"]
        assert not loc["uri"].startswith("/") and " " not in loc["uri"]


def test_sarif(cli: CLI, files: Path) -> None:
    out = files / "scan.sarif"
    r = cli("scan", "--sarif", out, ".", cwd=files)
    assert r.returncode == 1
    doc = json.loads(out.read_text())
    _check_sarif(doc)
    [res] = doc["runs"][0]["results"]
    assert res["ruleId"] == "unsafe-global"
    uri = res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "bad/weights%20v2.bin"
    assert {r["id"] for r in doc["runs"][0]["tool"]["driver"]["rules"]} == set(RULES)


def test_sarif_validates_against_schema_shape_for_the_corpus(
    cli: CLI, corpus: tuple[Path, dict[str, Case]], tmp_path: Path
) -> None:
    root, _ = corpus
    out = tmp_path / "corpus.sarif"
    r = cli("scan", "--sarif", out, "malicious", cwd=root)
    assert r.returncode == 1
    doc = json.loads(out.read_text())
    _check_sarif(doc)
    kinds = {res["ruleId"] for res in doc["runs"][0]["results"]}
    assert {"unsafe-global", "malformed", "keras-lambda", "unsafe-build"} <= kinds


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def lfs_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    return repo


def _store_lfs_object(repo: Path, oid: str, data: bytes) -> None:
    store = repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4]
    store.mkdir(parents=True)
    (store / oid).write_bytes(data)


def test_lfs_pointer_with_local_object(cli: CLI, lfs_repo: Path) -> None:
    evil = os_system()
    text, oid = lfs_pointer(evil)
    (lfs_repo / "model.bin").write_bytes(text)
    _store_lfs_object(lfs_repo, oid, evil)
    r = cli("scan", lfs_repo / "model.bin")
    assert r.returncode == 1 and "os.system" in r.stdout and "LFS object" in r.stdout
    # a benign object behind the pointer is safe
    good = safetensors_bytes()
    text, oid = lfs_pointer(good)
    (lfs_repo / "model.bin").write_bytes(text)
    _store_lfs_object(lfs_repo, oid, good)
    assert cli("scan", lfs_repo / "model.bin").returncode == 0


def test_lfs_pointer_in_a_worktree_uses_the_common_store(lfs_repo: Path, tmp_path: Path) -> None:
    (lfs_repo / "f").write_text("x")
    _git(lfs_repo, "add", "f")
    _git(lfs_repo, "commit", "-qm", "init")
    wt = tmp_path / "wt"
    _git(lfs_repo, "worktree", "add", "-q", str(wt))
    evil = os_system()
    text, oid = lfs_pointer(evil)
    (wt / "model.bin").write_bytes(text)
    _store_lfs_object(lfs_repo, oid, evil)
    assert [f.detail for f in scan_path(wt / "model.bin")] == ["os.system"]


def test_lfs_pointer_without_object(cli: CLI, lfs_repo: Path) -> None:
    text, oid = lfs_pointer(b"never fetched")
    (lfs_repo / "model.bin").write_bytes(text)
    r = cli("scan", lfs_repo / "model.bin")
    assert r.returncode == 1 and "git lfs pull" in r.stdout
    r = cli("scan", "--lfs-missing", "skip", lfs_repo / "model.bin")
    assert r.returncode == 0 and "skipped" in r.stdout
    assert cli("scan", "--allow-sha256", oid, lfs_repo / "model.bin").returncode == 0


def test_lfs_object_of_the_wrong_size_is_not_trusted(lfs_repo: Path) -> None:
    text, oid = lfs_pointer(b"abc")
    (lfs_repo / "model.bin").write_bytes(text)
    _store_lfs_object(lfs_repo, oid, b"abcd")
    report = scan_file(lfs_repo / "model.bin")
    assert report.verdict == "unsafe" and report.findings[0].kind == "malformed"


def test_pointer_lookalike_does_not_hide_content(lfs_repo: Path) -> None:
    """Only a real pointer (git-lfs's rules: under 1024 bytes) stands for its object."""
    text, oid = lfs_pointer(b"reviewed")
    _store_lfs_object(lfs_repo, oid, b"reviewed")
    policy = ScanPolicy(allowed_sha256=frozenset({oid}), lfs_missing="skip")
    padded = lfs_repo / "padded.bin"  # pointer lines first, a payload past 1024 bytes
    padded.write_bytes(text + b"x" * 1024 + os_system())
    assert scan_file(padded, policy).verdict == "unsafe"
    unsorted = lfs_repo / "unsorted.bin"  # keys out of order: git-lfs does not smudge it
    lines = text.splitlines(keepends=True)
    unsorted.write_bytes(lines[0] + lines[2] + lines[1])
    report = scan_file(unsorted, policy)
    assert report.verdict == "unsafe" and report.findings[0].kind == "malformed"


def test_unreadable_file_is_not_scanned() -> None:
    base = Path(tempfile.mkdtemp(prefix="mli-unreadable-"))  # nobody can reach it (as root)
    try:
        base.chmod(0o755)
        p = base / "secret.pkl"
        p.write_bytes(os_system())
        p.chmod(0)
        prefix = unprivileged_prefix()
        code = "import json, sys; from ml_integrity.scan.scanner import scan_file; "
        code += "print(json.dumps(scan_file(sys.argv[1]).to_json()))"
        proc = subprocess.run(
            [*prefix, sys.executable, "-c", code, str(p)], capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        assert report["verdict"] == "not-scanned"
        assert report["findings"][0]["kind"] == "not-scanned"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_policy_rejects_unknown_values() -> None:
    from ml_integrity.errors import UsageError

    with pytest.raises(UsageError):
        ScanPolicy(pickle="allow")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        ScanPolicy(allowed_sha256=frozenset({"ABC"}))


def test_help_teaches(cli: CLI) -> None:
    r = cli("scan", "--help")
    assert r.returncode == 0
    assert "examples:" in r.stdout and "--pickle" in r.stdout and "--sarif" in r.stdout


def test_policy_file_pickle_rule_applies(tmp_path: Path, cli: CLI) -> None:
    import hashlib
    import pickle

    benign = tmp_path / "state.pkl"
    benign.write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=4))
    strict = tmp_path / "strict.yaml"
    strict.write_text("version: 1\npickle: block\n")
    assert cli("scan", benign, "--policy", strict).returncode == 1
    lenient = tmp_path / "lenient.yaml"
    lenient.write_text("version: 1\npickle: allowlist\n")
    assert cli("scan", benign, "--policy", lenient).returncode == 0
    # the command line overrides the policy's mode
    assert cli("scan", benign, "--policy", lenient, "--pickle", "block").returncode == 1
    digest = hashlib.sha256(benign.read_bytes()).hexdigest()
    reviewed = tmp_path / "reviewed.yaml"
    reviewed.write_text(f"version: 1\npickle: {{mode: block, allowed-digests: ['{digest}']}}\n")
    assert cli("scan", benign, "--policy", reviewed).returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\npickle: maybe\n")
    r = cli("scan", benign, "--policy", bad)
    assert r.returncode == 2 and "bad.yaml" in r.stderr


def test_unwritable_sarif_target_is_a_usage_error(tmp_path: Path, cli: CLI) -> None:
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    target = tmp_path / "out.sarif"
    target.mkdir()
    r = cli("scan", tmp_path / "data.csv", "--sarif", target)
    assert r.returncode == 2
    assert "cannot write" in r.stderr and str(target) in r.stderr
    assert [p.name for p in target.iterdir()] == []
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_missing_path_is_named_once(cli: CLI, tmp_path: Path) -> None:
    r = cli("scan", "nope", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("nope") == 1, r.stderr
    assert "no such file or directory" in r.stderr


def test_sarif_fingerprints_are_stable_and_never_none(cli: CLI, files: Path) -> None:
    (files / "bad" / "junk.bin").write_bytes(b"\x00\x01 not a format")  # no member, no detail
    prints = []
    for name in ("a.sarif", "b.sarif"):
        cli("scan", "--sarif", files / name, ".", cwd=files)
        doc = json.loads((files / name).read_text())
        prints.append(
            [r["partialFingerprints"]["mlIntegrityFinding/v1"] for r in doc["runs"][0]["results"]]
        )
    assert prints[0] == prints[1] and len(prints[0]) == 2
    assert not any("None" in p for p in prints[0]), prints[0]
    assert len(set(prints[0])) == 2


def test_lfs_pointer_with_a_custom_lfs_storage(cli: CLI, lfs_repo: Path, tmp_path: Path) -> None:
    """``lfs.storage`` moves the store (git-lfs reads it); the scan finds the object there."""
    store = tmp_path / "elsewhere"
    _git(lfs_repo, "config", "lfs.storage", str(store))
    evil = os_system()
    text, oid = lfs_pointer(evil)
    (lfs_repo / "model.bin").write_bytes(text)
    obj = store / "objects" / oid[:2] / oid[2:4] / oid
    obj.parent.mkdir(parents=True)
    obj.write_bytes(evil)
    r = cli("scan", lfs_repo / "model.bin")
    assert r.returncode == 1 and "os.system" in r.stdout, r.stdout
    # relative to the git directory, as git-lfs reads it
    _git(lfs_repo, "config", "lfs.storage", "../../elsewhere")
    r = cli("scan", lfs_repo / "model.bin")
    assert r.returncode == 1 and "os.system" in r.stdout, r.stdout
