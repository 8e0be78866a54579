"""The filter proxy's answers ahead of git-lfs, against a scripted git-lfs.

Real git-lfs cannot be made to fail a delayable smudge, to claim success with
a rotten object, or to show what it would do when asked for a list after its
last one (git-lfs 3.x crashes); a small peer speaking the same filter
protocol (``PEER`` below, run as a process like git-lfs) does it on demand
and logs every request it gets. The git side is a recorded conversation.
What is checked: git is told ``delayed`` at once; an answer other than
``delayed`` makes the path available and its request goes to git-lfs again
as an ordinary smudge; content is served only when its sha256 is the
pointer's; git-lfs is never asked for a list once it owes none.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from collections.abc import Mapping
from pathlib import Path

from ml_integrity.core.lfs import LfsStore, Pointer
from ml_integrity.git.filter import FilterProxy, Refusal
from ml_integrity.git.pktline import FLUSH, read_pkt, write_list, write_pkt
from ml_integrity.git.smudge_store import StoreSmudger

PEER = r"""
import json, os, sys
log_path, script = sys.argv[1], json.loads(sys.argv[2])
inp, out = sys.stdin.buffer, sys.stdout.buffer
lists = script.get("lists", [])

def pkt():
    head = inp.read(4)
    if len(head) < 4:
        sys.exit(0)
    n = int(head, 16)
    return None if n == 0 else inp.read(n - 4)

def read_list():
    items = []
    while (p := pkt()) is not None:
        items.append(p.decode().rstrip("\n"))
    return items

def send(*lines, flush=True):
    for line in lines:
        data = line.encode() + b"\n"
        out.write(b"%04x" % (len(data) + 4) + data)
    if flush:
        out.write(b"0000")

def log(entry):
    with open(log_path, "a") as f:
        f.write(json.dumps(entry) + "\n")

read_list(); send("git-filter-server", "version=2"); read_list()
send("capability=clean", "capability=smudge", "capability=delay"); out.flush()
while True:
    req = dict(x.partition("=")[::2] for x in read_list())
    if req.get("command") == "list_available_blobs":
        log({"list": True})
        answer = lists.pop(0) if lists else "crash"
        if answer == "crash":
            sys.exit(2)  # as git-lfs 3.x does when asked after its last list
        send(*("pathname=" + p for p in answer)); send("status=success")
        out.flush()
        continue
    content = b""
    while (p := pkt()) is not None:
        content += p
    path = req.get("pathname", "")
    delay = req.get("can-delay") == "1"
    log({"smudge": path, "can_delay": delay, "content": content.decode()})
    what = script["answers"][path]["delay" if delay else "again"]
    for rel, data in script.get("writes", {}).get(path, {}).items():
        os.makedirs(os.path.dirname(rel), exist_ok=True)
        with open(rel, "wb") as f:
            f.write(data.encode())
    if what == "delayed":
        send("status=delayed")
    elif what == "error":
        send("status=error")
    else:
        send("status=success")
        data = what.encode()
        out.write(b"%04x" % (len(data) + 4) + data + b"0000")
        send()
    out.flush()
"""

V1 = "version https://git-lfs.github.com/spec/v1\n"


class AllowAll:
    strict = False

    def __init__(self) -> None:
        self.refused_paths: list[tuple[str, str]] = []

    def check(self, path: str, oid: str, size: int, meta: Mapping[str, str]) -> Refusal | None:
        return None

    def refused(
        self, path: str, oid: str, size: int, refusal: Refusal, meta: Mapping[str, str]
    ) -> None:
        self.refused_paths.append((path, refusal.reason))


def pointer_of(data: bytes) -> Pointer:
    return Pointer(hashlib.sha256(data).hexdigest(), len(data))


def object_rel(store: Path, p: Pointer) -> str:
    return str(store / "objects" / p.oid[:2] / p.oid[2:4] / p.oid)


def git_side(*requests: tuple[str, bytes | None]) -> bytes:
    """The handshake, then each request: (path, pointer text) for a first smudge (can be
    delayed), (path, None) for git's request again after a list, ("", None) for a list."""
    buf = io.BytesIO()
    write_list(buf, ["git-filter-client", "version=2"])
    write_list(buf, ["capability=clean", "capability=smudge", "capability=delay"])
    for path, content in requests:
        if not path:
            write_list(buf, ["command=list_available_blobs"])
            continue
        lines = ["command=smudge", f"pathname={path}"]
        write_list(buf, [*lines, "can-delay=1"] if content is not None else lines)
        if content:
            write_pkt(buf, content)
        buf.write(FLUSH)
    return buf.getvalue()


def answers(data: bytes) -> list[bytes | None]:
    """The packets to git after the handshake (its two lists)."""
    stream = io.BytesIO(data)
    out: list[bytes | None] = []
    while stream.tell() < len(data):
        out.append(read_pkt(stream))
    second = [i for i, p in enumerate(out) if p is None][1]
    return out[second + 1 :]


