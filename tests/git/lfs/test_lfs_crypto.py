"""Encrypted LFS content (git/lfs_crypto.py) against a file remote and giftless on 127.0.0.1.

With ``ml-integrity.recipient`` set, what reaches the remote is ciphertext
only; with ``ml-integrity.decryptionKey`` set, clone, checkout, pull and
``git lfs pull`` check out the verified plaintext. Without the key the files
stay pointers, loudly, and nothing is lost; a client without ml-integrity
gets no content at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from ml_integrity.crypto import keys as crypto_keys
from ml_integrity.crypto import message
from ml_integrity.git.lfs_crypto import lfs_ciphertext_size
from tests.git.lfs.lfs_support import (
    Giftless,
    base_env,
    git,
    is_pointer,
    lfs_object,
    mi,
    replace_bytes,
    sha256,
)

BIG = os.urandom(2_500_000)  # three frames
FILES = {"a.bin": b"secret weights A\n" * 40, "data/big.bin": BIG}
V2 = b"secret weights A, version 2\n" * 40


@dataclass
class EncWorld:
    kind: str
    root: Path
    remote: Path
    author: Path
    pub: Path
    alice: Path
    outsider: Path
    env: dict[str, str]
    giftless: Giftless | None

    def stored(self, oid: str) -> Path:
        if self.giftless is not None:
            return self.giftless.object_path(f"enc-{self.kind}", oid)
        return lfs_object(self.remote, oid)

    def clone_args(self, dest: Path, *extra: str, key: Path | None = None) -> list[str | Path]:
        args: list[str | Path] = ["clone", self.remote, dest, "--key", self.pub, *extra]
        if key is not None:
            args += ["--decryption-key", key]
        return args


def build(root: Path, kind: str, giftless: Giftless | None) -> EncWorld:
    from ml_integrity.trust import keys as signing_keys

    env = base_env(root / "home")
    key, pub = signing_keys.generate(root / "signer.pem", "ec-p256")
    alice, _ = crypto_keys.generate_x25519(root / "alice.x25519")
    outsider, _ = crypto_keys.generate_x25519(root / "outsider.x25519")
    remote = root / "remote.git"
    git("init", "-q", "--bare", remote, cwd=root, env=env)
    author = root / "author"
    git("init", "-q", author, cwd=root, env=env)
    git("lfs", "track", "*.bin", cwd=author, env=env)
    if giftless is not None:
        url = giftless.lfs_url(f"enc-{kind}")
        (author / ".lfsconfig").write_text(f"[lfs]\n\turl = {url}\n")
        git("config", f"lfs.{url}.locksverify", "false", cwd=author, env=env)
    mi("init", cwd=author, env=env, check=True)
    git("config", "ml-integrity.publicKey", pub, cwd=author, env=env)
    git("config", "--add", "ml-integrity.recipient", f"{alice}.pub", cwd=author, env=env)
    for name, data in FILES.items():
        (author / name).parent.mkdir(parents=True, exist_ok=True)
        (author / name).write_bytes(data)
    git("add", ".", cwd=author, env=env)
    mi("sign-repo", "--key", key, cwd=author, env=env, check=True)
    git("commit", "-q", "-m", "signed, encrypted models", cwd=author, env=env)
    git("remote", "add", "origin", remote, cwd=author, env=env)
    git("push", "-q", "origin", "main", cwd=author, env=env)
    return EncWorld(kind, root, remote, author, pub, alice, outsider, env, giftless)


@pytest.fixture(scope="module", params=["file", "http"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> EncWorld:
    kind = str(request.param)
    server = request.getfixturevalue("giftless") if kind == "http" else None
    return build(tmp_path_factory.mktemp(f"enc-{kind}"), kind, server)


def test_the_remote_holds_ciphertext_only(world: EncWorld) -> None:
    for data in FILES.values():
        stored = world.stored(sha256(data)).read_bytes()
        assert stored.startswith(message.MAGIC)
        assert len(stored) == lfs_ciphertext_size(len(data))
        assert data[:64] not in stored and b"secret weights" not in stored
    # the author's own store keeps the plaintext (oids are the plaintext's)
    oid = sha256(FILES["a.bin"])
    assert lfs_object(world.author / ".git", oid).read_bytes() == FILES["a.bin"]


def test_clone_with_the_key_checks_out_verified_plaintext(world: EncWorld, tmp_path: Path) -> None:
    dest = tmp_path / "c"
    r = mi(*world.clone_args(dest, key=world.alice), cwd=tmp_path)
    assert r.returncode == 0, r.output
    for name, data in FILES.items():
        assert (dest / name).read_bytes() == data
        assert lfs_object(dest / ".git", sha256(data)).read_bytes() == data
    assert git("status", "--porcelain", cwd=dest).stdout == ""
    r = mi("verify", "--git-repo", "--rehash", cwd=dest)
    assert r.returncode == 0, r.output


def test_clone_without_the_key_loses_nothing_and_says_how(world: EncWorld, tmp_path: Path) -> None:
    dest = tmp_path / "c"
    r = mi(*world.clone_args(dest), cwd=tmp_path)
    assert r.returncode == 1, r.output  # refused (encrypted), not "missing on the server" (3)
    assert "is encrypted and no decryption key is configured" in r.stderr, r.output
    assert "git config ml-integrity.decryptionKey" in r.stderr, r.output
    for data in FILES.values():
        assert not lfs_object(dest / ".git", sha256(data)).exists()
    for name in FILES:  # no plaintext, no ciphertext, no 0-byte file: nothing written
        assert not (dest / name).exists() or is_pointer(dest / name)
    r = mi("pull", cwd=dest)
    assert r.returncode == 1, r.output  # the transfer agent refused it: not exit 3
    assert "is encrypted and no decryption key is configured" in r.output
    assert "git config ml-integrity.decryptionKey" in r.output
    # nothing lost: with the key, a checkout brings the verified plaintext
    git("config", "ml-integrity.decryptionKey", world.alice, cwd=dest)
    git("reset", "-q", "--hard", cwd=dest)
    r = mi("pull", cwd=dest)
    assert r.returncode == 0, r.output
    for name, data in FILES.items():
        assert (dest / name).read_bytes() == data
    assert git("status", "--porcelain", cwd=dest).stdout == ""


def test_a_key_that_is_not_a_recipient_is_refused(world: EncWorld, tmp_path: Path) -> None:
    dest = tmp_path / "c"
    r = mi(*world.clone_args(dest, key=world.outsider), cwd=tmp_path)
    assert r.returncode == 1
    assert "not a recipient" in r.output and "ask the repository's publisher" in r.output
    for name, data in FILES.items():
        assert not (dest / name).exists() or is_pointer(dest / name)
        assert not lfs_object(dest / ".git", sha256(data)).exists()


def test_skip_smudge_clone_then_git_lfs_pull(world: EncWorld, tmp_path: Path) -> None:
    dest = tmp_path / "c"
    r = mi(*world.clone_args(dest, key=world.alice), cwd=tmp_path, env={"GIT_LFS_SKIP_SMUDGE": "1"})
    assert r.returncode in (0, 1), r.output
    assert is_pointer(dest / "data" / "big.bin")
    r = git("lfs", "pull", cwd=dest, check=False)
    assert r.returncode == 0, r.output
    assert (dest / "data" / "big.bin").read_bytes() == BIG


def test_a_client_without_ml_integrity_gets_no_content(world: EncWorld, tmp_path: Path) -> None:
    dest = tmp_path / "plain"
    env = {**os.environ, "GIT_LFS_SKIP_DOWNLOAD_ERRORS": "1"}
    r = git("clone", "-q", world.remote, dest, cwd=tmp_path, env=env, check=False)
    assert "ml-integrity" not in (dest / ".git" / "config").read_text()
    for name, data in FILES.items():
        assert is_pointer(dest / name), r.output
        assert not lfs_object(dest / ".git", sha256(data)).exists()


def test_tampered_ciphertext_on_the_remote_is_refused(world: EncWorld, tmp_path: Path) -> None:
    oid = sha256(FILES["a.bin"])
    stored = world.stored(oid)
    original = stored.read_bytes()
    bad = bytearray(original)
    bad[-30] ^= 1
    replace_bytes(stored, bytes(bad))
    try:
        dest = tmp_path / "c"
        r = mi(*world.clone_args(dest, key=world.alice), cwd=tmp_path)
        assert r.returncode == 1
        assert "final frame failed authentication" in r.output
        assert not (dest / "a.bin").exists() or is_pointer(dest / "a.bin")
        assert not lfs_object(dest / ".git", oid).exists()
    finally:
        replace_bytes(stored, original)


def test_pull_of_a_new_version_decrypts_it(world: EncWorld, tmp_path: Path) -> None:
    dest = tmp_path / "c"
    r = mi(*world.clone_args(dest, key=world.alice), cwd=tmp_path)
    assert r.returncode == 0, r.output
    author = tmp_path / "author2"
    mi(*world.clone_args(author, key=world.alice), cwd=tmp_path, check=True)
    git("config", "--add", "ml-integrity.recipient", f"{world.alice}.pub", cwd=author)
    (author / "a.bin").write_bytes(V2)
    git("add", "a.bin", cwd=author)
    mi("sign-repo", "--key", world.root / "signer.pem", cwd=author, check=True)
    git("commit", "-q", "-m", "v2", cwd=author)
    r = git("push", "-q", "origin", "HEAD:v2", cwd=author, check=False)
    assert r.returncode == 0, r.output
    assert world.stored(sha256(V2)).read_bytes().startswith(message.MAGIC)
    r = git("fetch", "-q", "origin", cwd=dest, check=False)
    r = git("checkout", "-q", "-b", "v2", "origin/v2", cwd=dest, check=False)
    assert r.returncode == 0, r.output
    assert (dest / "a.bin").read_bytes() == V2


def test_a_private_key_as_recipient_stops_the_push(world: EncWorld, tmp_path: Path) -> None:
    author = tmp_path / "a"
    mi(*world.clone_args(author, key=world.alice), cwd=tmp_path, check=True)
    git("config", "ml-integrity.recipient", world.alice, cwd=author)  # the private key
    data = b"never in plaintext on the remote\n"
    (author / "new.bin").write_bytes(data)
    git("add", "new.bin", cwd=author)
    mi("sign-repo", "--key", world.root / "signer.pem", cwd=author, check=True)
    git("commit", "-q", "-m", "new", cwd=author)
    r = git("push", "origin", "HEAD:bad", cwd=author, check=False)
    assert r.returncode != 0
    assert "recipient key is a private key" in r.output
    assert not world.stored(sha256(data)).exists()
