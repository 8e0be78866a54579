"""Sealing a journal and verifying it through the real command line."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from ml_integrity.data import Journal, VerifiedDataset, merkle
from ml_integrity.data.journal_check import read_journal
from tests.conftest import CLI
from tests.data.conftest import Signed, make_dataset, make_model, sign
from tests.support.sigstore_doubles import OIDCTokenServer


def train(signed: Signed, tmp_path: Path, *, inline_limit: int = 10_000) -> tuple[Path, Path]:
    journal = Journal()
    train_ds = VerifiedDataset(
        signed.root, bundle=signed.bundle, key=signed.pub, journal=journal, split="train"
    )
    for path in train_ds.files[:4]:
        train_ds.read_bytes(path)
    train_ds.read_bytes(train_ds.files[0])
    test_root = make_dataset(tmp_path, "holdout", files=2)
    test_bundle = sign(test_root, signed.key, tmp_path / "holdout.sig")
    test_ds = VerifiedDataset(
        test_root, bundle=test_bundle, key=signed.pub, journal=journal, split="test"
    )
    for path in test_ds.files:
        with test_ds.open(path) as f:
            f.read()
    model = make_model(tmp_path)
    out = tmp_path / "run.journal"
    result = journal.seal(model=model, key=signed.key, output=out, inline_limit=inline_limit)
    assert result.datasets == 2 and result.items == 4 + 3
    return model, out


def test_seal_verify_show(signed: Signed, tmp_path: Path, cli: CLI) -> None:
    model, out = train(signed, tmp_path)
    trust = ["--key", signed.pub]
    r = cli("journal", "verify", out, *trust, "--model", model, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [(d["name"], d["split"], d["items"]) for d in doc["datasets"]] == [
        ("dataset", "train", 4),
        ("holdout", "test", 3),
    ]
    datasets = [
        "--dataset", signed.root, "--dataset-bundle", signed.bundle,
        "--dataset", tmp_path / "holdout", "--dataset-bundle", tmp_path / "holdout.sig",
    ]  # fmt: skip
    r = cli("journal", "verify", out, *trust, "--model", model, *datasets)
    assert r.returncode == 0, r.stderr
    assert "dataset " + str(signed.root) + " matches dataset [train]" in r.stdout
    show = cli("journal", "show", out)
    assert show.returncode == 0
    assert "dataset holdout [test]: 3 of 3 item(s) read" in show.stdout
    assert "NOT verified" in show.stdout
    # the predicate type and the subject, as docs/format.md describes them
    statement = json.loads(base64.b64decode(json.loads(out.read_text())["dsseEnvelope"]["payload"]))
    assert statement["predicateType"] == "https://ml-integrity.github.io/training-journal/v1"
    assert statement["subject"][0]["name"] == "model"


def test_bad_journals(signed: Signed, tmp_path: Path, cli: CLI) -> None:
    model, out = train(signed, tmp_path)
    trust = ["--key", signed.pub]
    # a journal from another model
    other = make_model(tmp_path, "other-model")
    r = cli("journal", "verify", out, *trust, "--model", other)
    assert r.returncode == 1 and "journal is for another model" in r.stderr
    assert str(out) in r.stderr
    (model / "config.json").write_text('{"layers": 3}')
    assert cli("journal", "verify", out, *trust, "--model", model).returncode == 1
    (model / "config.json").write_text('{"layers": 2}')
    # a tampered journal: its signed payload edited
    bundle = json.loads(out.read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["predicate"]["datasets"][0]["items"]["count"] = 1
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    tampered = tmp_path / "tampered.journal"
    tampered.write_text(json.dumps(bundle))
    r = cli("journal", "verify", tampered, *trust)
    assert r.returncode == 1 and "signature does not verify" in r.stderr
    # an untrusted signer
    _, other_pub = __import__("tests.data.conftest", fromlist=["make_key"]).make_key(
        tmp_path, "other.pem"
    )
    assert cli("journal", "verify", out, "--key", other_pub).returncode == 1
    # a journal naming a dataset whose bundle is not given
    r = cli("journal", "verify", out, *trust, "--dataset", signed.root,
            "--dataset-bundle", signed.bundle)  # fmt: skip
    assert r.returncode == 1
    assert "names dataset holdout" in r.stderr and "bundle was not given" in r.stderr
    # a dataset that is not the one the journal names
    stranger = make_dataset(tmp_path, "stranger", files=1)
    stranger_sig = sign(stranger, signed.key, tmp_path / "stranger.sig")
    r = cli("journal", "verify", out, *trust, "--dataset", stranger,
            "--dataset-bundle", stranger_sig)  # fmt: skip
    assert r.returncode == 1 and "is not one the journal names" in r.stderr
    # usage
    assert cli("journal", "verify", out, *trust, "--dataset", stranger).returncode == 2
    assert cli("journal", "verify", tmp_path / "nope", *trust).returncode == 2
    assert cli("journal", "verify", out).returncode == 2


def test_sidecar_for_many_items(signed: Signed, tmp_path: Path, cli: CLI) -> None:
    model, out = train(signed, tmp_path, inline_limit=3)
    sidecar = out.with_name(out.name + ".items.jsonl")
    lines = sidecar.read_bytes().splitlines()
    assert len(lines) == 7
    journal = read_journal(out)
    assert [d.count for d in journal.datasets] == [4, 3]
    assert (
        journal.predicate["sidecar"]["sha256"] == hashlib.sha256(sidecar.read_bytes()).hexdigest()
    )
    assert "list" not in journal.predicate["datasets"][0]["items"]
    ok = cli("journal", "verify", out, "--key", signed.pub, "--model", model)
    assert ok.returncode == 0, ok.stderr
    sidecar.write_bytes(sidecar.read_bytes().replace(b'"reads":2', b'"reads":3'))
    r = cli("journal", "verify", out, "--key", signed.pub)
    assert r.returncode == 1 and "sidecar" in r.stderr and "tampered" in r.stderr
    sidecar.unlink()
    r = cli("journal", "verify", out, "--key", signed.pub)
    assert r.returncode == 1 and "missing" in r.stderr


def _reference_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, recursively."""
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(
        b"\x01" + _reference_root(leaves[:k]) + _reference_root(leaves[k:])
    ).digest()


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 33])
def test_merkle_root_is_rfc6962(n: int) -> None:
    leaves = [merkle.item_line(0, f"p{i}", 1, "0" * 64) for i in range(n)]
    assert merkle.merkle_root(leaves) == _reference_root(leaves).hex()
    assert merkle.parse_line(leaves[0]) == (0, "p0", 1, "0" * 64)
    assert merkle.parse_line(leaves[0].replace(b":", b": ")) is None  # not canonical


def test_merkle_empty() -> None:
    assert merkle.merkle_root([]) == hashlib.sha256(b"").hexdigest()


def test_keyless_seal_and_verify(
    signed: Signed,
    tmp_path: Path,
    cli: CLI,
    oidc_server: OIDCTokenServer,
    sigstore_trust_config: Path,
) -> None:
    journal = Journal()
    ds = VerifiedDataset(signed.root, bundle=signed.bundle, key=signed.pub, journal=journal)
    ds.read_bytes("labels.csv")
    model = make_model(tmp_path)
    out = tmp_path / "keyless.journal"
    result = journal.seal(
        model=model,
        sigstore=True,
        identity_token=oidc_server.mint(),
        trust_config=sigstore_trust_config,
        output=out,
    )
    assert "octo-org/models" in result.signer
    github = [
        "--github-repository", "octo-org/models", "--github-workflow", "release.yml",
        "--trusted-root", sigstore_trust_config,
    ]  # fmt: skip
    r = cli("journal", "verify", out, *github, "--model", model)
    assert r.returncode == 0, r.stderr
    wrong = cli("journal", "verify", out, *github[:2], "--github-workflow", "ci.yml",
                *github[4:])  # fmt: skip
    assert wrong.returncode == 1
