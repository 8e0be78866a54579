"""The manifest model: paths, canonical JSON, the directory walk."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from ml_integrity.core import manifest
from ml_integrity.core.manifest import Entry, Manifest, normalize_path
from ml_integrity.errors import ExitCode, ManifestError, UsageError
from tests.conftest import CLI

DIGEST = "a" * 64


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a/b.bin", "a/b.bin"),
        ("./a//b.bin", "a/b.bin"),
        ("a/b/", "a/b"),
        ("cafe\u0301.bin", "caf\u00e9.bin"),  # NFD -> NFC
    ],
)
def test_normalize_path_cleans(raw: str, expected: str) -> None:
    assert normalize_path(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "/etc/passwd", "../x", "a/../../x", "a\\b", "C:/x", "a\x00b", ".", "./"]
)
def test_normalize_path_refuses(raw: str) -> None:
    with pytest.raises(ManifestError) as info:
        normalize_path(raw, source="m.json")
    assert info.value.exit_code == ExitCode.FAILURE
    assert info.value.path == "m.json"


def test_canonical_json_is_deterministic_and_sorted() -> None:
    a = Manifest((Entry("b/x", 1, DIGEST), Entry("a", 2, DIGEST, format="pickle")))
    b = Manifest((Entry("a", 2, DIGEST, format="pickle"), Entry("b/x", 1, DIGEST)))
    assert a.to_json() == b.to_json()
    doc = json.loads(a.to_json())
    assert doc["format_version"] == manifest.FORMAT_VERSION
    assert [e["path"] for e in doc["entries"]] == ["a", "b/x"]
    assert a.to_json().endswith(b"}\n")
    assert Manifest.from_json(a.to_json(), source="m") == a


def test_component_order_matches_model_signing() -> None:
    m = Manifest((Entry("a-b", 1, DIGEST), Entry("a/b", 1, DIGEST)))
    assert [e.path for e in m.entries] == ["a/b", "a-b"]


@pytest.mark.parametrize(
    "doc",
    [
        b"not json",
        b"[]",
        b'{"format_version": 99, "entries": []}',
        b'{"format_version": 1}',
        b'{"format_version": 1, "entries": [{"path": "../x", "size": 1, "sha256": "'
        + b"a" * 64
        + b'"}]}',
        b'{"format_version": 1, "entries": [{"path": "/abs", "size": 1, "sha256": "'
        + b"a" * 64
        + b'"}]}',
        b'{"format_version": 1, "entries": [{"path": "x", "size": -1, "sha256": "'
        + b"a" * 64
        + b'"}]}',
        b'{"format_version": 1, "entries": [{"path": "x", "size": 1, "sha256": "ABC"}]}',
        b'{"format_version": 1, "entries": [{"path": "x", "size": 1, "sha256": "'
        + b"a" * 64
        + b'"}, {"path": "./x", "size": 1, "sha256": "'
        + b"a" * 64
        + b'"}]}',
    ],
)
def test_from_json_fails_closed(doc: bytes) -> None:
    with pytest.raises(ManifestError) as info:
        Manifest.from_json(doc, source="bad.json")
    assert info.value.path == "bad.json"


def _tree(root: Path) -> None:
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "w.bin").write_bytes(b"weights")
    (root / "sub" / "deep" / "c.json").write_text("{}")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref")
    (root / ".gitattributes").write_text("*.bin filter=lfs")
    (root / ".hidden").write_text("kept")


def test_list_files_skips_git_metadata_at_top_only(tmp_path: Path) -> None:
    _tree(tmp_path)
    (tmp_path / "sub" / ".gitignore").write_text("kept: not top level")
    assert manifest.list_files(tmp_path) == [
        ".hidden",
        "sub/.gitignore",
        "sub/deep/c.json",
        "w.bin",
    ]
    assert manifest.list_files(tmp_path, ignore=["sub"]) == [".hidden", "w.bin"]


def test_symlinks_refused_unless_allowed_and_never_outside(tmp_path: Path) -> None:
    root = tmp_path / "m"
    root.mkdir()
    (root / "real.bin").write_bytes(b"x")
    os.symlink("real.bin", root / "link.bin")
    with pytest.raises(ManifestError, match="symbolic link") as info:
        manifest.list_files(root)
    assert "--allow-symlinks" in (info.value.hint or "")
    assert manifest.list_files(root, allow_symlinks=True) == ["link.bin", "real.bin"]
    followed = manifest.build_from_directory(root, allow_symlinks=True, use_cache=False).by_path()
    assert followed["link.bin"].sha256 == followed["real.bin"].sha256
    (tmp_path / "outside").write_bytes(b"secret")
    os.symlink(tmp_path / "outside", root / "escape")
    with pytest.raises(ManifestError, match="outside the root"):
        manifest.list_files(root, allow_symlinks=True)


def test_fifo_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ManifestError, match="not a regular file"):
        manifest.list_files(tmp_path)


def test_build_from_directory_digests(tmp_path: Path) -> None:
    _tree(tmp_path)
    m = manifest.build_from_directory(tmp_path, use_cache=False)
    by = m.by_path()
    assert set(by) == {".hidden", "sub/deep/c.json", "w.bin"}
    assert by["w.bin"].sha256 == hashlib.sha256(b"weights").hexdigest()
    assert by["w.bin"].size == 7


def test_empty_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no files") as info:
        manifest.build_from_directory(tmp_path)
    assert info.value.exit_code == ExitCode.USAGE
    assert info.value.path == str(tmp_path)


def test_diff_lists_missing_extra_changed() -> None:
    m = Manifest((Entry("a", 1, "1" * 64), Entry("b", 1, "2" * 64)))
    diff = m.diff({"a": "1" * 64, "b": "3" * 64, "c": "4" * 64})
    assert diff.changed == ("b",)
    assert diff.extra == ("c",)
    assert diff.missing == ()
    assert m.diff({"a": "1" * 64, "b": "2" * 64}).lines() == []


def test_formats_are_sniffed_from_content(tmp_path: Path) -> None:
    import pickle
    import struct

    (tmp_path / "weights.bin").write_bytes(pickle.dumps({"a": 1}, protocol=4))
    header = b'{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    (tmp_path / "model.png").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    (tmp_path / "notes.csv").write_text("c,d\n1,2\n")
    m = manifest.build_from_directory(tmp_path, use_cache=False).by_path()
    assert m["weights.bin"].format == "pickle"
    assert m["model.png"].format == "safetensors"
    assert m["notes.csv"].format is None


def test_stat_cache_forgets_deleted_files(tmp_path: Path) -> None:
    from ml_integrity.core import hashing

    root = tmp_path / "model"
    root.mkdir()
    (root / "a.bin").write_bytes(b"a")
    (root / "b.bin").write_bytes(b"b")
    manifest.build_from_directory(root)
    cache_path = hashing.default_cache_path(root)
    assert len(hashing.StatCache.load(cache_path)) == 2
    (root / "b.bin").unlink()
    manifest.build_from_directory(root)
    assert len(hashing.StatCache.load(cache_path)) == 1


# --- NFC and NFD names (a folder made on macOS has NFD names) ---------------------

NFC_NAME = "caf\u00e9.bin"
NFD_NAME = "cafe\u0301.bin"


def test_a_folder_of_nfd_names_is_signed_and_verified(tmp_path: Path, cli: CLI) -> None:
    model = tmp_path / "model"
    (model / "sub\u0301dir").mkdir(parents=True)
    (model / NFD_NAME).write_bytes(b"weights")
    (model / "sub\u0301dir" / NFD_NAME).write_bytes(b"more")
    m = manifest.build_from_directory(model, use_cache=False)
    nfc_dir = normalize_path("sub\u0301dir")
    assert {e.path for e in m.entries} == {NFC_NAME, f"{nfc_dir}/{NFC_NAME}"}
    cli("keygen", "--out", tmp_path / "k.pem")
    signed = cli("sign", model, "--key", tmp_path / "k.pem", "--bundle", tmp_path / "m.sig")
    assert signed.returncode == 0, signed.stderr
    args = ("verify", model, "--bundle", tmp_path / "m.sig", "--key", tmp_path / "k.pem.pub")
    ok = cli(*args)
    assert ok.returncode == 0, ok.stderr
    # the same name in NFC (what another machine checks out) verifies too
    (model / NFD_NAME).rename(model / NFC_NAME)
    assert cli(*args).returncode == 0
    # a tampered NFD-named file is refused, by its NFC name
    (model / NFC_NAME).rename(model / NFD_NAME)
    (model / NFD_NAME).write_bytes(b"tampered")
    bad = cli(*args)
    assert bad.returncode == 1 and NFC_NAME in bad.stderr, bad.stderr


def test_an_nfd_twin_of_a_signed_nfc_file_is_refused(tmp_path: Path, cli: CLI) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / NFC_NAME).write_bytes(b"signed")
    (model / "other.bin").write_bytes(b"other")
    cli("keygen", "--out", tmp_path / "k.pem")
    assert (
        cli("sign", model, "--key", tmp_path / "k.pem", "--bundle", tmp_path / "m.sig").returncode
        == 0
    )
    (model / NFD_NAME).write_bytes(b"the unsigned twin")  # never hashed before: now refused
    r = cli("verify", model, "--bundle", tmp_path / "m.sig", "--key", tmp_path / "k.pem.pub")
    assert r.returncode == ExitCode.FAILURE, r.stderr
    assert "two files have the same name in NFC" in r.stderr
    with pytest.raises(ManifestError, match="same name in NFC"):
        manifest.list_files(model)


# --- parse limits: hostile documents are refused by name, never a crash ---------------


@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
def test_deeply_nested_documents_are_refused_by_name(opener: bytes) -> None:
    from ml_integrity.core import oms
    from ml_integrity.errors import BundleError

    closer = b"]" if opener == b"[" else b"}"
    deep = opener * 200_000 + b"0" + closer * 200_000
    with pytest.raises(ManifestError, match="nested deeper") as m:
        Manifest.from_json(deep, source="deep/manifest.json")
    assert m.value.exit_code == ExitCode.FAILURE and "deep/manifest.json" in m.value.diagnostics()
    with pytest.raises(BundleError, match="nested deeper") as b:
        oms.parse_bundle(deep, "deep.sig")
    assert b.value.exit_code == ExitCode.FAILURE and "deep.sig" in b.value.diagnostics()
    with pytest.raises(BundleError, match="nested deeper"):
        oms.parse_statement(deep, "deep.sig")


def test_oversized_documents_are_refused_before_parsing() -> None:
    with pytest.raises(ValueError, match="over the limit"):
        manifest.loads_limited(b" " * 101, max_size=100)
