"""``ml-integrity verify --staged``: every staged LFS file covered by a staged signature."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.git.hooks.support import SAFE, Keys, git, lfs_repo, make_keys, mi, write


def _repo(tmp_path: Path) -> tuple[Path, Keys]:
    repo = lfs_repo(tmp_path / "r")
    keys = make_keys(tmp_path / "keys")
    git("config", "ml-integrity.publicKey", keys.pub, cwd=repo)
    write(repo, {"a.bin": SAFE, "models/b.bin": b"weights B\n"})
    git("add", ".", cwd=repo)
    return repo, keys


def test_unsigned_then_signed_then_changed(tmp_path: Path) -> None:
    repo, keys = _repo(tmp_path)
    unsigned = mi("verify", "--staged", cwd=repo)
    assert unsigned.returncode == 1, unsigned.output
    assert "2 staged path(s) are not covered by a valid signature" in unsigned.stderr
    assert "the index has no signature" in unsigned.stderr
    assert "ml-integrity sign-repo --key KEY" in unsigned.stderr
    assert mi("sign-repo", "--key", keys.key, cwd=repo).returncode == 0
    ok = mi("verify", "--staged", cwd=repo)
    assert ok.returncode == 0, ok.output
    assert "OK: staged 2 files (2 LFS) verified (signed by" in ok.stdout
    git("commit", "-q", "-m", "signed", cwd=repo)
    write(repo, {"a.bin": b"changed after signing\n"})
    git("add", "a.bin", cwd=repo)
    changed = mi("verify", "--staged", cwd=repo)
    assert changed.returncode == 1, changed.output
    assert "changed: a.bin (its LFS pointer" in changed.stderr
    assert "models/b.bin" not in changed.stderr
    # the work tree does not count, the index does: unstage the change
    git("reset", "-q", "HEAD", "a.bin", cwd=repo)
    assert mi("verify", "--staged", cwd=repo).returncode == 0


def test_trust_from_the_command_line_and_another_signer(tmp_path: Path) -> None:
    repo, keys = _repo(tmp_path)
    git("config", "--unset", "ml-integrity.publicKey", cwd=repo)
    assert mi("sign-repo", "--key", keys.key, cwd=repo).returncode == 0
    none = mi("verify", "--staged", cwd=repo)
    assert none.returncode == 1 and "no trust root" in none.stderr, none.output
    assert mi("verify", "--staged", "--key", keys.pub, cwd=repo).returncode == 0
    other = make_keys(tmp_path / "other")
    wrong = mi("verify", "--staged", "--key", other.pub, "--json", cwd=repo)
    assert wrong.returncode == 1 and "another key" in wrong.stderr, wrong.output


def test_trust_files_changed_by_the_commit_are_refused(tmp_path: Path) -> None:
    repo, keys = _repo(tmp_path)
    assert mi("sign-repo", "--key", keys.key, cwd=repo).returncode == 0
    inside = repo / "keys" / "signer.pub"
    inside.parent.mkdir()
    shutil.copy(keys.pub, inside)
    git("add", inside, cwd=repo)  # the commit brings its own key
    refused = mi("verify", "--staged", "--key", inside, cwd=repo)
    assert refused.returncode == 2, refused.output
    assert "keys/signer.pub is part of the change being committed" in refused.stderr
    git("config", "ml-integrity.publicKey", "keys/signer.pub", cwd=repo)  # git config: same
    assert mi("verify", "--staged", cwd=repo).returncode == 2
    assert mi("sign-repo", "--key", keys.key, cwd=repo).returncode == 0  # the key is signed too
    git("commit", "-q", "--no-verify", "-m", "key, reviewed", cwd=repo)
    assert mi("verify", "--staged", cwd=repo).returncode == 0  # in HEAD, unchanged: fine
    inside.write_text(inside.read_text().replace("A", "B", 1))  # edited in the work tree
    edited = mi("verify", "--staged", cwd=repo)
    assert edited.returncode == 2 and "part of the change" in edited.stderr, edited.output


def test_policy_deny_allow_and_must_sign(tmp_path: Path) -> None:
    repo, keys = _repo(tmp_path)
    assert mi("sign-repo", "--key", keys.key, cwd=repo).returncode == 0
    git("commit", "-q", "-m", "signed", cwd=repo)
    write(repo, {"scratch/tmp.bin": b"unsigned scratch\n"})
    git("add", "scratch/tmp.bin", cwd=repo)
    import hashlib

    denied = hashlib.sha256(SAFE).hexdigest()
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"version: 1\nsigners:\n  release:\n    key: {keys.pub}\n"
        f"artifacts:\n  must-sign: ['models/**', 'a.bin']\n"
    )
    ok = mi("verify", "--staged", "--policy", policy, cwd=repo)
    assert ok.returncode == 0, ok.output
    assert "unsigned files accepted by the policy: scratch/tmp.bin" in ok.stdout
    assert f"policy: {policy} (command line)" in ok.stdout
    policy.write_text(policy.read_text() + f"deny:\n  digests: [{denied}]\n")
    refused = mi("verify", "--staged", "--policy", policy, cwd=repo)
    assert refused.returncode == 1 and "a.bin (sha256:" in refused.stderr, refused.output
    assert "is denied by the policy" in refused.stderr
    two = tmp_path / "two.yaml"
    two.write_text(
        f"version: 1\nsigners:\n  a:\n    key: {keys.pub}\n  b:\n    key: {keys.pub}\n"
        "require:\n  all-of: [a, b]\n"
    )
    # enforced in repository mode: one key counts once, so all-of [a, b] is not met
    unmet = mi("verify", "--staged", "--policy", two, cwd=repo)
    assert unmet.returncode == 1, unmet.output
    assert "requirement is not met: each of a, b must sign" in unmet.stderr


def test_raw_content_under_lfs_is_refused(tmp_path: Path) -> None:
    """A file Git LFS tracks, staged as raw bytes (git-lfs not installed), is not signed."""
    repo, keys = _repo(tmp_path)
    assert mi("sign-repo", "--key", keys.key, cwd=repo).returncode == 0
    raw = tmp_path / "raw"
    raw.write_bytes(b"raw model bytes\n")
    blob = git("hash-object", "-w", "--no-filters", raw, cwd=repo).stdout.strip()
    git("update-index", "--add", "--cacheinfo", f"100644,{blob},c.bin", cwd=repo)
    r = mi("verify", "--staged", "--json", cwd=repo)
    assert r.returncode == 1, r.output
    assert "c.bin" in r.stderr and "staged as raw content" in r.stderr
    assert json.loads(r.stdout)["ok"] is False
