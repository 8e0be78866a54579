"""Every OMS bundle model_signing 1.1.1 makes: algorithms x serializations, both ways.

Both directions for every combination model_signing's API can make
(sha256, blake2 and blake3 over files; sha256 and blake2 in shards; blake3
with a shard size, which model_signing turns into files): bundles we sign
verify with model_signing, bundles model_signing signs verify with ours, and
a changed file fails on both sides. model_signing's CLI re-hashes with
files + sha256 only, so the other modes go through its API (in a child
process, tests/core/model_signing_api.py); files + sha256 goes through both.
Also: the legacy v0.2.0 vector, ignore paths, git paths and symbolic links.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ml_integrity.core import hashing, legacy_v02, oms
from ml_integrity.errors import BundleError
from tests.conftest import CLI, VECTORS
from tests.core.test_cli_keys import make_model
from tests.core.test_interop import model_signing

API = Path(__file__).with_name("model_signing_api.py")
KEYS = VECTORS / "model-transparency-v1.0.0" / "keys" / "certificate"
LEGACY = VECTORS / "model-transparency-v0.2.0" / "v0.2.0-certificate"
SHARD = 100_000  # the model's 300 kB weights file is three shards

# (--hash, --shard-size): every combination model_signing's API can make
COMBOS = [
    pytest.param("sha256", None, id="sha256-files"),
    pytest.param("blake2", None, id="blake2-files"),
    pytest.param("blake3", None, id="blake3-files"),
    pytest.param("sha256", SHARD, id="sha256-shards"),
    pytest.param("blake2", SHARD, id="blake2-shards"),
]


def ms_api(verb: str, **spec: Any) -> subprocess.CompletedProcess[str]:
    """model_signing's API: ``sign`` or ``verify`` with a key (see model_signing_api.py)."""
    spec = {k: str(v) if isinstance(v, Path) else v for k, v in spec.items()}
    return subprocess.run(
        [sys.executable, API, verb, json.dumps(spec)], capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def keypair(tmp_path: Path, cli: CLI) -> tuple[Path, Path]:
    assert cli("keygen", "--out", tmp_path / "k.pem", "--type", "ec-p384").returncode == 0
    return tmp_path / "k.pem", tmp_path / "k.pem.pub"


def shard_args(shard_size: int | None) -> list[str]:
    return [] if shard_size is None else ["--shard-size", str(shard_size)]


# --- ours -> model_signing ----------------------------------------------------


@pytest.mark.parametrize(("algorithm", "shard_size"), COMBOS)
def test_our_bundles_verify_with_model_signing(
    tmp_path: Path, cli: CLI, keypair: tuple[Path, Path], algorithm: str, shard_size: int | None
) -> None:
    key, pub = keypair
    model, sig = make_model(tmp_path), tmp_path / "ours.sig"
    r = cli(
        "sign", model, "--key", key, "--bundle", sig, "--hash", algorithm,
        *shard_args(shard_size), "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    kind = "files" if shard_size is None else f"shards of {shard_size}"
    assert json.loads(r.stdout)["hashing"] == f"{oms_name(algorithm)} {kind}"
    spec = {"model": model, "signature": sig, "key": pub, "hash": algorithm}
    ok = ms_api("verify", **spec, shard_size=shard_size)
    assert ok.returncode == 0, ok.stderr
    if algorithm != "blake2":  # model_signing cannot guess blake2: 'blake2b' is not its name
        auto = ms_api("verify", model=model, signature=sig, key=pub)
        assert auto.returncode == 0, auto.stderr
    if (algorithm, shard_size) == ("sha256", None):
        via_cli = model_signing("verify", "key", model, "--signature", sig, "--public_key", pub)
        assert via_cli.returncode == 0, via_cli.stderr
    (model / "weights.safetensors").write_bytes(b"\0" * 300_000)
    bad = ms_api("verify", **spec, shard_size=shard_size)
    assert bad.returncode == 1 and "weights.safetensors" in bad.stderr


def oms_name(algorithm: str) -> str:
    return "blake2b" if algorithm == "blake2" else algorithm


def test_our_single_file_shard_bundle_verifies_with_model_signing(
    tmp_path: Path, cli: CLI, keypair: tuple[Path, Path]
) -> None:
    key, pub = keypair
    f = make_model(tmp_path) / "weights.safetensors"
    r = cli("sign", f, "--key", key, "--bundle", tmp_path / "f.sig", "--shard-size", str(SHARD))
    assert r.returncode == 0, r.stderr
    spec = {"model": f, "signature": tmp_path / "f.sig", "key": pub, "hash": "sha256"}
    ok = ms_api("verify", **spec, shard_size=SHARD)
    assert ok.returncode == 0, ok.stderr
    assert cli("verify", f, "--bundle", tmp_path / "f.sig", "--key", pub).returncode == 0


# --- model_signing -> ours ----------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "shard_size"),
    [*COMBOS, pytest.param("blake3", SHARD, id="blake3-shards-made-files")],
)
def test_model_signing_bundles_verify_with_ours(
    tmp_path: Path, cli: CLI, keypair: tuple[Path, Path], algorithm: str, shard_size: int | None
) -> None:
    key, pub = keypair
    model, sig = make_model(tmp_path), tmp_path / "theirs.sig"
    made = ms_api(
        "sign", model=model, signature=sig, key=key, hash=algorithm, shard_size=shard_size
    )
    assert made.returncode == 0, made.stderr
    statement = json.loads(base64.b64decode(json.loads(sig.read_text())["dsseEnvelope"]["payload"]))
    ser = statement["predicate"]["serialization"]
    assert ser["hash_type"] == oms_name(algorithm)
    # model_signing hashes BLAKE3 over files even when asked for shards
    assert ser["method"] == ("files" if shard_size is None or algorithm == "blake3" else "shards")
    ok = cli("verify", model, "--bundle", sig, "--key", pub, "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["files"] == 3
    # one shard of the big file changed: refused, and named as the file
    with open(model / "weights.safetensors", "r+b") as f:
        f.seek(SHARD + 7)
        byte = f.read(1)[0]
        f.seek(SHARD + 7)
        f.write(bytes([byte ^ 0xFF]))  # always a change (the weights are random bytes)
    bad = cli("verify", model, "--bundle", sig, "--key", pub)
    assert bad.returncode == 1
    assert "changed: weights.safetensors" in bad.stderr


def test_model_signing_ignore_paths_symlinks_and_git_paths(
    tmp_path: Path, cli: CLI, keypair: tuple[Path, Path]
) -> None:
    """Signed ignore paths are honoured, allow_symlinks follows links, signed git paths count."""
    key, pub = keypair
    model, sig = make_model(tmp_path), tmp_path / "theirs.sig"
    (model / "notes").mkdir()
    (model / "notes" / "draft.md").write_text("draft")
    (model / ".gitignore").write_text("*.tmp\n")
    os.symlink("weights.safetensors", model / "alias.safetensors")
    made = ms_api(
        "sign", model=model, signature=sig, key=key, hash="sha256", shard_size=SHARD,
        ignore_paths=["notes"], ignore_git_paths=False, allow_symlinks=True,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    (model / "notes" / "draft.md").write_text("changed: ignored, since the signature says so")
    ok = cli("verify", model, "--bundle", sig, "--key", pub, "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["files"] == 5  # alias and .gitignore included
    (model / ".gitignore").write_text("changed\n")
    bad = cli("verify", model, "--bundle", sig, "--key", pub)
    assert bad.returncode == 1 and "changed: .gitignore" in bad.stderr


def test_our_no_ignore_git_paths_matches_model_signing(
    tmp_path: Path, cli: CLI, keypair: tuple[Path, Path]
) -> None:
    key, pub = keypair
    model, sig = make_model(tmp_path), tmp_path / "ours.sig"
    (model / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    r = cli("sign", model, "--key", key, "--bundle", sig, "--no-ignore-git-paths", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["files"] == 4
    theirs = model_signing(
        "verify", "key", model, "--signature", sig, "--public_key", pub, "--no-ignore-git-paths"
    )
    assert theirs.returncode == 0, theirs.stderr
    # with git paths ignored (the default) they would be missing for model_signing
    default = model_signing("verify", "key", model, "--signature", sig, "--public_key", pub)
    assert default.returncode == 1 and ".gitattributes" in default.stderr
    # ours checks a git path the bundle signs even with --ignore-git-paths
    (model / ".gitattributes").write_text("changed\n")
    bad = cli("verify", model, "--bundle", sig, "--key", pub)
    assert bad.returncode == 1 and "changed: .gitattributes" in bad.stderr


def test_unsigned_git_paths_count_with_no_ignore_git_paths(
    tmp_path: Path, cli: CLI, keypair: tuple[Path, Path]
) -> None:
    """A bundle that records no ignore paths: --no-ignore-git-paths makes .gitignore extra."""
    key, pub = keypair
    model, sig = make_model(tmp_path), tmp_path / "theirs.sig"
    made = ms_api(
        "sign", model=model, signature=sig, key=key, hash="sha256", ignore_git_paths=False
    )
    assert made.returncode == 0, made.stderr
    statement = json.loads(base64.b64decode(json.loads(sig.read_text())["dsseEnvelope"]["payload"]))
    assert "ignore_paths" not in statement["predicate"]["serialization"]
    (model / ".gitignore").write_text("new\n")
    assert cli("verify", model, "--bundle", sig, "--key", pub).returncode == 0
    strict = cli("verify", model, "--bundle", sig, "--key", pub, "--no-ignore-git-paths")
    assert strict.returncode == 1 and "extra: .gitignore" in strict.stderr
    theirs = model_signing("verify", "key", model, "--signature", sig, "--public_key", pub)
    assert theirs.returncode == 0, theirs.stderr
    theirs = model_signing(
        "verify", "key", model, "--signature", sig, "--public_key", pub, "--no-ignore-git-paths"
    )
    assert theirs.returncode == 1 and ".gitignore" in theirs.stderr


def test_empty_files_in_shard_mode(tmp_path: Path, cli: CLI, keypair: tuple[Path, Path]) -> None:
    """An empty file has no shard: we refuse to sign it so, and treat it as unsigned."""
    key, pub = keypair
    model, sig = make_model(tmp_path), tmp_path / "s.sig"
    (model / "empty.txt").write_bytes(b"")
    r = cli("sign", model, "--key", key, "--bundle", sig, "--shard-size", str(SHARD))
    assert r.returncode == 2 and "empty.txt" in r.stderr
    made = ms_api("sign", model=model, signature=sig, key=key, hash="sha256", shard_size=SHARD)
    assert made.returncode == 0, made.stderr
    refused = cli("verify", model, "--bundle", sig, "--key", pub)
    assert refused.returncode == 1 and "extra: empty.txt" in refused.stderr
    accepted = cli("verify", model, "--bundle", sig, "--key", pub, "--ignore-unsigned-files")
    assert accepted.returncode == 0, accepted.stderr


def test_blake3_with_a_shard_size_is_a_usage_error(
    tmp_path: Path, cli: CLI, keypair: tuple[Path, Path]
) -> None:
    key, _ = keypair
    model = make_model(tmp_path)
    r = cli("sign", model, "--key", key, "--bundle", tmp_path / "s.sig", "--hash", "blake3",
            "--shard-size", "1000000")  # fmt: skip
    assert r.returncode == 2 and "BLAKE3" in r.stderr
    tiny = cli("sign", model, "--key", key, "--bundle", tmp_path / "s.sig", "--shard-size", "10")
    assert tiny.returncode == 2 and "--shard-size" in tiny.stderr
    assert not (tmp_path / "s.sig").exists()


# --- the legacy v0.2.0 bundle -------------------------------------------------


def _as_key_bundle(certificate_bundle: Path, out: Path) -> Path:
    """The same payload and signature, with the signer's public key as the material."""
    from ml_integrity.trust.keys import key_hint, load_public_key

    doc = json.loads(certificate_bundle.read_text())
    hint = key_hint(load_public_key(KEYS / "signing-key-pub.pem"))
    doc["verificationMaterial"] = {"publicKey": {"hint": hint}, "tlogEntries": []}
    out.write_text(json.dumps(doc))
    return out


def test_legacy_v020_vector_verifies_and_is_named(tmp_path: Path, cli: CLI) -> None:
    """model_signing 0.2.0's own signature (its encoding, SHA-256 on a P-384 key) verifies,
    through its certificate chain and, with the same payload and signature, its key."""
    trust = ("--cert-chain", KEYS / "ca-cert.pem")
    by_chain = cli("verify", LEGACY, "--bundle", LEGACY / "model.sig", *trust)
    assert by_chain.returncode == 0, by_chain.stderr
    assert "legacy v0.2.0 bundle" in by_chain.stdout
    as_json = cli("verify", LEGACY, "--bundle", LEGACY / "model.sig", *trust, "--json")
    assert json.loads(as_json.stdout)["format"] == "legacy v0.2.0 bundle"
    theirs = model_signing("verify", "certificate", LEGACY, "--signature", LEGACY / "model.sig",
                           "--certificate_chain", KEYS / "ca-cert.pem")  # fmt: skip
    assert theirs.returncode == 0, theirs.stderr
    bundle = _as_key_bundle(LEGACY / "model.sig", tmp_path / "legacy-key.sig")
    pub = KEYS / "signing-key-pub.pem"
    model = tmp_path / "m"  # the signed files, without the vector's own model.sig
    model.mkdir()
    for name in ("signme-1", "signme-2"):
        (model / name).write_bytes((LEGACY / name).read_bytes())
    r = cli("verify", model, "--bundle", bundle, "--key", pub)
    assert r.returncode == 0, r.stderr
    assert "legacy v0.2.0 bundle" in r.stdout
    j = cli("verify", model, "--bundle", bundle, "--key", pub, "--json")
    assert json.loads(j.stdout)["format"] == "legacy v0.2.0 bundle"
    (model / "signme-2").write_bytes(b"signme-3")
    bad = cli("verify", model, "--bundle", bundle, "--key", pub)
    assert bad.returncode == 1 and "changed: signme-2" in bad.stderr
    # one byte of the payload changed: the signature no longer verifies
    doc = json.loads(bundle.read_text())
    payload = base64.b64decode(doc["dsseEnvelope"]["payload"]).replace(b"signme-2", b"signme-3")
    doc["dsseEnvelope"]["payload"] = base64.b64encode(payload).decode()
    (tmp_path / "edited.sig").write_text(json.dumps(doc))
    edited = cli("verify", model, "--bundle", tmp_path / "edited.sig", "--key", pub)
    assert edited.returncode == 1 and "signature does not verify" in edited.stderr


def _key_bundle(statement: bytes, signed: bytes, digest: hashes.HashAlgorithm) -> bytes:
    key = serialization.load_pem_private_key((KEYS / "signing-key.pem").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return oms.make_bundle(statement, key.sign(signed, ec.ECDSA(digest))).encode()


def _legacy_statement(digests: dict[str, str]) -> bytes:
    return json.dumps(
        {
            "_type": oms.STATEMENT_TYPE,
            "subject": [
                {"name": n, "digest": {"sha256": d}, "annotations": {"actual_hash_algorithm": a}}
                for n, (d, a) in ((n, (d, "file-sha256")) for n, d in digests.items())
            ],
            "predicateType": legacy_v02.PREDICATE_TYPE,
            "predicate": {"unused": "Unused, just passed due to API requirements"},
        }
    ).encode()


def test_legacy_encoding_is_used_only_for_legacy_payloads(tmp_path: Path, cli: CLI) -> None:
    """Each predicate type has one encoding: a signature over the other one is refused."""
    model = tmp_path / "m"
    model.mkdir()
    (model / "a.bin").write_bytes(b"a")
    legacy = _legacy_statement({"a.bin": hashlib.sha256(b"a").hexdigest()})
    pub = KEYS / "signing-key-pub.pem"
    cases = {
        "legacy-ok": _key_bundle(legacy, legacy_v02.pae(oms.PAYLOAD_TYPE, legacy), hashes.SHA256()),
        "legacy-over-dsse": _key_bundle(legacy, oms.pae(oms.PAYLOAD_TYPE, legacy), hashes.SHA384()),
    }
    from ml_integrity.core import manifest

    current = oms.build_statement(
        manifest.build_from_directory(model, use_cache=False), model_name="m"
    )
    cases["current-over-legacy"] = _key_bundle(
        current, legacy_v02.pae(oms.PAYLOAD_TYPE, current), hashes.SHA256()
    )
    results = {}
    for name, data in cases.items():
        (tmp_path / f"{name}.sig").write_bytes(data)
        results[name] = cli("verify", model, "--bundle", tmp_path / f"{name}.sig", "--key", pub)
    assert results["legacy-ok"].returncode == 0, results["legacy-ok"].stderr
    assert results["legacy-over-dsse"].returncode == 1
    assert results["current-over-legacy"].returncode == 1
    assert "signature does not verify" in results["current-over-legacy"].stderr


@pytest.mark.parametrize(
    ("subject", "reason"),
    [
        ({"name": "../x", "digest": {"sha256": "0" * 64}}, "escapes the root"),
        ({"name": "x", "digest": {"sha512": "0" * 128}}, "no sha256 digest"),
        (
            {"name": "x", "digest": {"sha256": "0" * 64},
             "annotations": {"actual_hash_algorithm": "shard-sha256"}},
            "only 'file-sha256'",
        ),
    ],
)  # fmt: skip
def test_malformed_legacy_statements_are_refused(subject: dict[str, Any], reason: str) -> None:
    doc = json.loads(_legacy_statement({}))
    doc["subject"] = [subject]
    with pytest.raises(BundleError, match=reason):
        oms.parse_statement(json.dumps(doc).encode(), "x.sig")


# --- hostile or malformed shard statements ------------------------------------


def _shard_statement(resources: list[dict[str, Any]], shard_size: object) -> bytes:
    root = oms.root_digest([r["digest"] for r in resources])
    return json.dumps(
        {
            "_type": oms.STATEMENT_TYPE,
            "subject": [{"name": "m", "digest": {"sha256": root}}],
            "predicateType": oms.PREDICATE_TYPE,
            "predicate": {
                "resources": resources,
                "serialization": {"method": "shards", "hash_type": "sha256",
                                  "shard_size": shard_size, "allow_symlinks": False},
            },
        }
    ).encode()  # fmt: skip


def _res(name: str, algorithm: str = "sha256-sharded-10") -> dict[str, Any]:
    return {"name": name, "algorithm": algorithm, "digest": "ab" * 32}


def test_shard_statements_parse_both_spellings() -> None:
    for size in (10, 10.0):  # model_signing 1.1.1 writes a float
        for alg in ("sha256", "sha256-sharded-10"):
            signed = oms.parse_statement(
                _shard_statement([_res("ab:c:0:10", alg), _res("ab:c:10:15", alg)], size), "s"
            )
            assert signed.shards == {"ab:c": ((0, 10, "ab" * 32), (10, 15, "ab" * 32))}
            assert signed.shard_size == 10


@pytest.mark.parametrize(
    ("resources", "size", "reason"),
    [
        ([_res("a:0:10"), _res("a:20:25")], 10, "do not cut it"),
        ([_res("a:0:5")], 10, None),  # one short shard is a whole small file
        ([_res("a:0:1000000000000000000")], 10, "do not cut it"),  # must not list 10^17 shards
        ([_res("a:0:10", "sha256-sharded-11")], 10, "uses algorithm"),
        ([_res("a:0:10", "blake3")], 10, "uses algorithm"),
        ([_res("a:10")], 10, "path:start:end"),
        ([_res("a:5:5")], 10, "empty or reversed"),
        ([_res("a:0:10")], 0, "positive integer"),
        ([_res("a:0:10")], 10.5, "positive integer"),
        ([_res("a:0:10")], True, "positive integer"),
    ],
)
def test_malformed_shard_statements_are_refused(
    resources: list[dict[str, Any]], size: object, reason: str | None
) -> None:
    payload = _shard_statement(resources, size)
    if reason is None:
        assert oms.parse_statement(payload, "s").files == {"a"}
        return
    with pytest.raises(BundleError, match=reason):
        oms.parse_statement(payload, "s")


def test_digest_length_follows_the_algorithm() -> None:
    doc = json.loads(_shard_statement([_res("a:0:10", "blake2b-sharded-10")], 10))
    doc["predicate"]["serialization"]["hash_type"] = "blake2b"
    with pytest.raises(BundleError, match="malformed blake2b digest"):
        oms.parse_statement(json.dumps(doc).encode(), "s")


# --- the engine against reference implementations -----------------------------


def test_algorithms_and_shards_match_references(tmp_path: Path) -> None:
    data = {"a.bin": os.urandom(250_001), "b.bin": b"", "c.bin": b"xyz"}
    for name, content in data.items():
        (tmp_path / name).write_bytes(content)
    names = sorted(data)
    refs: dict[str, Callable[[bytes], str]] = {
        "sha256": lambda b: hashlib.sha256(b).hexdigest(),
        "blake2b": lambda b: hashlib.blake2b(b).hexdigest(),
        "blake3": lambda b: blake3.blake3(b).hexdigest(),
    }
    for algorithm, ref in refs.items():
        got = hashing.hash_files(tmp_path, names, workers=2, algorithm=algorithm, chunk_size=4096)
        assert {n: d.hexdigest for n, d in got.items()} == {n: ref(data[n]) for n in names}
        assert all(d.algorithm == algorithm for d in got.values())
        one = hashing.hash_file(tmp_path / "a.bin", algorithm=algorithm)
        assert one.hexdigest == ref(data["a.bin"])
    with pytest.raises(ValueError, match="not a sha256"):
        _ = got["a.bin"].sha256  # a blake3 digest is never taken for a SHA-256 one
    shards = hashing.hash_shards(tmp_path, names, shard_size=100_000, workers=2, chunk_size=4096)
    a = data["a.bin"]
    assert shards["a.bin"].shards == tuple(
        (s, e, hashlib.sha256(a[s:e]).hexdigest())
        for s, e in [(0, 100_000), (100_000, 200_000), (200_000, 250_001)]
    )
    assert shards["b.bin"].shards == ()  # an empty file has no shard
    assert shards["c.bin"].shards == ((0, 3, hashlib.sha256(b"xyz").hexdigest()),)


def test_blake3_hashes_a_large_file_on_every_core(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ml_integrity.core import hashing_read

    monkeypatch.setattr(hashing_read, "READAHEAD_MIN_SIZE", 1 << 16)
    monkeypatch.setattr(hashing_read, "MMAP_WINDOW", 1 << 16)
    data = os.urandom((1 << 18) + 3)
    (tmp_path / "big.bin").write_bytes(data)
    seen: list[int] = []
    from ml_integrity.core.hashing_algorithms import new_hasher as real

    def spy(algorithm: str, *, threads: int = 1) -> Any:
        seen.append(threads)
        return real(algorithm, threads=threads)

    monkeypatch.setattr(hashing_read, "new_hasher", spy)
    got = hashing.hash_files(tmp_path, ["big.bin"], workers=2, algorithm="blake3")
    assert got["big.bin"].hexdigest == blake3.blake3(data).hexdigest()
    assert seen == [-1]  # a lone large file: BLAKE3 on every core
    seen.clear()
    hashing.hash_files(tmp_path, ["big.bin"], workers=1, algorithm="blake3")
    assert seen == [1]  # one worker: one thread


def test_shard_hashing_notices_a_file_changed_since_it_was_listed(tmp_path: Path) -> None:
    from ml_integrity.core import hashing_read, hashing_shards
    from ml_integrity.errors import OperationalError

    (tmp_path / "a.bin").write_bytes(b"a" * 50_000)
    key = hashing_read.stat_key(os.lstat(tmp_path / "a.bin"))
    buf = hashing_read.new_buffer(4096)

    (tmp_path / "a.bin").write_bytes(b"b" * 50_001)
    with pytest.raises(OperationalError, match="changed while it was being hashed"):
        hashing_shards.hash_range(
            str(tmp_path / "a.bin"),
            0,
            50_000,
            lambda st: hashing_read.stat_key(st) == key,
            buf=buf,
            algorithm="sha256",
            follow_symlinks=False,
        )


# --- --ignore-path --------------------------------------------------------------


@pytest.mark.parametrize("command", ["sign", "manifest", "verify"])
@pytest.mark.parametrize("value", ["../outside", "a/../../b", "", "/"])
def test_bad_ignore_path_is_a_usage_error(
    tmp_path: Path, cli: CLI, keypair: tuple[Path, Path], command: str, value: str
) -> None:
    key, pub = keypair
    model = make_model(tmp_path)
    sig = tmp_path / "m.sig"
    assert cli("sign", model, "--key", key, "--bundle", sig).returncode == 0
    args = {
        "sign": ["sign", model, "--key", key, "--bundle", tmp_path / "n.sig"],
        "manifest": ["manifest", model],
        "verify": ["verify", model, "--bundle", sig, "--key", pub],
    }[command]
    r = cli(*args, "--ignore-path", value)
    assert r.returncode == 2, r.stderr
    assert "--ignore-path" in r.stderr


def test_absolute_ignore_path_inside_the_model_is_accepted(
    tmp_path: Path, cli: CLI, keypair: tuple[Path, Path]
) -> None:
    key, pub = keypair
    model = make_model(tmp_path)
    sig = tmp_path / "m.sig"
    inside = (model / "tokenizer").resolve()
    r = cli("sign", model, "--key", key, "--bundle", sig, "--ignore-path", inside, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["files"] == 2
    statement = json.loads(base64.b64decode(json.loads(sig.read_text())["dsseEnvelope"]["payload"]))
    assert "tokenizer" in statement["predicate"]["serialization"]["ignore_paths"]
    (model / "tokenizer" / "vocab.txt").write_text("ignored")
    ok = cli("verify", model, "--bundle", sig, "--key", pub, "--ignore-path", inside)
    assert ok.returncode == 0, ok.stderr
    theirs = model_signing("verify", "key", model, "--signature", sig, "--public_key", pub)
    assert theirs.returncode == 0, theirs.stderr


def test_absolute_ignore_path_outside_the_model_is_refused(
    tmp_path: Path, cli: CLI, keypair: tuple[Path, Path]
) -> None:
    key, _ = keypair
    model = make_model(tmp_path)
    for value in (tmp_path / "elsewhere", model.resolve()):
        r = cli("sign", model, "--key", key, "--bundle", tmp_path / "m.sig", "--ignore-path", value)
        assert r.returncode == 2, r.stderr
        assert "--ignore-path" in r.stderr
