"""The trust policy: parsing with file:line errors, every rule through the CLI, precedence.

Signatures here are real: EC keys made for the test (in-process, fast), the
published certificate and keyless vectors, and real git repositories for the
in-repository policy rule. No stand-ins.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ml_integrity.core import signing
from ml_integrity.errors import ConfigError, UsageError
from ml_integrity.trust import keys as _keys
from ml_integrity.trust.policy import (
    GITHUB_ISSUER,
    IDENTITY_FIELDS,
    IdentityRule,
    PolicySource,
    Requirement,
    glob_match,
    identity_rule,
    satisfy,
)
from ml_integrity.trust.policy_source import load_policy
from ml_integrity.trust.policy_yaml import parse_policy
from tests.conftest import CLI, VECTORS

MT = VECTORS / "model-transparency-v1.0.0"
SPEC = VECTORS / "oms-spec-v1.0"


def make_model(root: Path, name: str = "model") -> Path:
    model = root / name
    (model / "sub").mkdir(parents=True)
    (model / "weights.safetensors").write_bytes(os.urandom(2048))
    (model / "config.json").write_text('{"n": 1}')
    (model / "sub" / "vocab.txt").write_text("a\nb\n")
    return model


def keypair(root: Path, name: str) -> tuple[Path, Path]:
    return _keys.generate(root / f"{name}.pem", "ec-p256")


def sign(
    model: Path,
    key: Path,
    out: Path,
    *,
    repository: str | None = None,
    version: int | None = None,
) -> Path:
    signing.sign(model, _keys.KeySigner(key), out, repository=repository, version=version)
    return out


def write_policy(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- parsing ------------------------------------------------------------------------------


def parse(text: str, tmp_path: Path) -> object:
    p = tmp_path / "policy.yaml"
    p.write_text(text)
    return load_policy(p, "command line")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("version: 2\n", 1, "unsupported policy version"),
        ("signers: {}\n", 1, "needs 'version'"),
        ("version: 1\nsigner:\n  a: {key: k.pub}\n", 2, "unknown key 'signer'"),
        ("version: 1\nversion: 1\n", 2, "duplicate key 'version'"),
        ("version: '1'\n", 1, "must be a whole number"),
        (
            "version: 1\nsigners:\n  a:\n    sigstore:\n      issuer: https://x\n",
            5,
            "an issuer alone",
        ),
        (
            "version: 1\nsigners:\n  a:\n    sigstore:\n      identity: a@b\n",
            5,
            "needs issuer",
        ),
        (
            "version: 1\nsigners:\n  a:\n    sigstore:\n      identity-regex: '(['\n"
            "      issuer: https://x\n",
            5,
            "not a valid regular expression",
        ),
        (
            "version: 1\nsigners:\n  a:\n    sigstore:\n      github:\n        repository: x\n",
            6,
            "is not OWNER/REPO",
        ),
        (
            "version: 1\nsigners:\n  a:\n    sigstore:\n      github:\n        repository: o/r\n"
            "        ref: main\n",
            7,
            "not a full ref name",
        ),
        ("version: 1\nsigners:\n  a:\n    key: missing.pub\n", 4, "cannot read public key"),
        ("version: 1\nsigners:\n  a: {key: k.pub, sigstore: {}}\n", 3, "exactly one of"),
        (
            "version: 1\nsigners:\n  a: {key: k.pub}\nrequire:\n  all-of: [a, b]\n",
            5,
            "signer 'b', which is not defined",
        ),
        (
            "version: 1\nsigners:\n  a: {key: k.pub}\nrequire:\n  k-of-n:\n    k: 2\n"
            "    signers: [a]\n",
            6,
            "only 1 signers are listed",
        ),
        ("version: 1\ndeny:\n  digests: [sha256:1234]\n", 3, "not a SHA-256 digest"),
        ("version: 1\npickle: maybe\n", 2, "block or allowlist"),
        ("version: 1\nrollback:\n  not-older-than: -1\n", 3, "at least 0"),
        ("version: 1\nartifacts:\n  paths: ['../x']\n", 3, "must be relative"),
        ("version: 1\nsigners:\n  a: [\n", 4, "not valid YAML"),
        ("version: 1\nsigners:\n  'bad name': {key: k.pub}\n", 3, "may hold only"),
    ],
)
def test_invalid_policies_name_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    _, pub = keypair(tmp_path, "k")
    pub.rename(tmp_path / "k.pub")
    with pytest.raises(ConfigError) as info:
        parse(text, tmp_path)
    err = info.value
    assert err.path == f"{tmp_path / 'policy.yaml'}:{line}", err.diagnostics()
    assert message in err.message, err.diagnostics()
    assert err.exit_code == 2


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse("version: 1\nrollback:\n  not_older_than: 3\n", tmp_path)
    assert "did you mean 'not-older-than'" in (info.value.hint or "")


def test_private_key_in_policy_is_refused_with_a_hint(tmp_path: Path) -> None:
    key, _ = keypair(tmp_path, "k")
    with pytest.raises(ConfigError) as info:
        parse(f"version: 1\nsigners:\n  a:\n    key: {key.name}\n", tmp_path)
    assert "private key" in (info.value.hint or "")


def test_policy_check_explains_in_plain_words(cli: CLI, tmp_path: Path) -> None:
    _, pub = keypair(tmp_path, "airgap")
    policy = write_policy(
        tmp_path / "trust.yaml",
        f"""\
