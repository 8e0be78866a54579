"""The Action in verify mode on pull requests: real git, git-lfs and a local bare ``origin``.

Each test builds the situation a pull-request job sees: ``origin`` holds a
signed ``main`` and a pull-request branch; the workspace is a shallow clone of
the branch with LFS files left as pointers (what ``actions/checkout`` does by
default), so the Action has to fetch the base commit and, for the scan, the
LFS objects of the changed files, from ``origin``.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from ml_integrity.trust import keys as _keys

from .conftest import ActionEnv, git, pr_event

pytest.importorskip("ml_integrity.git.repository", reason="needs the LFS repository layer")
pytestmark = pytest.mark.skipif(shutil.which("git-lfs") is None, reason="git-lfs not installed")

SAFE = {"models/a.bin": b"weights A " * 50, "models/b.bin": b"tokenizer B " * 50}


def mi(*args: str | Path, cwd: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ml_integrity", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@dataclass
class World:
    """``origin`` with a signed main, a developer clone ``dev``, and the trusted key."""

    root: Path
    origin: Path
    dev: Path
    key: Path
    pub: Path
    base: str

    def write(self, files: dict[str, bytes]) -> None:
        for name, data in files.items():
            p = self.dev / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)

    def commit(self, message: str, *, sign_with: Path | None = None) -> str:
        git(self.dev, "add", "-A")
        if sign_with is not None:
            mi("sign-repo", "--key", sign_with, cwd=self.dev)
        git(self.dev, "commit", "-q", "-m", message)
        return git(self.dev, "rev-parse", "HEAD")

    def pull_request(self, branch: str = "feature") -> ActionEnv:
        """Push the branch; return the job of a pull request from it into main."""
        head = git(self.dev, "rev-parse", "HEAD")
        git(self.dev, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
        work = self.root / f"checkout-{branch}"
        git(
            self.root,
            "clone",
            "-q",
            "--depth=1",
            "--branch",
            branch,
            f"file://{self.origin}",
            str(work),
        )
        env = ActionEnv(self.root, work, self.origin)
        env.event = pr_event(self.base, head)
        env.inputs["public-key"] = self.pub.read_text()
        return env


def make_world(root: Path) -> World:
    origin = root / "origin.git"
    dev = root / "dev"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    subprocess.run(["git", "init", "-q", str(dev)], check=True)
    git(dev, "lfs", "install", "--local")
    git(dev, "remote", "add", "origin", str(origin))
    (dev / ".gitattributes").write_text("*.bin filter=lfs diff=lfs merge=lfs -text\n")
    key, pub = _keys.generate(root / "keys" / "trusted.pem", "ec-p256")
    world = World(root, origin, dev, key, pub, "")
    world.write(SAFE)
    world.base = world.commit("signed models", sign_with=key)
    git(dev, "push", "-q", "origin", "HEAD:refs/heads/main")
    return world


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setenv("GIT_LFS_SKIP_SMUDGE", "1")  # pointers, as actions/checkout leaves them
    return make_world(tmp_path)


def test_signed_pull_request_verifies_and_scans_only_what_changed(world: World) -> None:
    world.write({"models/c.bin": b"new weights C " * 40})
    world.commit("add c", sign_with=world.key)
    job = world.pull_request()
    result = job.run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.outputs["verified"] == "true"
    report = result.report
    assert report["ok"] is True
    rows = {a["path"]: a for a in report["artifacts"]}
    assert {p: r["signature"] for p, r in rows.items()} == {
        "models/a.bin": "ok",
        "models/b.bin": "ok",
        "models/c.bin": "ok",
    }
    # Only the changed artifact was scanned, from its fetched LFS object.
    assert rows["models/c.bin"]["scan"] == "safe"
    assert rows["models/a.bin"]["scan"] is None
    lfs_objects = list((job.workspace / ".git" / "lfs" / "objects").rglob("*"))
    assert len([p for p in lfs_objects if p.is_file()]) == 1
    assert report["scan_scope"].startswith("changed since ")
    assert any("EC P-256 key" in s for s in report["signers"])
    assert "✅ verified" in result.summary
    assert "(from the Action's inputs)" in result.summary
    assert not result.errors()


def test_unsigned_change_is_refused_with_annotation_and_sarif(world: World) -> None:
    world.write({"models/a.bin": b"tampered weights " * 30})
    world.commit("change a without signing")
    job = world.pull_request()
    job.inputs["sarif-file"] = "ml-integrity.sarif"
    result = job.run()
    assert result.returncode == 1, result.stdout
    assert result.outputs["verified"] == "false"
    (error,) = result.errors()
    assert error.props["file"] == "models/a.bin"
    assert "not signed by a trusted signer" in error.props["title"]
    assert "does not match the signed manifest" in error.message
    sarif = json.loads((job.workspace / "ml-integrity.sarif").read_text())
    results = sarif["runs"][0]["results"]
    assert [r["ruleId"] for r in results] == ["not-signed"]
    assert results[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == (
        "models/a.bin"
    )
    assert result.outputs["sarif-path"] == "ml-integrity.sarif"
    assert "❌ not verified" in result.summary


def test_signed_pickle_is_still_refused_by_the_scan(world: World) -> None:
    world.write({"models/evil.bin": pickle.dumps(os.system)})
    world.commit("signed, but a pickle", sign_with=world.key)
    job = world.pull_request()
    job.inputs["sarif-file"] = "out.sarif"
    result = job.run()
    assert result.returncode == 1
    rows = {a["path"]: a for a in result.report["artifacts"]}
    assert rows["models/evil.bin"]["signature"] == "ok"
    assert rows["models/evil.bin"]["scan"] == "unsafe"
    (error,) = result.errors()
    assert error.props["file"] == "models/evil.bin"
    assert error.props["title"].startswith("ml-integrity: ")
    rules = {
        r["ruleId"]
        for r in json.loads((job.workspace / "out.sarif").read_text())["runs"][0]["results"]
    }
    assert rules and "not-signed" not in rules


def _trusted_key_in_base(world: World) -> tuple[Path, Path]:
    """Commit the trusted key as keys/signer.pub on main; return an attacker's key pair."""
    (world.dev / "keys").mkdir()
    shutil.copy(world.pub, world.dev / "keys" / "signer.pub")
    world.base = world.commit("trusted key in the repository", sign_with=world.key)
    git(world.dev, "push", "-q", "origin", "HEAD:refs/heads/main")
    return _keys.generate(world.root / "attacker" / "k.pem", "ec-p256")


