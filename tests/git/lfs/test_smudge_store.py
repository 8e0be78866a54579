"""Reading objects from the local store for the filter proxy (smudge_store.py)."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
from pathlib import Path

import pytest

from ml_integrity.core.lfs import LfsStore, Pointer
from ml_integrity.git.pktline import MAX_PKT_DATA, read_list, read_pkt
from ml_integrity.git.runner import Git
from ml_integrity.git.smudge_store import (
    MISSING,
    StoreObject,
    StoreSmudger,
    store_smudge_allowed,
)


def put(store: LfsStore, data: bytes, *, as_oid: str | None = None) -> Pointer:
    oid = as_oid or hashlib.sha256(data).hexdigest()
    path = store.object_path(oid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return Pointer(oid, len(data))


def smudger(tmp_path: Path, **kw: object) -> tuple[LfsStore, StoreSmudger]:
    store = LfsStore(tmp_path / "lfs")
    return store, StoreSmudger(store, allowed=lambda: True, tmp_dir=tmp_path, **kw)  # type: ignore[arg-type]


def response(obj_bytes: bytes) -> tuple[list[str], bytes, list[str], int]:
    """(status, content, trailer, number of content packets) of a smudge response."""
    stream = io.BytesIO(obj_bytes)
    status = read_list(stream)
    content = b""
    packets = 0
    while (pkt := read_pkt(stream)) is not None:
        assert 0 < len(pkt) <= MAX_PKT_DATA
        content += pkt
        packets += 1
    trailer = read_list(stream)
    assert stream.read() == b""
    return status, content, trailer, packets


@pytest.mark.parametrize("in_memory", [1 << 20, 1000], ids=["in-memory", "spilled"])
def test_a_stored_object_is_hashed_and_served_whole(tmp_path: Path, in_memory: int) -> None:
    store, sm = smudger(tmp_path, in_memory=in_memory)
    data = os.urandom(3 * MAX_PKT_DATA + 17)
    ptr = put(store, data)
    got = sm.load(ptr)
    assert isinstance(got, StoreObject)
    with got:
        assert got.matches(ptr)
        out = io.BytesIO()
        got.write_response(out)
    status, content, trailer, packets = response(out.getvalue())
    assert status == ["status=success"] and trailer == []
    assert content == data and packets == 4


def test_a_rotten_object_does_not_match(tmp_path: Path) -> None:
    store, sm = smudger(tmp_path)
    ptr = put(store, b"X" * 12, as_oid=hashlib.sha256(b"weights v1\n").hexdigest())
    got = sm.load(ptr)
    assert isinstance(got, StoreObject) and not got.matches(ptr)
    assert got.digest == hashlib.sha256(b"X" * 12).hexdigest()


def test_what_the_store_cannot_serve_goes_to_git_lfs(tmp_path: Path) -> None:
    store, sm = smudger(tmp_path)
    absent = Pointer(hashlib.sha256(b"absent").hexdigest(), 6)
    assert sm.load(absent) is MISSING and not sm.present(absent)
    data = b"weights\n"
    oid = hashlib.sha256(data).hexdigest()
    put(store, data)
    assert sm.load(Pointer(oid, len(data) + 1)) is None  # another size: git-lfs fetches again
    assert sm.load(Pointer(oid, len(data), ((0, "foo", oid),))) is None  # an extension
    assert sm.load(Pointer(hashlib.sha256(b"").hexdigest(), 0)) is None  # empty
    assert sm.present(Pointer(oid, len(data)))


@pytest.mark.parametrize("allowed", ["false", "raises"])
def test_nothing_is_read_when_git_lfs_would_not_smudge(tmp_path: Path, allowed: str) -> None:
    store = LfsStore(tmp_path / "lfs")
    ptr = put(store, b"weights\n")

    def check() -> bool:
        if allowed == "raises":
            raise OSError("cannot tell")
        return False

    sm = StoreSmudger(store, allowed=check)
    assert sm.load(ptr) is None
    assert not sm.usable(ptr)


@pytest.fixture
def repo(tmp_path: Path) -> Git:
    subprocess.run(["git", "init", "-q", str(tmp_path / "r")], check=True)
    return Git(tmp_path / "r")


def test_allowed_by_default(repo: Git) -> None:
    assert store_smudge_allowed(repo, {})


@pytest.mark.parametrize("value", ["1", "true", "yes", "TRUE", "on", "anything"])
def test_not_under_skip_smudge(repo: Git, value: str) -> None:
    assert not store_smudge_allowed(repo, {"GIT_LFS_SKIP_SMUDGE": value})


@pytest.mark.parametrize("value", ["", "0", "false", "no", "off"])
def test_skip_smudge_off(repo: Git, value: str) -> None:
    assert store_smudge_allowed(repo, {"GIT_LFS_SKIP_SMUDGE": value})


@pytest.mark.parametrize("key", ["lfs.fetchinclude", "lfs.fetchexclude", "lfs.FetchExclude"])
def test_not_with_fetch_filters_in_git_config(repo: Git, key: str) -> None:
    repo.config_set(key, "models/*")
    assert not store_smudge_allowed(repo, {})


def test_not_with_fetch_filters_in_lfsconfig(repo: Git) -> None:
    (repo.root / ".lfsconfig").write_text("[lfs]\n\tfetchexclude = big/*\n")
    assert not store_smudge_allowed(repo, {})


@pytest.mark.parametrize("reader", ["own", "given"])
def test_not_with_fetch_filters_in_a_committed_lfsconfig(repo: Git, reader: str) -> None:
    """In a clone, the committed .lfsconfig is not in the work tree yet."""
    (repo.root / ".lfsconfig").write_text("[lfs]\n\tfetchinclude = small/*\n")
    repo.run(["add", ".lfsconfig"])
    repo.run(["-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "-m", "cfg"])
    (repo.root / ".lfsconfig").unlink()
    repo.run(["rm", "-q", "--cached", ".lfsconfig"])
    if reader == "own":
        assert not store_smudge_allowed(repo, {})
        return
    with repo.cat_file() as cat:
        assert not store_smudge_allowed(repo, {}, read_blob=cat.read)


def test_an_lfsconfig_without_fetch_filters(repo: Git) -> None:
    (repo.root / ".lfsconfig").write_text("[lfs]\n\turl = https://example.com/lfs\n")
    assert store_smudge_allowed(repo, {})
