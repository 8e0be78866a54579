"""Helpers for the LFS integration tests: real git + git-lfs worlds.

A session fixture builds, once, a signing key and a bare "remote" holding:

- ``main``: a.bin, b.bin, data/c.bin, signed (``.ml-integrity/manifest.sig``);
- ``tampered``: main + a.bin replaced by other content, committed and pushed
  without re-signing (the manifest.json is updated by the pre-commit hook, the
  signature is not);
- ``unsigned``: a branch whose ``.ml-integrity/`` has no signature at all.

Tests clone from it (cheap) and tamper only with copies (git-lfs hard-links
objects between a local remote and its clones: break the link before
changing bytes, see ``replace_bytes``).

The HTTP world puts the same content behind giftless (a real Git LFS server)
on 127.0.0.1, started from its own virtualenv (``tests/tools/install.sh``).
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.support.proc import Proc as Proc
from tests.support.proc import run as run

REPO_ROOT = Path(__file__).resolve().parents[3]

GIFTLESS_VENV = REPO_ROOT / ".cache" / "giftless-venv"
CONTENT = {"a.bin": b"model weights A\n", "b.bin": b"tokenizer B\n", "data/c.bin": b"dataset C\n"}
EVIL = b"evil weights\n"


def mi(
    *args: str | Path, cwd: Path, env: Mapping[str, str] | None = None, check: bool = False
) -> Proc:
    """Run ``python -m ml_integrity`` (the interpreter of this test run)."""
    return run([sys.executable, "-m", "ml_integrity", *args], cwd, env, check=check)


def git(
    *args: str | Path, cwd: Path, env: Mapping[str, str] | None = None, check: bool = True
) -> Proc:
    return run(["git", *args], cwd, env, check=check)


def is_pointer(path: Path) -> bool:
    data = path.read_bytes()
    return data.startswith(b"version https://git-lfs.github.com/spec/v1\n") and len(data) < 1024


def replace_bytes(path: Path, data: bytes) -> None:
    """Change a file's bytes without touching other hard links to it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def lfs_object(git_dir: Path, oid: str) -> Path:
    return git_dir / "lfs" / "objects" / oid[:2] / oid[2:4] / oid


def sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def base_env(home: Path) -> dict[str, str]:
    """An isolated environment for git (used by session fixtures)."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "ML_INTEGRITY_", "XDG_"))
    }
    home.mkdir(parents=True, exist_ok=True)
    gitconfig = home / ".gitconfig"
    gitconfig.write_text(
        "[init]\n\tdefaultBranch = main\n"
        "[user]\n\tname = Test User\n\temail = test@example.com\n"
        '[protocol "file"]\n\tallow = always\n'
    )
    env.update(
        HOME=str(home),
        GIT_CONFIG_GLOBAL=str(gitconfig),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_TERMINAL_PROMPT="0",
        GIT_AUTHOR_NAME="Test User",
        GIT_AUTHOR_EMAIL="test@example.com",
        GIT_COMMITTER_NAME="Test User",
        GIT_COMMITTER_EMAIL="test@example.com",
    )
    run(["git", "lfs", "install", "--skip-repo"], home, env)
    return env


@dataclass
class World:
    root: Path
    remote: Path
    key: Path
    pub: Path
    author: Path
    env: dict[str, str]

    def oid(self, name: str) -> str:
        return sha256(CONTENT[name])


def build_world(
    root: Path, env: dict[str, str], remote_url: str | None = None, lfs_url: str | None = None
) -> World:
    from ml_integrity.trust import keys as _keys

    key = root / "signer.pem"
    _keys.generate(key, "ec-p256")
    pub = root / "signer.pem.pub"
    remote = root / "remote.git"
    git("init", "-q", "--bare", remote, cwd=root, env=env)
    author = root / "author"
    git("init", "-q", author, cwd=root, env=env)
    git("lfs", "track", "*.bin", cwd=author, env=env)
    if lfs_url:
        (author / ".lfsconfig").write_text(f"[lfs]\n\turl = {lfs_url}\n")
        git("config", f"lfs.{lfs_url}.locksverify", "false", cwd=author, env=env)
    mi("init", cwd=author, env=env, check=True)
    git("config", "ml-integrity.publicKey", pub, cwd=author, env=env)
    for name, data in CONTENT.items():
        (author / name).parent.mkdir(parents=True, exist_ok=True)
        (author / name).write_bytes(data)
    git("add", ".", cwd=author, env=env)
    mi("sign-repo", "--key", key, cwd=author, env=env, check=True)
    git("commit", "-q", "-m", "signed models", cwd=author, env=env)
    git("remote", "add", "origin", remote_url or remote, cwd=author, env=env)
    git("push", "-q", "origin", "main", cwd=author, env=env)
    # tampered: a.bin changes, the signature does not
    git("checkout", "-q", "-b", "tampered", cwd=author, env=env)
    (author / "a.bin").write_bytes(EVIL)
    git("commit", "-q", "-am", "swap a.bin", cwd=author, env=env)
    # an attacker's push: no ml-integrity pre-push hook, git-lfs uploads the objects
    git("lfs", "push", "origin", "tampered", cwd=author, env=env)
    git("push", "-q", "--no-verify", "origin", "tampered", cwd=author, env=env)
    # unsigned: no signature at all
    git("checkout", "-q", "-b", "unsigned", "main", cwd=author, env=env)
    git("rm", "-q", ".ml-integrity/manifest.sig", cwd=author, env=env)
    git("commit", "-q", "-m", "drop the signature", cwd=author, env=env)
    # an attacker's push: no ml-integrity pre-push hook, git-lfs uploads the objects
    git("lfs", "push", "origin", "unsigned", cwd=author, env=env)
    git("push", "-q", "--no-verify", "origin", "unsigned", cwd=author, env=env)
    git("checkout", "-q", "main", cwd=author, env=env)
    return World(root, remote, key, pub, author, env)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Giftless:
    url: str
    storage: Path

    def lfs_url(self, repo: str) -> str:
        return f"{self.url}/test/{repo}.git/info/lfs"

    def object_path(self, repo: str, oid: str) -> Path:
        return self.storage / "test" / repo / oid