def test_pull_request_cannot_change_the_trusted_key_file(world: World) -> None:
    # The trusted key lives in the repository; the pull request replaces it
    # with its own key and signs its change with that key.
    attacker, attacker_pub = _trusted_key_in_base(world)
    shutil.copy(attacker_pub, world.dev / "keys" / "signer.pub")
    world.write({"models/a.bin": b"backdoored " * 30})
    world.commit("new weights", sign_with=attacker)
    job = world.pull_request()
    job.inputs["public-key"] = "keys/signer.pub"
    result = job.run()
    assert result.returncode == 1, result.stdout
    assert result.outputs["verified"] == "false"
    assert "keys/signer.pub at base commit" in result.report["trust"][0]
    assert "which is not a trusted signer" in result.report["signature_error"]
    # every path of HEAD is refused, the key file too (the manifest is the whole tree)
    assert {e.props["file"] for e in result.errors()} == {
        "keys/signer.pub",
        "models/a.bin",
        "models/b.bin",
    }


def test_pull_request_cannot_add_a_trusted_key(world: World) -> None:
    attacker, attacker_pub = _keys.generate(world.root / "attacker" / "k.pem", "ec-p256")
    (world.dev / "keys").mkdir()
    shutil.copy(attacker_pub, world.dev / "keys" / "new.pub")
    (world.dev / ".ml-integrity" / "policy.yaml").write_text("trust: everyone\n")
    world.write({"models/a.bin": b"backdoored " * 30})
    world.commit("bring my own key", sign_with=attacker)
    job = world.pull_request()
    job.inputs["public-key"] = "keys/new.pub"
    result = job.run()
    assert result.returncode == 2
    (error,) = result.errors()
    assert "does not exist in the base commit" in error.message
    assert error.props["file"] == "keys/new.pub"


def test_a_reused_checkout_does_not_answer_from_another_trust(world: World) -> None:
    # Self-hosted runners keep .git between jobs; the verification cache in
    # .git/ml-integrity/ must not let a run with other trust pass.
    job = world.pull_request()
    assert job.run().returncode == 0
    _other, other_pub = _keys.generate(world.root / "other" / "k.pem", "ec-p256")
    job.inputs["public-key"] = other_pub.read_text()
    again = job.run()
    assert again.returncode == 1
    assert "which is not a trusted signer" in again.report["signature_error"]


