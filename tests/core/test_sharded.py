"""Sharded manifests and partial verification (verify --paths).

Above the shard threshold a folder is signed as shards plus one signed
top-level statement; below it, the very OMS statement ``signing.sign`` makes
(model_signing interop unchanged). Verification reads only the shards it needs.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from ml_integrity.core import oms, sharded, signing, signing_stream, verifying
from ml_integrity.engines.threads import ThreadEngine
from ml_integrity.errors import BundleError, ExitCode, IntegrityError
from ml_integrity.trust.keys import KeySigner, KeyVerifier, generate
from tests.conftest import CLI


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return generate(tmp_path / "keys" / "key.pem", "ec-p256")


def _tree(root: Path, n: int = 23) -> Path:
    for i in range(n):
        d = root / f"d{i % 4}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:03d}.txt").write_text(f"item {i}\n")
    return root


def _payload(bundle: Path) -> bytes:
    doc = json.loads(bundle.read_text())
    return base64.b64decode(doc["dsseEnvelope"]["payload"])


def _sign(
    root: Path, key: Path, bundle: Path, shard_entries: int
) -> signing_stream.StreamSignResult:
    return signing_stream.sign_folder(
        root, KeySigner(key), bundle, ThreadEngine(use_cache=False), shard_entries=shard_entries
    )


def test_below_the_threshold_the_statement_is_the_plain_oms_one(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    root = _tree(tmp_path / "data")
    plain = tmp_path / "plain.sig"
    signing.sign(root, KeySigner(keys[0]), plain, rehash=True)
    result = _sign(root, keys[0], tmp_path / "streamed.sig", shard_entries=23)
    assert result.shards == 0
    assert _payload(tmp_path / "streamed.sig") == _payload(plain)
    assert not sharded.shard_dir_for(tmp_path / "streamed.sig").exists()


def test_sharded_sign_and_verify(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    root = _tree(tmp_path / "data")
    bundle = root / "data.sig"  # inside the folder: it and its shards are left out
    result = _sign(root, keys[0], bundle, shard_entries=5)
    assert (result.files, result.shards) == (23, 5)
    folder = sharded.shard_dir_for(bundle)
    assert sorted(p.name for p in folder.iterdir()) == [f"0000{i}.json" for i in range(5)]
    payload = _payload(bundle)
    assert sharded.is_sharded(payload)
    top = sharded.parse_top(payload, str(bundle))
    assert [s.files for s in top.shards] == [5, 5, 5, 5, 3]
    # every shard is itself a valid OMS statement
    for shard in top.shards:
        model = oms.parse_statement((folder / shard.name).read_bytes(), shard.name)
        assert len(model.resources) == shard.files

    verifier = KeyVerifier(keys[1])
    verified, signed = verifying.verify_signed_payload(bundle, verifier)
    assert len(signed.resources) == 23
    check = verifying.check_content(root, signed, [bundle], signer=verified.signer)
    assert check.files == 23

    (root / "d1" / "f005.txt").write_text("tampered\n")
    with pytest.raises(IntegrityError) as info:
        verifying.check_content(root, signed, [bundle], signer=verified.signer)
    assert info.value.diff is not None and info.value.diff.changed == ("d1/f005.txt",)


def test_partial_verification_reads_only_the_needed_shards(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    root = _tree(tmp_path / "data")
    bundle = tmp_path / "data.sig"
    _sign(root, keys[0], bundle, shard_entries=5)
    top = sharded.parse_top(_payload(bundle), str(bundle))
    wanted = "d0/f000.txt"
    (needed,) = top.shards_for([wanted])
    folder = sharded.shard_dir_for(bundle)
    for info in top.shards:  # every other shard is broken: it must not be read
        if info.name != needed.name:
            (folder / info.name).write_text("garbage")
    (root / "d3" / "f003.txt").write_text("tampered, but not asked about\n")
    verified, signed = verifying.verify_signed_payload(bundle, KeyVerifier(keys[1]), paths=[wanted])
    check = verifying.check_content(root, signed, [bundle], signer=verified.signer, paths=[wanted])
    assert check.files == 1
    with pytest.raises(BundleError, match="SHA-256 differs"):
        verifying.verify_signed_payload(bundle, KeyVerifier(keys[1]))


def test_a_tampered_or_missing_shard_fails(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    root = _tree(tmp_path / "data")
    bundle = tmp_path / "data.sig"
    _sign(root, keys[0], bundle, shard_entries=5)
    folder = sharded.shard_dir_for(bundle)
    original = (folder / "00002.json").read_bytes()
    doc = json.loads(original)
    doc["predicate"]["resources"][0]["digest"] = "0" * 64
    (folder / "00002.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="SHA-256 differs"):
        verifying.verify_signed_payload(bundle, KeyVerifier(keys[1]))
    (folder / "00002.json").unlink()
    with pytest.raises(BundleError, match="missing") as info:
        verifying.verify_signed_payload(bundle, KeyVerifier(keys[1]))
    assert info.value.exit_code == ExitCode.FAILURE


def _top(**change: object) -> bytes:
    info = sharded.ShardInfo("00000.json", "a", "b", 2, 10, "1" * 64, "2" * 64)
    second = sharded.ShardInfo("00001.json", "c", "d", 1, 3, "3" * 64, "4" * 64)
    doc = json.loads(
        sharded.build_top([info, second], model_name="m", shard_dir="x.shards", ignore_paths=[])
    )
    for key, value in change.items():
        doc["predicate"][key] = value
    return json.dumps(doc).encode()


def test_top_level_statement_is_validated() -> None:
    assert len(sharded.parse_top(_top(), "t").shards) == 2
    shards: list[dict[str, object]] = json.loads(_top())["predicate"]["shards"]
    bad: list[dict[str, object]] = [
        {"shard_directory": "../x.shards"},
        {"shard_directory": "elsewhere"},
        {"files": 4},
        {"shards": []},
        {"shards": [shards[1], shards[0]]},  # out of order, misnamed
        {"shards": [shards[0], {**shards[1], "first": "a"}]},  # overlapping
        {"shards": [shards[0], {**shards[1], "root_digest": "5" * 64}]},  # subject mismatch
        {"shards": [{**shards[0], "first": "../a"}, shards[1]]},
    ]
    for change in bad:
        with pytest.raises(BundleError):
            sharded.parse_top(_top(**change), "t")


def test_cli_shards_and_paths(tmp_path: Path, keys: tuple[Path, Path], cli: CLI) -> None:
    root = _tree(tmp_path / "data")
    key, pub = keys
    bundle = tmp_path / "data.sig"
    r = cli("sign", root, "--key", key, "--bundle", bundle, "--shard-entries", "10", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["shards"] == 3
    assert cli("verify", root, "--bundle", bundle, "--key", pub).returncode == 0
    (root / "d2" / "f002.txt").write_text("tampered\n")
    r = cli("verify", root, "--bundle", bundle, "--key", pub, "--paths", "d0/f000.txt")
    assert r.returncode == 0, r.stderr
    r = cli("verify", root, "--bundle", bundle, "--key", pub, "--paths", "d2/f002.txt", "new.txt")
    assert r.returncode == 1
    assert "changed: d2/f002.txt" in r.stderr and "new.txt (not signed)" in r.stderr
    r = cli("verify", root, "--bundle", bundle, "--key", pub, "--paths", "../etc/passwd")
    assert r.returncode == 2


def test_cli_paths_on_a_single_bundle(tmp_path: Path, keys: tuple[Path, Path], cli: CLI) -> None:
    root = _tree(tmp_path / "data")
    key, pub = keys
    bundle = tmp_path / "data.sig"
    assert cli("sign", root, "--key", key, "--bundle", bundle).returncode == 0
    (root / "extra.txt").write_text("not signed, not asked about\n")
    r = cli("verify", root, "--bundle", bundle, "--key", pub, "--paths", str(root / "d1/f001.txt"))
    assert r.returncode == 0, r.stderr
    (root / "d1" / "f001.txt").unlink()
    r = cli("verify", root, "--bundle", bundle, "--key", pub, "--paths", "d1/f001.txt")
    assert r.returncode == 1 and "missing: d1/f001.txt" in r.stderr
    (root / "d1" / "f001.txt").symlink_to(root / "d0" / "f000.txt")
    r = cli("verify", root, "--bundle", bundle, "--key", pub, "--paths", "d1/f001.txt")
    assert r.returncode == 1, r.stderr
    assert "changed: d1/f001.txt (a symbolic link)" in r.stderr