def serve(
    tmp_path: Path, script: dict[str, object], *requests: tuple[str, bytes | None]
) -> tuple[list[bytes | None], list[dict[str, object]], AllowAll]:
    peer = tmp_path / "peer.py"
    peer.write_text(PEER)
    log = tmp_path / "peer.log"
    store = LfsStore(tmp_path / "lfs")
    gate = AllowAll()
    out = io.BytesIO()
    proxy = FilterProxy(
        gate,
        child_argv=[sys.executable, str(peer), str(log), json.dumps(script)],
        stdin=io.BytesIO(git_side(*requests)),
        stdout=out,
        store=StoreSmudger(store, allowed=lambda: True),
    )
    assert proxy.serve() == 0
    entries = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    return answers(out.getvalue()), entries, gate


DATA = b"model weights\n"
PTR = pointer_of(DATA)


def test_an_error_for_a_request_sent_ahead_goes_to_git_lfs_again(tmp_path: Path) -> None:
    got, asked, _ = serve(
        tmp_path,
        {"answers": {"a.bin": {"delay": "error", "again": "error"}}},
        ("a.bin", PTR.text()),
        ("", None),
        ("a.bin", None),
        ("", None),
    )
    # the handshake, then: delayed at once; a.bin available; git-lfs's error; no more
    assert got == [
        b"status=delayed\n",
        None,
        b"pathname=a.bin\n",
        None,
        b"status=success\n",
        None,
        b"status=error\n",
        None,
        None,
        b"status=success\n",
        None,
    ], got
    assert [a.get("smudge") for a in asked] == ["a.bin", "a.bin"]
    assert asked[0]["can_delay"] and not asked[1]["can_delay"]
    assert asked[1]["content"] == PTR.text().decode()  # an ordinary smudge of the pointer
    assert not any(a.get("list") for a in asked)  # git-lfs delayed nothing: never asked


def test_content_for_a_request_sent_ahead_is_served_from_the_store(tmp_path: Path) -> None:
    store = tmp_path / "lfs"
    got, asked, gate = serve(
        tmp_path,
        {
            "answers": {"a.bin": {"delay": DATA.decode(), "again": "error"}},
            "writes": {"a.bin": {object_rel(store, PTR): DATA.decode()}},
        },
        ("a.bin", PTR.text()),
        ("", None),
        ("a.bin", None),
        ("", None),
    )
    assert b"pathname=a.bin\n" in got
    assert DATA in got  # served, from the store
    assert len(asked) == 1 and not gate.refused_paths


def test_a_rotten_object_behind_a_success_is_refused(tmp_path: Path) -> None:
    """git-lfs says success, but the object it left in the store is not the pointer's."""
    store = tmp_path / "lfs"
    rot = b"model wEights\n"
    got, _, gate = serve(
        tmp_path,
        {
            "answers": {"a.bin": {"delay": DATA.decode(), "again": "error"}},
            "writes": {"a.bin": {object_rel(store, PTR): rot.decode()}},
        },
        ("a.bin", PTR.text()),
        ("", None),
        ("a.bin", None),
        ("", None),
    )
    assert rot not in got and DATA not in got
    assert any(p is not None and p.startswith(PTR.text()) for p in got)  # pointer kept
    assert gate.refused_paths and "corrupt" in gate.refused_paths[0][1]


def test_git_lfs_is_not_asked_for_a_list_it_no_longer_owes(tmp_path: Path) -> None:
    """Both downloads are in the store before git asks: git-lfs is asked once (which
    starts its last batch), the files come from the store, and the last question of
    git is answered without git-lfs (the peer crashes if asked again, as git-lfs does)."""
    store = tmp_path / "lfs"
    other = b"tokenizer\n"
    optr = pointer_of(other)
    got, asked, gate = serve(
        tmp_path,
        {
            "answers": {
                "a.bin": {"delay": "delayed", "again": "error"},
                "b.bin": {"delay": "delayed", "again": "error"},
            },
            "writes": {
                "a.bin": {object_rel(store, PTR): DATA.decode()},
                "b.bin": {object_rel(store, optr): other.decode()},
            },
            "lists": [["a.bin"]],
        },
        ("a.bin", PTR.text()),
        ("b.bin", optr.text()),
        ("", None),
        ("a.bin", None),
        ("b.bin", None),
        ("", None),
    )
    assert got.count(b"status=delayed\n") == 2
    assert b"pathname=a.bin\n" in got and b"pathname=b.bin\n" in got
    assert DATA in got and other in got
    assert sum(1 for a in asked if a.get("list")) == 1
    assert [a["smudge"] for a in asked if "smudge" in a] == ["a.bin", "b.bin"]
    assert not gate.refused_paths


def test_a_failed_download_gets_git_lfs_s_own_answer(tmp_path: Path) -> None:
    """Delayed, never downloaded: git-lfs's last list names it, git asks again, and
    git-lfs's error reaches git (the pointer of a download that failed stays)."""
    got, asked, _ = serve(
        tmp_path,
        {
            "answers": {"a.bin": {"delay": "delayed", "again": "error"}},
            "lists": [["a.bin"]],
        },
        ("a.bin", PTR.text()),
        ("", None),
        ("a.bin", None),
        ("", None),
    )
    assert got[:4] == [b"status=delayed\n", None, b"pathname=a.bin\n", None]
    assert b"status=error\n" in got
    assert [a.get("smudge") or "list" for a in asked] == ["a.bin", "list", "a.bin"]
