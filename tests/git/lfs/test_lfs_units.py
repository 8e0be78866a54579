"""Pointer parsing, pkt-lines, endpoints, the store's quarantine: no git needed."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from ml_integrity.core.lfs import (
    REFUSAL_LINE,
    LfsStore,
    Pointer,
    parse_pointer,
    parse_refusal_stub,
)
from ml_integrity.errors import UsageError
from ml_integrity.git.agent import endpoint_from_url
from ml_integrity.git.pktline import (
    FLUSH,
    read_list,
    read_pkt,
    write_list,
    write_pkt,
)

OID = "4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393"
V1 = "version https://git-lfs.github.com/spec/v1\n"


def test_pointer_roundtrip() -> None:
    text = f"{V1}oid sha256:{OID}\nsize 12345\n".encode()
    p = parse_pointer(text)
    assert p == Pointer(OID, 12345)
    assert p.text() == text


def test_legacy_hawser_version_and_no_final_newline() -> None:
    text = f"version https://hawser.github.com/spec/v1\noid sha256:{OID}\nsize 1".encode()
    assert parse_pointer(text) == Pointer(OID, 1)


def test_extensions_are_parsed_in_order() -> None:
    ext = "ab" * 32
    text = f"{V1}ext-0-foo sha256:{ext}\noid sha256:{OID}\nsize 3\n".encode()
    p = parse_pointer(text)
    assert p is not None and p.extensions == ((0, "foo", ext),)
    assert p.text() == text


@pytest.mark.parametrize(
    "text",
    [
        f"{V1}size 3\noid sha256:{OID}\n",  # keys not sorted
        f"oid sha256:{OID}\n{V1}size 3\n",  # version not first
        f"version https://example.com/spec/v9\noid sha256:{OID}\nsize 3\n",
        f"{V1}oid sha256:{OID[:-1]}\nsize 3\n",  # short oid
        f"{V1}oid md5:{OID}\nsize 3\n",
        f"{V1}oid sha256:{OID.upper()}\nsize 3\n",
        f"{V1}oid sha256:{OID}\nsize -3\n",
        f"{V1}oid sha256:{OID}\nsize 03\n",
        f"{V1}oid sha256:{OID}\n",  # no size
        f"{V1}oid sha256:{OID}\noid sha256:{OID}\nsize 3\n",  # duplicate key
        f"{V1}oid  sha256:{OID}\nsize 3\n",  # double space
        f"{V1}oid sha256:{OID}\nsize 3\nzzz 1\n",  # unknown key after size
        "",
        "just some text\n",
    ],
)
def test_not_a_pointer(text: str) -> None:
    assert parse_pointer(text.encode()) is None


def test_size_limit_is_1024_bytes() -> None:
    base = f"{V1}oid sha256:{OID}\nsize 3\n".encode()
    assert parse_pointer(base + b"\n" * 0) is not None
    padded = base[:-1] + b" " * (1024 - len(base)) + b"\n"
    assert len(padded) == 1024
    assert parse_pointer(padded) is None
    assert parse_pointer(b"\xff\xfe" + base) is None


@pytest.mark.parametrize("size", [0, 1, 12345])
def test_a_refusal_stub_is_no_pointer_to_git_lfs(tmp_path: Path, size: int) -> None:
    """Asked of git-lfs itself: the stub is not a pointer (so `git lfs pull` and
    `git lfs checkout` leave it alone), the pointer it wraps is; our parsers agree."""
    import subprocess

    pointer = Pointer(OID, size)
    stub = pointer.refusal_stub()
    assert parse_refusal_stub(stub) == pointer
    assert parse_pointer(stub) is None
    assert parse_refusal_stub(pointer.text()) is None
    assert parse_refusal_stub(stub + b"x") is None
    for data, is_pointer in ((pointer.text(), True), (stub, False)):
        f = tmp_path / "f"
        f.write_bytes(data)
        got = subprocess.run(
            ["git", "lfs", "pointer", "--check", "--file", str(f)], capture_output=True
        )
        assert (got.returncode == 0) is is_pointer, (data, got)


def _clean_request(*contents: bytes) -> bytes:
    request = io.BytesIO()
    write_list(request, ["git-filter-client", "version=2"])
    write_list(request, ["capability=clean", "capability=smudge"])
    for i, data in enumerate(contents):
        write_list(request, ["command=clean", f"pathname=f{i}.bin"])
        for at in range(0, len(data), 60000):
            write_pkt(request, data[at : at + 60000])
        request.write(FLUSH)
    return request.getvalue()


def test_clean_turns_a_refusal_stub_back_into_its_pointer(tmp_path: Path) -> None:
    import hashlib
    import shutil
    import subprocess

    from ml_integrity.git.filter import FilterProxy

    subprocess.run(["git", "init", "-q", "--bare", str(tmp_path / "none.git")], check=True)
    pointer = Pointer(OID, 12345)
    big = os.urandom(300_000)  # streams through git-lfs: cleaned to a new pointer
    out = io.BytesIO()
    lfs = shutil.which("git-lfs")
    assert lfs is not None
    proxy = FilterProxy(
        _BrokenGate(False),
        child_argv=[lfs, "filter-process"],
        child_env={**os.environ, "GIT_DIR": str(tmp_path / "none.git")},
        stdin=io.BytesIO(_clean_request(pointer.refusal_stub(), big)),
        stdout=out,
    )
    assert proxy.serve() == 0
    packets = _packets(out.getvalue())
    assert pointer.text() in packets
    cleaned = Pointer(hashlib.sha256(big).hexdigest(), len(big)).text()
    assert cleaned in packets, packets


def test_a_path_that_is_not_utf8_goes_back_as_it_came() -> None:
    """git paths are bytes: a name that is not UTF-8 is read and written unchanged, and the
    filter answers for it (before, writing its name back raised and aborted the checkout)."""
    import shutil

    from ml_integrity.git.filter import FilterProxy

    buf = io.BytesIO()
    write_pkt(buf, b"pathname=caf\xe9.bin\n")
    buf.write(FLUSH)
    buf.seek(0)
    (line,) = read_list(buf)
    out = io.BytesIO()
    write_list(out, [line])
    assert out.getvalue() == buf.getvalue()
    request = io.BytesIO()
    write_list(request, ["git-filter-client", "version=2"])
    write_list(request, ["capability=clean", "capability=smudge"])
    write_pkt(request, b"command=smudge\n")
    write_pkt(request, b"pathname=caf\xe9.bin\n")
    request.write(FLUSH)
    write_pkt(request, f"{V1}oid sha256:{OID}\nsize 12345\n".encode())
    request.write(FLUSH)
    lfs = shutil.which("git-lfs")
    assert lfs is not None
    answer = io.BytesIO()
    proxy = FilterProxy(
        _BrokenGate(False),
        child_argv=[lfs, "filter-process"],
        stdin=io.BytesIO(request.getvalue()),
        stdout=answer,
    )
    assert proxy.serve() == 0
    assert b"status=success\n" in _packets(answer.getvalue())


def test_pkt_line_roundtrip_and_splitting() -> None:
    buf = io.BytesIO()
    write_list(buf, ["git-filter-client", "version=2"])
    big = bytes(range(256)) * 600  # > one packet
    write_pkt(buf, big)
    buf.write(FLUSH)
    buf.seek(0)
    assert read_list(buf) == ["git-filter-client", "version=2"]
    got = b""
    while (pkt := read_pkt(buf)) is not None:
        assert len(pkt) <= 65516
        got += pkt
    assert got == big


def test_endpoints(tmp_path: Path) -> None:
    assert (
        endpoint_from_url("https://h/org/repo", tmp_path).url == "https://h/org/repo.git/info/lfs"
    )
    assert (
        endpoint_from_url("https://h/org/repo.git/", tmp_path).url
        == "https://h/org/repo.git/info/lfs"
    )
    lfs = "http://127.0.0.1:9/x/y.git/info/lfs"
    assert endpoint_from_url(lfs, tmp_path).url == lfs
    local = endpoint_from_url("../remote.git", tmp_path / "work")
    assert local.is_local and local.local_path == (tmp_path / "remote.git").resolve()
    assert endpoint_from_url("file:///srv/r.git", tmp_path).local_path == Path("/srv/r.git")
    with pytest.raises(UsageError):
        endpoint_from_url("git@github.com:org/repo.git", tmp_path)


def test_quarantine_moves_and_releases(tmp_path: Path) -> None:
    store = LfsStore(tmp_path / "lfs")
    obj = store.object_path(OID)
    obj.parent.mkdir(parents=True)
    obj.write_bytes(b"data")
    moved = store.quarantine(OID, {"reason": "test"})
    assert moved == store.quarantine_path(OID) and moved.read_bytes() == b"data"
    assert not obj.exists() and store.quarantined() == [OID]
    assert moved.with_name(OID + ".json").is_file()
    assert store.quarantine(OID, {}) is None  # nothing left to move
    assert store.release(OID) and obj.read_bytes() == b"data"
    assert store.quarantined() == []


def test_failed_quarantine_move_keeps_the_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LfsStore(tmp_path / "lfs")
    obj = store.object_path(OID)
    obj.parent.mkdir(parents=True)
    obj.write_bytes(b"data")

    real_replace = os.replace

    def refuse(src: str | Path, dst: str | Path) -> None:
        """The object's move fails (the record's own atomic write still works)."""
        if Path(src).name == OID:
            raise OSError(18, "Invalid cross-device link")
        real_replace(src, dst)

    monkeypatch.setattr("ml_integrity.core.lfs.os.replace", refuse)
    with pytest.raises(OSError):
        store.quarantine(OID, {"reason": "test"})
    assert obj.read_bytes() == b"data"  # still in the store, never lost
    assert store.quarantined() == []
    assert not store.quarantine_path(OID).with_name(OID + ".json").exists()  # no stale record
    monkeypatch.undo()

    store.quarantine(OID, {"reason": "test"})
    monkeypatch.setattr("ml_integrity.core.lfs.os.replace", refuse)
    with pytest.raises(OSError):
        store.release(OID)
    assert store.quarantine_path(OID).read_bytes() == b"data"  # still in the quarantine
    assert store.quarantine_path(OID).with_name(OID + ".json").is_file()
    assert not obj.exists()


# --- the filter proxy keeps the pointer when ml-integrity itself fails ----------------


class _BrokenGate:
    """A gate whose check fails the way a bug would (not a verdict)."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.reported: list[str] = []

    def check(self, path: str, oid: str, size: int, meta: object) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    def refused(self, path: str, oid: str, size: int, refusal: object, meta: object) -> None:
        self.reported.append(path)