def test_annotations_stop_at_ten_and_the_summary_counts_the_rest(world: World) -> None:
    world.write({f"models/n{i:02}.bin": f"unsigned {i}".encode() * 20 for i in range(13)})
    world.commit("13 unsigned files")
    job = world.pull_request()
    job.inputs["scan"] = "none"
    result = job.run()
    assert result.returncode == 1
    assert len(result.errors()) == 10
    assert "3 more problem(s) are not annotated" in result.summary
    assert len([a for a in result.report["artifacts"] if a["signature"] == "refused"]) == 13


def test_missing_trust_input_is_a_usage_error(world: World) -> None:
    job = world.pull_request()
    job.inputs["public-key"] = ""
    result = job.run()
    assert result.returncode == 2
    assert "no trust given" in result.errors()[0].message
    assert result.outputs["verified"] == "false"


def test_base_commit_that_cannot_be_fetched_is_operational(world: World) -> None:
    job = world.pull_request()
    job.event = pr_event("1" * 40, "2" * 40)
    result = job.run()
    assert result.returncode == 3
    assert "fetch-depth: 0" in result.errors()[0].message


def test_model_folder_with_its_bundle_on_push(action_env: ActionEnv, tmp_path: Path) -> None:
    key, pub = _keys.generate(tmp_path / "k" / "signer.pem", "ec-p256")
    model = action_env.workspace / "models" / "tiny"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}\n")
    (model / "weights.bin").write_bytes(b"w" * 100)
    mi("sign", model, "--key", key, "--bundle", action_env.workspace / "tiny.sig", cwd=tmp_path)
    git(action_env.workspace, "add", "-A")
    git(action_env.workspace, "commit", "-q", "-m", "model")
    action_env.event_name = "push"
    action_env.event = {}
    action_env.inputs.update(
        {"path": "models/tiny", "bundle": "tiny.sig", "public-key": str(pub), "scan": "all"}
    )
    ok = action_env.run()
    assert ok.returncode == 0, ok.stdout
    rows = {a["path"]: a for a in ok.report["artifacts"]}
    assert set(rows) == {"models/tiny/config.json", "models/tiny/weights.bin"}
    assert all(r["signature"] == "ok" and r["scan"] == "safe" for r in rows.values())

    (model / "weights.bin").write_bytes(b"x" * 100)
    bad = action_env.run()
    assert bad.returncode == 1
    (error,) = bad.errors()
    assert error.props["file"] == "models/tiny/weights.bin"


def test_sign_mode_signs_the_lfs_pointers_of_head_without_downloading(
    world: World, tmp_path: Path
) -> None:
    from ml_integrity.core import oms
    from ml_integrity.trust.keys import KeyVerifier

    job = world.pull_request("v1-release")
    job.event_name = "push"
    job.event = {}
    job.extra["GITHUB_REF"] = "refs/tags/v1"
    job.inputs = {"mode": "sign", "signing-key": str(world.key), "upload-to-release": "false"}
    result = job.run()
    assert result.returncode == 0, result.stdout + result.stderr
    bundle = Path(result.outputs["bundle-path"])
    assert bundle.name == "models.sig"  # GITHUB_REPOSITORY acme/models
    payload = KeyVerifier(world.pub).verify_bundle(bundle.read_bytes(), str(bundle))
    signed = oms.parse_statement(payload.payload, str(bundle))
    assert set(signed.resources) == set(SAFE)
    assert signed.repository == "127.0.0.1:9/acme/models"
    lfs = job.workspace / ".git" / "lfs" / "objects"
    assert not lfs.exists() or not [p for p in lfs.rglob("*") if p.is_file()]