version: 1
signers:
  release:
    sigstore:
      github: {{repository: octo-org/models, workflow: release.yml, ref: refs/tags/v1}}
  security-team:
    sigstore: {{identity: sec@example.com, issuer: https://accounts.google.com}}
  airgap:
    key: {pub.name}
require:
  k-of-n: {{k: 2, signers: [release, security-team, airgap]}}
deny:
  digests: ['{"a" * 64}']
artifacts:
  paths: ['*.safetensors', 'data/**']
  must-sign: ['**/*.safetensors']
pickle: {{mode: allowlist, allowed-digests: ['{"b" * 64}']}}
rollback: {{not-older-than: 7, repository: github.com/octo-org/models}}
""",
    )
    r = cli("policy", "check", policy)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "at least 2 of release, security-team, airgap must sign (one bundle each)" in out
    assert (
        "GitHub Actions (repository octo-org/models, workflow release.yml, ref refs/tags/v1)" in out
    )
    assert "identity sec@example.com issued by https://accounts.google.com" in out
    assert (
        f"airgap: public key {_keys.key_hint(_keys.load_public_key(pub))[:16]} ({pub.name})" in out
    )
    assert "Refused content: 1 digest(s)" in out
    assert "version must be 7 or newer" in out
    assert "pickles are accepted only when" in out
    assert "The policy is valid." in out
    j = cli("policy", "check", policy, "--json")
    report = json.loads(j.stdout)
    assert report["policy"]["require"] == {
        "mode": "k-of-n",
        "signers": ["release", "security-team", "airgap"],
        "k": 2,
    }
    assert report["policy"]["pickle"]["mode"] == "allowlist"
    bad = write_policy(
        tmp_path / "bad.yaml", "version: 1\nsigners:\n  x: {sigstore: {issuer: https://a}}\n"
    )
    r = cli("policy", "check", bad)
    assert r.returncode == 2
    assert f"{bad}:3:" in r.stderr


def test_policy_warnings_are_explained(tmp_path: Path) -> None:
    _, pub = keypair(tmp_path, "k")
    text = f"version: 1\nsigners:\n  a: {{key: {pub.name}}}\n  b: {{key: {pub.name}}}\n"
    policy = parse(text + "require:\n  any-of: [a]\n", tmp_path)
    assert policy.warnings == (  # type: ignore[attr-defined]
        f"{tmp_path / 'policy.yaml'}:5: signer(s) b are defined but not used by require",
    )
    github_only = "version: 1\nsigners:\n  g:\n    sigstore:\n      github: {repository: o/r}\n"
    assert "any workflow of o/r may sign" in parse(github_only, tmp_path).warnings[0]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("*.safetensors", "a/b/w.safetensors", True),
        ("*.safetensors", "w.safetensors", True),
        ("models/*.bin", "models/a.bin", True),
        ("models/*.bin", "models/x/a.bin", False),
        ("models/**", "models/x/a.bin", True),
        ("models/", "models/x/a.bin", True),
        ("**/data/*.csv", "data/a.csv", True),
        ("**/data/*.csv", "x/data/a.csv", True),
        ("data/?.csv", "data/ab.csv", False),
        ("[ab].txt", "c.txt", False),
        ("[ab].txt", "b.txt", True),
        ("**", "anything/at/all", True),
    ],
)
def test_glob_match(pattern: str, path: str, expected: bool) -> None:
    assert glob_match(pattern, path) is expected


CLI_NAMES = {f: "--" + f.replace("_", "-") for f in IDENTITY_FIELDS}
ACTION_NAMES = {f: f.replace("_", "-") for f in IDENTITY_FIELDS}


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"identity": "a@b", "identity_regex": ".*", "issuer": "https://x"}, "{identity} or"),
        ({"issuer": "https://x"}, "{issuer} alone would trust every identity"),
        ({"identity": "a@b"}, "{identity} needs {issuer}"),
        ({"identity_regex": "a.*"}, "{identity_regex} needs {issuer}"),
        ({"identity_regex": "([", "issuer": "https://x"}, "{identity_regex} is not a valid"),
        ({"github_workflow": "release.yml"}, "{github_workflow} needs {github_repository}"),
        (
            {"github_repository": "o/r", "github_workflow": "release.yml@refs/heads/main"},
            "{github_workflow} is a file path; give the ref with {github_ref}",
        ),
        ({"github_repository": "o/r", "github_ref": "main"}, "{github_ref} 'main' is not a full"),
    ],
)
@pytest.mark.parametrize("names", [CLI_NAMES, ACTION_NAMES], ids=["cli", "action"])
def test_identity_options_are_validated_in_the_callers_words(
    given: dict[str, str], message: str, names: dict[str, str]
) -> None:
    with pytest.raises(UsageError) as caught:
        identity_rule(**given, names=names)
    assert message.format(**names) in caught.value.message


def test_identity_options_make_a_rule() -> None:
    assert identity_rule(names=CLI_NAMES) is None
    assert identity_rule(identity="", issuer="", names=ACTION_NAMES) is None
    assert identity_rule(identity="a@b", issuer="https://x", names=CLI_NAMES) == IdentityRule(
        issuer="https://x", identity="a@b"
    )
    github = identity_rule(
        github_repository="o/r", github_workflow="release.yml", github_ref="", names=ACTION_NAMES
    )
    assert github == IdentityRule(
        issuer=GITHUB_ISSUER, github_repository="o/r", github_workflow="release.yml"
    )
    reusable = identity_rule(github_workflow="o/shared/.github/workflows/r.yml", names=CLI_NAMES)
    assert reusable is not None and reusable.workflow_path() == (
        "o/shared",
        ".github/workflows/r.yml",
    )


def test_identity_options_on_the_command_line(cli: CLI, tmp_path: Path) -> None:
    model = make_model(tmp_path)
    r = cli("verify", model, "--bundle", tmp_path / "x.sig", "--github-ref", "main",
            "--github-repository", "o/r")  # fmt: skip
    assert r.returncode == 2
    assert "--github-ref 'main' is not a full ref name" in r.stderr
    assert "refs/heads/main" in r.stderr


def test_one_signer_with_two_roles_counts_once() -> None:
    need_both = Requirement("all-of", ("release", "security"), 2)
    ok, counted = satisfy(need_both, {"alice": {"release", "security"}})
    assert not ok and len(counted) == 1
    ok, counted = satisfy(need_both, {"alice": {"release", "security"}, "bob": {"security"}})
    assert ok and counted == {"release": "alice", "security": "bob"}
    two_of_three = Requirement("k-of-n", ("a", "b", "c"), 2)
    assert satisfy(two_of_three, {"x": {"a"}, "y": {"a"}})[0] is False
    assert satisfy(two_of_three, {"x": {"a"}, "y": {"c"}})[0] is True


# --- every rule through the CLI ------------------------------------------------------------


@pytest.fixture
def three_keys(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    keys = tmp_path / "keys"
    keys.mkdir()
    return {name: keypair(keys, name) for name in ("alice", "bob", "carol")}


def key_policy(tmp_path: Path, keys: dict[str, tuple[Path, Path]], extra: str) -> Path:
    lines = ["version: 1", "signers:"]
    lines += [f"  {name}: {{key: {pub}}}" for name, (_, pub) in keys.items()]
    return write_policy(tmp_path / "policy.yaml", "\n".join(lines) + "\n" + extra)


def test_k_of_n_with_one_signature_missing(
    cli: CLI, tmp_path: Path, three_keys: dict[str, tuple[Path, Path]]
) -> None:
    model = make_model(tmp_path)
    policy = key_policy(
        tmp_path, three_keys, "require:\n  k-of-n: {k: 2, signers: [alice, bob, carol]}\n"
    )
    a = sign(model, three_keys["alice"][0], tmp_path / "a.sig")
    c = sign(model, three_keys["carol"][0], tmp_path / "c.sig")
    a2 = sign(model, three_keys["alice"][0], tmp_path / "a2.sig")
    ok = cli("verify", model, "--bundle", a, "--bundle", c, "--policy", policy)
    assert ok.returncode == 0, ok.stderr
    assert "requirement met: at least 2 of alice, bob, carol must sign" in ok.stdout
    one = cli("verify", model, "--bundle", a, "--policy", policy)
    assert one.returncode == 1
    assert "requirement is not met" in one.stderr
    assert "bob" in one.stderr and "carol" in one.stderr  # the missing ones are named
    same_signer_twice = cli("verify", model, "--bundle", a, "--bundle", a2, "--policy", policy)
    assert same_signer_twice.returncode == 1
    assert "one signer counts once" in same_signer_twice.stderr


def test_all_of_and_any_of(
    cli: CLI, tmp_path: Path, three_keys: dict[str, tuple[Path, Path]]
) -> None:
    model = make_model(tmp_path)
    a = sign(model, three_keys["alice"][0], tmp_path / "a.sig")
    b = sign(model, three_keys["bob"][0], tmp_path / "b.sig")
    all_of = key_policy(tmp_path, three_keys, "require:\n  all-of: [alice, bob]\n")
    assert cli("verify", model, "--bundle", a, "--bundle", b, "--policy", all_of).returncode == 0
    assert cli("verify", model, "--bundle", b, "--policy", all_of).returncode == 1
    any_of = key_policy(tmp_path, three_keys, "require:\n  any-of: [bob, carol]\n")
    assert cli("verify", model, "--bundle", b, "--policy", any_of).returncode == 0
    r = cli("verify", model, "--bundle", a, "--policy", any_of)
    assert r.returncode == 1  # alice is trusted, but not by this requirement


def test_untrusted_key_is_refused(
    cli: CLI, tmp_path: Path, three_keys: dict[str, tuple[Path, Path]]
) -> None:
    model = make_model(tmp_path)
    stranger, _ = keypair(tmp_path, "stranger")
    bundle = sign(model, stranger, tmp_path / "s.sig")
    policy = key_policy(tmp_path, three_keys, "")
    r = cli("verify", model, "--bundle", bundle, "--policy", policy)
    assert r.returncode == 1
    assert "does not trust" in r.stderr
    assert f"policy: {policy} (command line)" in r.stderr


def test_denied_digest_signed_by_a_trusted_signer(
    cli: CLI, tmp_path: Path, three_keys: dict[str, tuple[Path, Path]]
) -> None:
    model = make_model(tmp_path)
    bundle = sign(model, three_keys["alice"][0], tmp_path / "a.sig")
    digest = hashlib.sha256((model / "config.json").read_bytes()).hexdigest()
    allowed = key_policy(tmp_path, three_keys, "")
    assert cli("verify", model, "--bundle", bundle, "--policy", allowed).returncode == 0
    denied = key_policy(tmp_path, three_keys, f"deny:\n  digests: ['sha256:{digest}']\n")
    r = cli("verify", model, "--bundle", bundle, "--policy", denied)
    assert r.returncode == 1
    assert "digest the policy denies" in r.stderr
    assert "config.json (denied digest)" in r.stderr


def test_denied_signer_is_refused_even_if_trusted(
    cli: CLI, tmp_path: Path, three_keys: dict[str, tuple[Path, Path]]
) -> None:
    model = make_model(tmp_path)
    bundle = sign(model, three_keys["alice"][0], tmp_path / "a.sig")
    alice_pub = three_keys["alice"][1]
    policy = key_policy(tmp_path, three_keys, f"deny:\n  signers:\n    - key: {alice_pub}\n")
    r = cli("verify", model, "--bundle", bundle, "--policy", policy)
    assert r.returncode == 1
    assert "denied by the policy" in r.stderr


def test_allowed_digests_and_must_sign_patterns(
    cli: CLI, tmp_path: Path, three_keys: dict[str, tuple[Path, Path]]
) -> None:
    model = make_model(tmp_path)
    bundle = sign(model, three_keys["alice"][0], tmp_path / "a.sig")
    (model / "README.md").write_text("reviewed upstream file\n")
    readme = hashlib.sha256(b"reviewed upstream file\n").hexdigest()
    strict = key_policy(tmp_path, three_keys, "")
    r = cli("verify", model, "--bundle", bundle, "--policy", strict)
    assert r.returncode == 1 and "extra: README.md" in r.stderr
    allow = key_policy(tmp_path, three_keys, f"allow:\n  digests: [{readme}]\n")
    r = cli("verify", model, "--bundle", bundle, "--policy", allow)
    assert r.returncode == 0, r.stderr
    assert "unsigned files accepted by the policy (1): README.md" in r.stdout
    only_weights = key_policy(tmp_path, three_keys, "artifacts:\n  must-sign: ['*.safetensors']\n")
    assert cli("verify", model, "--bundle", bundle, "--policy", only_weights).returncode == 0
    (model / "extra.safetensors").write_bytes(b"unsigned weights")
    r = cli("verify", model, "--bundle", bundle, "--policy", only_weights)
    assert r.returncode == 1
    assert "extra: extra.safetensors" in r.stderr and "README.md" not in r.stderr


def test_rollback_version_and_repository_binding(
    cli: CLI, tmp_path: Path, three_keys: dict[str, tuple[Path, Path]]
) -> None:
    model = make_model(tmp_path)
    key, pub = three_keys["alice"]
    repo = "github.com/octo-org/models"
    v5 = sign(model, key, tmp_path / "v5.sig", repository=repo, version=5)
    plain = sign(model, key, tmp_path / "plain.sig")
    base = ["--key", pub]
    assert cli("verify", model, "--bundle", v5, *base, "--not-older-than", "5").returncode == 0
    old = cli("verify", model, "--bundle", v5, *base, "--not-older-than", "6")
    assert old.returncode == 1
    assert "rollback refused: the signature carries version 5" in old.stderr
    unversioned = cli("verify", model, "--bundle", plain, *base, "--not-older-than", "1")
    assert unversioned.returncode == 1 and "carries no version" in unversioned.stderr
    assert cli("verify", model, "--bundle", v5, *base, "--repository", repo).returncode == 0
    other = cli("verify", model, "--bundle", v5, *base, "--repository", "github.com/evil/fork")
    assert (
        other.returncode == 1 and "bound to repository github.com/octo-org/models" in other.stderr
    )
    policy = key_policy(
        tmp_path, three_keys, f"rollback:\n  not-older-than: 9\n  repository: {repo}\n"
    )
    r = cli("verify", model, "--bundle", v5, "--policy", policy, "--json")
    assert r.returncode == 1
    assert json.loads(r.stdout)["error"] == "PolicyError"
    # the command line can only make the policy stricter
    r = cli("verify", model, "--bundle", v5, "--policy", policy, "--not-older-than", "1")
    assert r.returncode == 1


def test_inline_pem_key_and_certificate_chain_signers(cli: CLI, tmp_path: Path) -> None:
    pem = (MT / "keys" / "certificate" / "signing-key-pub.pem").read_text()
    pem = pem[pem.index("-----BEGIN PUBLIC KEY-----") :]
    indented = "\n".join("      " + line for line in pem.splitlines())
    from tests.core.test_interop import _make_ca

    ca, leaf_key, leaf = _make_ca(tmp_path)
    policy = write_policy(
        tmp_path / "p.yaml",
        f"version: 1\nsigners:\n  test-key:\n    key: |\n{indented}\n"
        f"  test-ca:\n    certificate-chain: [{ca}]\n",
    )
    model = SPEC / "models" / "model"
    # the published certificate vector's leaf is a CA (refused): sign with a real leaf
    by_ca = tmp_path / "cert.sig"
    signed = cli("sign", model, "--key", leaf_key, "--cert", leaf, "--bundle", by_ca)
    assert signed.returncode == 0, signed.stderr
    for bundle, expected in ((SPEC / "valid" / "key.bundle.json", "test-key"), (by_ca, "test-ca")):
        r = cli("verify", model, "--bundle", bundle, "--policy", policy, "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["bundles"][0]["matched_signers"] == [expected]


def test_keyless_regex_signer_from_a_policy(cli: CLI, tmp_path: Path) -> None:
    shutil.copy(MT / "custom_trust_config.json", tmp_path / "root.json")
    policy = write_policy(
        tmp_path / "p.yaml",
        """\
version: 1
sigstore:
  trusted-root: root.json
signers:
  ibm:
    sigstore:
      identity-regex: '[a-z]+@us\\.ibm\\.com'
      issuer: https://sigstore.verify.ibm.com/oauth2
""",
    )
    args = [SPEC / "models" / "model-sigstore", "--bundle", SPEC / "valid" / "sigstore.bundle.json"]
    assert cli("verify", *args, "--policy", policy).returncode == 0
    policy.write_text(policy.read_text().replace("us\\.ibm", "example"))
    r = cli("verify", *args, "--policy", policy)
    assert r.returncode == 1
    assert "identity matching" in r.stderr


def test_policy_and_trust_options_do_not_mix(cli: CLI, tmp_path: Path) -> None:
    _, pub = keypair(tmp_path, "k")
    policy = write_policy(tmp_path / "p.yaml", f"version: 1\nsigners:\n  k: {{key: {pub}}}\n")
    model = make_model(tmp_path)
    r = cli("verify", model, "--bundle", tmp_path / "x.sig", "--policy", policy, "--key", pub)
    assert r.returncode == 2 and "either --policy or trust options" in r.stderr


# --- precedence and the in-repository rule ------------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    make_model(root, "model")
    return root


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def in_repo_policy(repo: Path, *names: str) -> None:
    folder = repo / ".ml-integrity"
    (folder / "keys").mkdir(parents=True, exist_ok=True)
    lines = ["version: 1", "signers:"] + [f"  {n}: {{key: keys/{n}.pub}}" for n in names]
    (folder / "policy.yaml").write_text("\n".join(lines) + "\n")


def test_git_config_policy_and_command_line_precedence(
    cli: CLI, repo: Path, tmp_path: Path
) -> None:
    alice, alice_pub = keypair(tmp_path, "alice")
    bob, bob_pub = keypair(tmp_path, "bob")
    model = repo / "model"
    by_alice = sign(model, alice, tmp_path / "a.sig")
    user_policy = write_policy(
        tmp_path / "mine.yaml", f"version: 1\nsigners:\n  a: {{key: {alice_pub}}}\n"
    )
    cli_policy = write_policy(
        tmp_path / "cli.yaml", f"version: 1\nsigners:\n  b: {{key: {bob_pub}}}\n"
    )
    git(repo, "config", "ml-integrity.policy", str(user_policy))
    r = cli("verify", model, "--bundle", by_alice)
    assert r.returncode == 0, r.stderr
    assert f"policy: {user_policy} (from git config ml-integrity.policy)" in r.stdout
    r = cli("verify", model, "--bundle", by_alice, "--policy", cli_policy)
    assert r.returncode == 1  # the command line wins, and it trusts only bob
    assert f"policy: {cli_policy} (command line)" in r.stderr
    assert bob  # bob's key exists only to be trusted
    inside = write_policy(repo / "trust.yaml", user_policy.read_text())
    r = cli("verify", model, "--bundle", by_alice, "--policy", inside)
    assert r.returncode == 0, r.stderr
    assert "is inside the repository being verified" in r.stdout


def test_in_repo_policy_cannot_trust_a_signer_the_change_introduces(
    cli: CLI, repo: Path, tmp_path: Path
) -> None:
    alice, alice_pub = keypair(tmp_path, "alice")
    mallory, mallory_pub = keypair(tmp_path, "mallory")
    in_repo_policy(repo, "alice")
    shutil.copy(alice_pub, repo / ".ml-integrity" / "keys" / "alice.pub")
    base = commit_all(repo, "trusted: alice signs")

    # the change: adds mallory as a signer and signs the model with mallory's key
    in_repo_policy(repo, "alice", "mallory")
    shutil.copy(mallory_pub, repo / ".ml-integrity" / "keys" / "mallory.pub")
    (repo / "model" / "config.json").write_text('{"n": 2}')
    commit_all(repo, "change: new model, new signer")
    model = repo / "model"
    by_mallory = sign(model, mallory, tmp_path / "m.sig")
    by_alice = sign(model, alice, tmp_path / "a.sig")

    no_base = cli("verify", model, "--bundle", by_mallory)
    assert no_base.returncode == 2
    assert "only honoured as committed at a trusted base revision" in no_base.stderr

    refused = cli("verify", model, "--bundle", by_mallory, "--policy-base", base)
    assert refused.returncode == 1, refused.stderr
    assert "does not trust" in refused.stderr
    assert f"at trusted base {base[:12]}" in refused.stderr

    ok = cli("verify", model, "--bundle", by_alice, "--policy-base", base)
    assert ok.returncode == 0, ok.stderr
    assert "in-repository policy" in ok.stdout
    assert "differs from the trusted base" in ok.stdout

    # the same through git config, and naming the base by a ref
    git(repo, "branch", "reviewed", base)
    git(repo, "config", "ml-integrity.policyBase", "reviewed")
    assert cli("verify", model, "--bundle", by_mallory).returncode == 1
    assert cli("verify", model, "--bundle", by_alice).returncode == 0


def test_in_repo_key_file_swapped_in_the_change_is_not_honoured(
    cli: CLI, repo: Path, tmp_path: Path
) -> None:
    alice, alice_pub = keypair(tmp_path, "alice")
    mallory, mallory_pub = keypair(tmp_path, "mallory")
    in_repo_policy(repo, "alice")
    shutil.copy(alice_pub, repo / ".ml-integrity" / "keys" / "alice.pub")
    base = commit_all(repo, "trusted")
    shutil.copy(mallory_pub, repo / ".ml-integrity" / "keys" / "alice.pub")  # policy.yaml unchanged
    commit_all(repo, "swap the key file")
    by_mallory = sign(repo / "model", mallory, tmp_path / "m.sig")
    r = cli("verify", repo / "model", "--bundle", by_mallory, "--policy-base", base)
    assert r.returncode == 1
    assert alice  # alice's key stays trusted; only its file in the change was swapped


def test_in_repo_policy_introduced_by_the_change_is_refused(
    cli: CLI, repo: Path, tmp_path: Path
) -> None:
    base = commit_all(repo, "no policy yet")
    mallory, mallory_pub = keypair(tmp_path, "mallory")
    in_repo_policy(repo, "mallory")
    shutil.copy(mallory_pub, repo / ".ml-integrity" / "keys" / "mallory.pub")
    commit_all(repo, "bring a policy and a signer")
    by_mallory = sign(repo / "model", mallory, tmp_path / "m.sig")
    r = cli("verify", repo / "model", "--bundle", by_mallory, "--policy-base", base)
    assert r.returncode == 2
    assert "this change introduces it" in r.stderr
    missing = cli("verify", repo / "model", "--bundle", by_mallory, "--policy-base", "no-such-rev")
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_policy_check_without_file_shows_the_applicable_policy(
    cli: CLI, repo: Path, tmp_path: Path
) -> None:
    _, alice_pub = keypair(tmp_path, "alice")
    in_repo_policy(repo, "alice")
    shutil.copy(alice_pub, repo / ".ml-integrity" / "keys" / "alice.pub")
    base = commit_all(repo, "policy")
    r = cli("policy", "check", "--policy-base", base, cwd=repo)
    assert r.returncode == 0, r.stderr
    assert f".ml-integrity/policy.yaml at trusted base {base[:12]}" in r.stdout
    r = cli("policy", "check", cwd=repo)
    assert r.returncode == 2


def test_parse_policy_reads_named_files_through_the_reader(tmp_path: Path) -> None:
    _, pub = keypair(tmp_path, "k")
    reads: list[str] = []

    def reader(rel: str) -> bytes:
        reads.append(rel)
        return pub.read_bytes()

    policy = parse_policy(
        b"version: 1\nsigners:\n  k: {key: keys/k.pub}\n",
        source=PolicySource("in-repo", ".ml-integrity/policy.yaml", "abc"),
        label="policy@abc",
        reader=reader,
    )
    assert reads == ["keys/k.pub"]
    assert policy.signers[0].rule.describe().startswith("public key")