def _packets(data: bytes) -> list[bytes | None]:
    out: list[bytes | None] = []
    stream = io.BytesIO(data)
    while stream.tell() < len(data):
        out.append(read_pkt(stream))
    return out


@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
def test_an_internal_failure_keeps_the_pointer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, strict: bool
) -> None:
    """Never a half-done checkout: the file keeps its pointer (status=success with the
    pointer text), in strict mode too, and the proxy keeps serving."""
    import shutil
    import subprocess

    from ml_integrity.git.filter import FilterProxy

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    monkeypatch.chdir(tmp_path)
    pointer = f"{V1}oid sha256:{OID}\nsize 12345\n".encode()
    request = io.BytesIO()
    write_list(request, ["git-filter-client", "version=2"])
    write_list(request, ["capability=clean", "capability=smudge"])
    for name in ("a.bin", "b.bin"):
        write_list(request, ["command=smudge", f"pathname={name}"])
        write_pkt(request, pointer)
        request.write(FLUSH)
    gate = _BrokenGate(strict)
    out = io.BytesIO()
    lfs = shutil.which("git-lfs")
    assert lfs is not None
    proxy = FilterProxy(
        gate,
        child_argv=[lfs, "filter-process"],
        stdin=io.BytesIO(request.getvalue()),
        stdout=out,
    )
    assert proxy.serve() == 0
    packets = _packets(out.getvalue())
    assert packets.count(b"status=success\n") == 2, packets
    assert b"status=error\n" not in packets
    assert packets.count(pointer + REFUSAL_LINE) == 2  # both keep their pointer, as a stub
    assert gate.reported == ["a.bin", "b.bin"]  # each refusal is reported (loudly)