def test_policy_file_is_read_from_the_base_commit(world: World) -> None:
    from ml_integrity.trust import policy as _policy_module  # noqa: F401  (needs the policy layer)

    trust = world.dev / ".github" / "ml-integrity"
    trust.mkdir(parents=True)
    shutil.copy(world.pub, trust / "release.pub")
    (trust / "policy.yaml").write_text("version: 1\nsigners:\n  release:\n    key: release.pub\n")
    world.base = world.commit("trust policy", sign_with=world.key)
    git(world.dev, "push", "-q", "origin", "HEAD:refs/heads/main")

    # The pull request trusts its own key in the policy (and in the in-repo
    # policy file), and signs its change with it.
    attacker, attacker_pub = _keys.generate(world.root / "attacker" / "k.pem", "ec-p256")
    shutil.copy(attacker_pub, trust / "mine.pub")
    (trust / "policy.yaml").write_text(
        "version: 1\nsigners:\n  release:\n    key: release.pub\n  me:\n    key: mine.pub\n"
    )
    (world.dev / ".ml-integrity" / "policy.yaml").write_text(
        "version: 1\nsigners:\n  me:\n    key: ../.github/ml-integrity/mine.pub\n"
    )
    world.write({"models/a.bin": b"backdoored " * 30})
    world.commit("trust myself", sign_with=attacker)
    job = world.pull_request()
    job.inputs = {"policy": ".github/ml-integrity/policy.yaml"}
    result = job.run()
    assert result.returncode == 1, result.stdout + result.stderr
    trusted = " ".join(result.report["trust"])
    assert "policy .github/ml-integrity/policy.yaml at base commit" in trusted
    assert "mine.pub" not in trusted
    assert "which the policy does not trust" in result.report["signature_error"]

    # The same policy passes a change signed by the release key.
    git(world.dev, "reset", "-q", "--hard", world.base)
    world.write({"models/a.bin": b"new release weights " * 20})
    world.commit("signed update", sign_with=world.key)
    good = world.pull_request("good")
    good.inputs = {"policy": ".github/ml-integrity/policy.yaml"}
    ok = good.run()
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_a_symlink_cannot_lead_trust_out_of_the_base_commit(world: World) -> None:
    # The pull request turns the trusted key file into a link to a key outside
    # the workspace; the Action must still read the file as the base has it.
    attacker, attacker_pub = _trusted_key_in_base(world)
    (world.dev / "keys" / "signer.pub").unlink()
    (world.dev / "keys" / "signer.pub").symlink_to(attacker_pub)
    world.write({"models/a.bin": b"backdoored " * 30})
    git(world.dev, "add", "-A")
    refused = subprocess.run(
        [sys.executable, "-m", "ml_integrity", "sign-repo", "--key", attacker],
        cwd=world.dev,
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 1 and "a symbolic link" in refused.stderr  # not signable
    world.commit("link the key")
    job = world.pull_request()
    job.inputs["public-key"] = "keys/signer.pub"
    result = job.run()
    assert result.returncode == 1, result.stdout
    assert "keys/signer.pub at base commit" in result.report["trust"][0]


def test_a_two_signer_policy_and_rollback_in_repository_mode(world: World) -> None:
    """all-of and rollback are enforced on the repository (no longer refused as unsupported):
    one signature is not enough, two are; an old version is refused."""
    trust = world.dev / ".github" / "ml-integrity"
    trust.mkdir(parents=True)
    second, second_pub = _keys.generate(world.root / "second" / "k.pem", "ec-p256")
    shutil.copy(world.pub, trust / "release.pub")
    shutil.copy(second_pub, trust / "second.pub")
    (trust / "policy.yaml").write_text(
        "version: 1\nsigners:\n  release:\n    key: release.pub\n  second:\n    key: second.pub\n"
        "require:\n  all-of: [release, second]\nrollback:\n  not-older-than: 3\n"
    )
    world.base = world.commit("two-person policy", sign_with=world.key)
    git(world.dev, "push", "-q", "origin", "HEAD:refs/heads/main")
    world.write({"models/a.bin": b"reviewed weights " * 20})
    world.commit("one signature", sign_with=world.key)
    one = world.pull_request("one")
    one.inputs = {"policy": ".github/ml-integrity/policy.yaml", "scan": "none"}
    result = one.run()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "requirement is not met" in json.dumps(result.report)
    git(world.dev, "add", "-A")
    mi("sign-repo", "--key", second, "--name", "second", cwd=world.dev)
    world.commit("second signature")
    two = world.pull_request("two")
    two.inputs = {"policy": ".github/ml-integrity/policy.yaml", "scan": "none"}
    ok = two.run()
    assert ok.returncode == 0, ok.stdout + ok.stderr
