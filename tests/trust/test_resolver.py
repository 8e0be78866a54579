"""The one trust resolver: every entry point's inputs become one immutable Trust.

The repository is read through the git runner (``git.runner.Git`` satisfies
``trust.policy_source.RepositoryReader``); GitPython is gone, and the filter and hook
start-up stays free of cryptography and sigstore.
"""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from ml_integrity.errors import ConfigError, UsageError
from ml_integrity.git.runner import Git
from ml_integrity.trust import keys as _keys
from ml_integrity.trust.resolver import SigstoreRoots, Trust, TrustRequest, resolve_trust
from tests.conftest import REPO_ROOT

SRC = REPO_ROOT / "src" / "ml_integrity"
HEAVY = ("cryptography", "sigstore", "yaml", "requests")


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def make_repo(root: Path) -> Path:
    root.mkdir()
    git(root, "init", "-q")
    (root / "README").write_text("hi\n")
    git(root, "add", "README")
    git(root, "commit", "-q", "-m", "first")
    return root


def public_key(folder: Path, name: str) -> Path:
    _, pub = _keys.generate(folder / name, "ec-p256")
    return pub


def test_no_module_imports_gitpython() -> None:
    # one git runner: `git` subprocesses through git/runner.py, never a second library
    offenders = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path}: {n}" for n in names if n == "git" or n.startswith("git.")]
    assert not offenders
    pyproject = (REPO_ROOT / "pyproject.toml").read_text().lower()
    assert "gitpython" not in pyproject


def test_filter_and_hook_start_up_load_no_heavy_module() -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ml_integrity", "filter-process", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert "ml_integrity.cli.main" in imported  # the probe sees our modules
    assert not {m for m in imported if m.split(".")[0] in ("cryptography", "sigstore")}
    # what the filter, the agent and the hooks load to build their trust
    probe = (
        "import sys; from pathlib import Path; "
        "import ml_integrity.cli.filter_process, ml_integrity.cli.transfer_agent, "
        "ml_integrity.cli.hook, ml_integrity.git.repository; "
        "from ml_integrity.git.runner import Git; "
        "from ml_integrity.trust.resolver import TrustRequest, resolve_trust; "
        "t = resolve_trust(TrustRequest(), 'checkout', repo=Git(Path(sys.argv[1]))); "
        "print(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(REPO_ROOT)], capture_output=True, text=True, check=True
    ).stdout
    assert not [m for m in HEAVY if f"'{m}'" in out], out


