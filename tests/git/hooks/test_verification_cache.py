"""The verification cache (.git/ml-integrity/cache/) is keyed by the trust actually used.

A reused checkout must never answer from a verification made under other
trust: not when the command line's key replaces the git config's, not when
a caller brings its own verifier.
"""

from __future__ import annotations

from pathlib import Path

from ml_integrity.core.verifying import VerifiedPayload
from ml_integrity.git.repository import Repository
from ml_integrity.git.runner import Git
from tests.git.hooks.support import SAFE, git, lfs_repo, make_keys, mi, write


def _signed_repo(tmp_path: Path) -> tuple[Path, Path, Path]:
    repo = lfs_repo(tmp_path / "repo")
    signer = make_keys(tmp_path, "signer")
    other = make_keys(tmp_path, "other")
    write(repo, {"model.bin": SAFE})
    git("add", "model.bin", cwd=repo)
    assert mi("sign-repo", "--key", signer.key, cwd=repo).returncode == 0
    git("commit", "-q", "-m", "signed", cwd=repo)
    return repo, signer.pub, other.pub


def test_a_policy_is_not_answered_from_the_git_config_trust(tmp_path: Path) -> None:
    repo, signer_pub, other_pub = _signed_repo(tmp_path)
    git("config", "ml-integrity.publicKey", signer_pub, cwd=repo)
    ok = mi("verify", "--git-repo", cwd=repo)
    assert ok.returncode == 0, ok.output
    assert list((repo / ".git" / "ml-integrity" / "cache").glob("*.json"))  # it was cached
    # the same bundles, another trust: must be verified again, and fail
    policy = tmp_path / "other.yaml"
    policy.write_text(f"version: 1\nsigners:\n  other:\n    key: {other_pub}\n")
    refused = mi("verify", "--git-repo", "--policy", policy, cwd=repo)
    assert refused.returncode == 1, refused.output
    assert "does not trust" in refused.stderr or "another key" in refused.stderr


def test_verify_repository_with_a_verifier_is_not_answered_from_the_cache(
    tmp_path: Path,
) -> None:
    import pytest

    from ml_integrity.errors import IntegrityError
    from ml_integrity.git.verification import verify_repository
    from ml_integrity.trust.keys import KeyVerifier

    repo, signer_pub, other_pub = _signed_repo(tmp_path)
    assert verify_repository(repo, verifier=KeyVerifier(signer_pub)).ok
    with pytest.raises(IntegrityError, match="another key"):
        verify_repository(repo, verifier=KeyVerifier(other_pub))


def test_one_command_line_key_does_not_answer_for_another(tmp_path: Path) -> None:
    repo, signer_pub, other_pub = _signed_repo(tmp_path)
    assert mi("verify", "--git-repo", "--key", signer_pub, cwd=repo).returncode == 0
    refused = mi("verify", "--git-repo", "--key", other_pub, cwd=repo)
    assert refused.returncode == 1, refused.output
    again = mi("verify", "--git-repo", "--key", signer_pub, cwd=repo)
    assert again.returncode == 0, again.output


class _TrustEverything:
    """A verifier with no trust fingerprint (what a caller's own verifier may be)."""

    def __init__(self) -> None:
        self.calls = 0

    def verify_bundle(self, bundle: bytes, source: str) -> VerifiedPayload:
        from ml_integrity.core import oms

        self.calls += 1
        parsed = oms.parse_bundle(bundle, source)
        return VerifiedPayload(parsed.payload_type, parsed.payload, "anyone", {})


def test_a_verifier_without_fingerprint_is_never_cached(tmp_path: Path) -> None:
    repo, signer_pub, _ = _signed_repo(tmp_path)
    cache = repo / ".git" / "ml-integrity" / "cache"
    verifier = _TrustEverything()
    for _ in range(2):
        with Repository(Git(repo), verifier_factory=lambda _root: verifier) as r:
            assert r.trust_key() is None
            assert r.check_tree("HEAD", worktree=False).ok
    assert verifier.calls == 2  # verified each time, never answered from a cache
    assert not cache.exists() or not list(cache.glob("*.json"))
    # a verifier that fingerprints its trust is cached under that fingerprint
    from ml_integrity.trust.keys import KeyVerifier

    keyed = KeyVerifier(signer_pub)
    with Repository(Git(repo), verifier_factory=lambda _root: keyed) as r:
        assert r.trust_key() == "verifier:" + keyed.trust_fingerprint()
        assert r.check_tree("HEAD", worktree=False).ok
    assert len(list(cache.glob("*.json"))) == 1