def test_checkout_trust_is_the_git_config_and_immutable(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    pub = public_key(tmp_path, "signer")
    git(repo, "config", "ml-integrity.publicKey", str(pub))
    trust = resolve_trust(TrustRequest(), "checkout", repo=Git(repo))
    assert trust.policy is None  # no policy configured: the key settings
    assert trust.settings_map()["ml-integrity.publickey"] == str(pub)
    assert trust.files == (pub,)
    assert trust.describe() is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        trust.policy = None  # type: ignore[misc]
    verifier = trust.verifier(repo)
    assert isinstance(verifier, _keys.KeyVerifier)


def test_checkout_trust_honours_the_git_config_policy_outside_the_work_tree(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo")
    pub = public_key(tmp_path, "signer")
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"version: 1\nsigners:\n  owner: {{key: {pub}}}\nrollback:\n  not-older-than: 3\n"
    )
    git(repo, "config", "ml-integrity.publicKey", str(pub))
    git(repo, "config", "ml-integrity.policy", str(policy))
    trust = resolve_trust(TrustRequest(), "checkout", repo=Git(repo))
    assert trust.policy is not None and trust.policy.rollback.not_older_than == 3
    assert policy in trust.files  # its change invalidates the verification cache
    inside = repo / "policy.yaml"
    inside.write_bytes(policy.read_bytes())
    git(repo, "config", "ml-integrity.policy", "policy.yaml")
    with pytest.raises(ConfigError, match="work tree"):
        resolve_trust(TrustRequest(), "checkout", repo=Git(repo))


def test_in_repo_policy_is_read_at_the_trusted_base_through_git(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    keys = repo / ".ml-integrity" / "keys"
    keys.mkdir(parents=True)
    alice = public_key(tmp_path, "alice")
    (keys / "alice.pub").write_bytes(alice.read_bytes())
    policy = repo / ".ml-integrity" / "policy.yaml"
    policy.write_text("version: 1\nsigners:\n  alice: {key: keys/alice.pub}\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "trust alice")
    base = git(repo, "rev-parse", "HEAD")
    # the change under review swaps the key: the base's key still applies
    (keys / "alice.pub").write_bytes(public_key(tmp_path, "mallory").read_bytes())
    request = TrustRequest(policy_base="HEAD")
    trust = resolve_trust(request, "repository", repo=Git(repo))
    assert trust.policy is not None and trust.source is not None
    assert (trust.source.kind, trust.source.revision) == ("in-repo", base)
    (signer,) = trust.policy.signers
    assert signer.rule.kind == "key"  # the base's copy of the key, not the work tree's
    assert getattr(signer.rule, "fingerprint", "") == _keys.key_hint(_keys.load_public_key(alice))
    assert not trust.notes  # policy.yaml itself is unchanged in the work tree
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_trust(TrustRequest(policy_base="no-such-rev"), "repository", repo=Git(repo))


def test_repository_trust_orders_command_line_policy_and_config(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    pub = public_key(tmp_path, "signer")
    # one --key: the fast path, read like git config trust
    fast = resolve_trust(TrustRequest(keys=(str(pub),)), "repository", repo=Git(repo))
    assert fast.policy is None and fast.settings_map() == {"ml-integrity.publickey": str(pub)}
    # with a rollback option it becomes a command-line policy
    inline = resolve_trust(
        TrustRequest(keys=(str(pub),), not_older_than=3), "repository", repo=Git(repo)
    )
    assert inline.policy is not None and inline.policy.rollback.not_older_than == 3
    assert inline.describe() == "command-line options"
    assert pub in inline.files
    with pytest.raises(UsageError, match="either --policy or trust options"):
        request = TrustRequest(keys=(str(pub),), policy=str(tmp_path / "p.yaml"))
        resolve_trust(request, "repository", repo=Git(repo))
    # nothing given: the repository's git config (here: none, so no trust root)
    empty = resolve_trust(TrustRequest(), "repository", repo=Git(repo))
    assert empty.policy is None and "ml-integrity.publickey" not in empty.settings_map()
    # a staged check runs offline; the rest of the trust is unchanged
    staged = inline.offline()
    assert staged.roots.offline and staged.policy == inline.policy and not inline.roots.offline


def test_clone_trust_is_what_the_new_clone_git_config_holds(tmp_path: Path) -> None:
    pub = public_key(tmp_path, "signer")
    trust = resolve_trust(TrustRequest(keys=(str(pub),)), "clone")
    assert trust.git_config() == {"ml-integrity.publicKey": str(pub.resolve())}
    with pytest.raises(UsageError, match="trust file not found"):
        resolve_trust(TrustRequest(cert_chain=(str(tmp_path / "none.pem"),)), "clone")


class _Inputs:
    """The Action's reader: trust material by value, as the Action's inputs name it."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.read_names: list[str] = []

    def read(self, value: str, what: str) -> tuple[bytes, str]:
        self.read_names.append(value)
        return self.files[value], f"{value} at base commit"


def test_action_trust_reads_through_the_entry_point_reader(tmp_path: Path) -> None:
    pub = public_key(tmp_path, "signer").read_bytes()
    reader = _Inputs({"keys/release.pub": pub, "root.json": b'{"mediaType": "x"}'})
    request = TrustRequest(keys=("keys/release.pub",), trusted_root="root.json")
    trust = resolve_trust(request, "action", reader=reader)
    assert trust.policy is not None
    (signer,) = trust.policy.signers
    assert signer.name == "public-key-1" and signer.rule.kind == "key"
    assert reader.read_names == ["keys/release.pub", "root.json"]
    assert trust.roots.trusted_root == (b'{"mediaType": "x"}', "root.json at base commit")
    assert trust.backends().trust_fingerprint() is None  # the Action's results are not cached
    with pytest.raises(UsageError, match="no trust given to the Action"):
        resolve_trust(TrustRequest(), "action", reader=reader)


def test_trust_fingerprint_follows_the_sigstore_root_options() -> None:
    plain = Trust().backends().trust_fingerprint()
    staging = Trust(roots=SigstoreRoots(instance="staging")).backends().trust_fingerprint()
    offline = Trust(roots=SigstoreRoots(offline=True)).backends().trust_fingerprint()
    assert plain and staging and offline and len({plain, staging, offline}) == 3
