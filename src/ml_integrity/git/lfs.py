"""Git LFS adapter: the filter proxy, the transfer agent, running git-lfs.

(Pointers and the object store are :mod:`ml_integrity.core.lfs`.)

- :class:`FilterProxy` is a long-running git filter (pkt-line protocol v2) in
  front of ``git-lfs filter-process``. Clean requests stream through
  untouched. Smudge requests are shown to a :class:`SmudgeGate` first
  (pointer against the signed manifest), then the produced content is hashed
  against the pointer oid. The ``delay`` capability is passed through (git-lfs
  downloads in parallel only when it may delay); a delayed re-request comes
  with empty content, so the pointer of every delayed path is remembered.
- :class:`TransferAgent` is a git-lfs standalone custom transfer agent that
  refuses downloads a gate does not allow. File remotes are delegated to
  ``git-lfs standalone-file``; HTTP remotes are served through the LFS batch
  API (``requests``, credentials from ``git credential fill``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from ml_integrity.core.lfs import MAX_POINTER_SIZE, LfsStore, Pointer, parse_pointer
from ml_integrity.errors import ToolError, UsageError

__all__ = [
    "MAX_POINTER_SIZE",
    "FilterProxy",
    "LfsStore",
    "Pointer",
    "SmudgeGate",
    "TransferAgent",
    "parse_pointer",
    "require_git_lfs",
]

INSTALL_HINT = (
    "install Git LFS (Debian/Ubuntu: apt-get install git-lfs; macOS: brew install git-lfs; "
    "https://git-lfs.com) and run `git lfs install`"
)


def require_git_lfs() -> str:
    """Path of the ``git-lfs`` executable, or a ToolError (exit 3) with an install hint."""
    exe = shutil.which("git-lfs")
    if exe is None:
        raise ToolError("git-lfs is not installed or not on PATH", hint=INSTALL_HINT)
    return exe


# --- pkt-line ----------------------------------------------------------------

MAX_PKT_DATA = 65516
FLUSH = b"0000"


class PktError(Exception):
    """The other side broke the pkt-line protocol (or went away)."""


def read_pkt(stream: IO[bytes]) -> bytes | None:
    """One pkt-line payload; ``None`` for a flush packet; PktError at EOF."""
    head = stream.read(4)
    if len(head) < 4:
        raise PktError("end of stream")
    try:
        n = int(head, 16)
    except ValueError as exc:
        raise PktError(f"bad pkt-line header {head!r}") from exc
    if n == 0:
        return None
    if n < 4:
        raise PktError(f"bad pkt-line length {n}")
    data = stream.read(n - 4)
    if len(data) < n - 4:
        raise PktError("truncated pkt-line")
    return data


def write_pkt(stream: IO[bytes], data: bytes) -> None:
    for i in range(0, max(len(data), 1), MAX_PKT_DATA):
        chunk = data[i : i + MAX_PKT_DATA]
        if chunk:
            stream.write(b"%04x" % (len(chunk) + 4) + chunk)


def write_text(stream: IO[bytes], line: str) -> None:
    write_pkt(stream, line.encode() + b"\n")


def write_list(stream: IO[bytes], lines: list[str]) -> None:
    """Text packets and a flush, in one write."""
    out = bytearray()
    for line in lines:
        data = line.encode() + b"\n"
        out += b"%04x" % (len(data) + 4)
        out += data
    out += FLUSH
    stream.write(out)


def read_list(stream: IO[bytes]) -> list[str]:
    """Text packets up to the next flush."""
    out = []
    while (pkt := read_pkt(stream)) is not None:
        out.append(pkt.decode("utf-8", "surrogateescape").rstrip("\n"))
    return out


def _meta(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        k, _, v = line.partition("=")
        out[k] = v
    return out


# --- the filter proxy --------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """Why a smudge was refused, and whether the object must be quarantined."""

    reason: str
    quarantine: bool = True


class SmudgeGate(Protocol):
    """The decisions of the filter proxy (implemented in ``repository.py``)."""

    strict: bool

    def check(self, path: str, oid: str, size: int, meta: Mapping[str, str]) -> Refusal | None:
        """``None`` to let git-lfs smudge ``path``; a Refusal otherwise."""
        ...

    def refused(
        self, path: str, oid: str, size: int, refusal: Refusal, meta: Mapping[str, str]
    ) -> None:
        """Called once per refused file: quarantine the object, say so loudly."""
        ...


@dataclass
class _Pending:
    pointer: Pointer
    meta: dict[str, str] = field(default_factory=dict)


_SPOOL_LIMIT = 32 << 20


class _Buffer:
    """Packets kept in memory up to a limit, then spilled to a temporary file."""

    def __init__(self, tmp_dir: Path | None, limit: int = _SPOOL_LIMIT) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.limit = limit
        self.tmp_dir = tmp_dir
        self.file: IO[bytes] | None = None

    def add(self, pkt: bytes) -> None:
        self.size += len(pkt)
        if self.file is not None:
            self.file.write(pkt)
            return
        self.chunks.append(pkt)
        if self.size > self.limit:
            tmp = None if self.tmp_dir is None else str(self.tmp_dir)
            self.file = tempfile.TemporaryFile(dir=tmp)  # noqa: SIM115 - closed in close()
            for chunk in self.chunks:
                self.file.write(chunk)
            self.chunks = []

    def packets(self) -> Iterator[bytes]:
        if self.file is None:
            yield from self.chunks
            return
        self.file.seek(0)
        while chunk := self.file.read(MAX_PKT_DATA):
            yield chunk

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


class FilterProxy:
    """``filter.lfs.process``: a pkt-line v2 filter in front of ``git-lfs filter-process``."""

    def __init__(
        self,
        gate: SmudgeGate,
        *,
        child_argv: list[str] | None = None,
        child_env: Mapping[str, str] | None = None,
        tmp_dir: Path | None = None,
        stdin: IO[bytes] | None = None,
        stdout: IO[bytes] | None = None,
    ) -> None:
        self.gate = gate
        self.child_argv = child_argv or [require_git_lfs(), "filter-process"]
        self.child_env = dict(child_env) if child_env is not None else None
        self.tmp_dir = tmp_dir
        self.gin = stdin or sys.stdin.buffer
        self.gout = stdout or sys.stdout.buffer
        self.delayed: dict[str, _Pending] = {}
        self.refusals = 0
        self._child: subprocess.Popen[bytes] | None = None

    # -- main loop --

    def serve(self) -> int:
        """Serve git until it closes our stdin. Returns 0, or 3 on a protocol failure."""
        try:
            caps = self._handshake_git()
            child_caps = self._start_child(caps)
            write_list(self.gout, [f"capability={c}" for c in caps if c in child_caps])
            self.gout.flush()
            while True:
                try:
                    lines = read_list(self.gin)
                except PktError:
                    break  # git is done with us
                meta = _meta(lines)
                cmd = meta.get("command")
                if cmd == "smudge":
                    self._smudge(lines, meta)
                elif cmd in ("clean",):
                    self._passthrough(lines, with_content=True)
                elif cmd == "list_available_blobs":
                    self._list_available(lines)
                else:
                    self._passthrough(lines, with_content=False)
                self.gout.flush()
        finally:
            self._stop_child()
        return 0

    # -- handshake --

    def _handshake_git(self) -> list[str]:
        hello = read_list(self.gin)
        if not hello or hello[0] != "git-filter-client" or "version=2" not in hello[1:]:
            raise ToolError(f"unexpected filter handshake from git: {hello!r}")
        write_list(self.gout, ["git-filter-server", "version=2"])
        self.gout.flush()
        return [c.partition("=")[2] for c in read_list(self.gin) if c.startswith("capability=")]

    def _start_child(self, caps: list[str]) -> set[str]:
        try:
            self._child = subprocess.Popen(
                self.child_argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=self.child_env,
            )
        except OSError as exc:
            raise ToolError(f"cannot start {self.child_argv[0]}: {exc}", hint=INSTALL_HINT) from exc
        cin, cout = self._pipes()
        write_list(cin, ["git-filter-client", "version=2"])
        cin.flush()
        hello = read_list(cout)
        if hello[:1] != ["git-filter-server"] or "version=2" not in hello:
            raise ToolError(f"unexpected handshake from git-lfs filter-process: {hello!r}")
        write_list(cin, [f"capability={c}" for c in caps])
        cin.flush()
        return {c.partition("=")[2] for c in read_list(cout) if c.startswith("capability=")}

    def _pipes(self) -> tuple[IO[bytes], IO[bytes]]:
        assert self._child is not None and self._child.stdin and self._child.stdout
        return self._child.stdin, self._child.stdout

    def _stop_child(self) -> None:
        if self._child is None:
            return
        with contextlib.suppress(OSError):
            assert self._child.stdin is not None
            self._child.stdin.close()
        try:
            self._child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()

    # -- requests --

    def _send_request(self, lines: list[str], content: bytes | None) -> None:
        cin, _ = self._pipes()
        write_list(cin, lines)
        if content is not None:
            write_pkt(cin, content)
            cin.write(FLUSH)
        cin.flush()

    def _passthrough(self, lines: list[str], *, with_content: bool) -> None:
        """Forward a request and its response untouched, streaming packet by packet."""
        cin, cout = self._pipes()
        write_list(cin, lines)
        if with_content:
            while (pkt := read_pkt(self.gin)) is not None:
                write_pkt(cin, pkt)
            cin.write(FLUSH)
        cin.flush()
        self._copy_response(cout)

    def _copy_response(self, cout: IO[bytes]) -> None:
        status = read_list(cout)
        write_list(self.gout, status)
        if _meta(status).get("status") != "success":
            return
        if not _is_content_response(status):
            return
        while (pkt := read_pkt(cout)) is not None:
            write_pkt(self.gout, pkt)
        self.gout.write(FLUSH)
        write_list(self.gout, read_list(cout))

    def _list_available(self, lines: list[str]) -> None:
        cin, cout = self._pipes()
        write_list(cin, lines)
        cin.flush()
        write_list(self.gout, read_list(cout))  # pathname=... list
        write_list(self.gout, read_list(cout))  # status

    def _smudge(self, lines: list[str], meta: dict[str, str]) -> None:
        path = meta.get("pathname", "")
        content, spool = self._read_small(self.gin)
        if spool is not None:  # large: cannot be a pointer
            self._smudge_raw(lines, meta, path, spool)
            return
        pending = self.delayed.pop(path, None) if content == b"" else None
        if pending is not None:  # git re-requests a delayed blob with no content
            self._forward_and_check(lines, b"", path, pending.pointer, meta)
            return
        pointer = parse_pointer(content)
        if pointer is None:
            spool = self._spool()
            spool.write(content)
            self._smudge_raw(lines, meta, path, spool)
            return
        refusal = self.gate.check(path, pointer.oid, pointer.size, meta)
        if refusal is not None:
            self._refuse(path, pointer, refusal, meta)
            return
        self._forward_and_check(lines, content, path, pointer, meta)

    def _spool(self) -> IO[bytes]:
        """A buffer that stays in memory for small content and spills to the LFS tmp dir."""
        tmp = None if self.tmp_dir is None else str(self.tmp_dir)
        return tempfile.SpooledTemporaryFile(_SPOOL_LIMIT, dir=tmp)

    def _read_small(self, stream: IO[bytes]) -> tuple[bytes, IO[bytes] | None]:
        """The request content; spooled (second item) when not pointer-sized."""
        buf = bytearray()
        spool: IO[bytes] | None = None
        while (pkt := read_pkt(stream)) is not None:
            if spool is None:
                buf += pkt
                if len(buf) >= MAX_POINTER_SIZE:
                    spool = self._spool()
                    spool.write(buf)
            else:
                spool.write(pkt)
        return bytes(buf), spool

    def _forward_and_check(
        self, lines: list[str], content: bytes, path: str, pointer: Pointer, meta: dict[str, str]
    ) -> None:
        self._send_request(lines, content)
        _, cout = self._pipes()
        status = read_list(cout)
        state = _meta(status).get("status")
        if state == "delayed":
            self.delayed[path] = _Pending(pointer, dict(meta))
            write_list(self.gout, status)
            return
        if state != "success":
            write_list(self.gout, status)
            return
        h = hashlib.sha256()
        buf = _Buffer(self.tmp_dir)
        try:
            while (pkt := read_pkt(cout)) is not None:
                h.update(pkt)
                buf.add(pkt)
            trailer = read_list(cout)
            if _meta(trailer).get("status", "success") != "success":
                write_list(self.gout, status)
                write_list(self.gout, [])
                write_list(self.gout, trailer)
                return
            if h.hexdigest() != pointer.oid or buf.size != pointer.size:
                refusal = Refusal(
                    f"the local LFS object is corrupt (its sha256 is {h.hexdigest()[:12]}..., "
                    f"the pointer says {pointer.oid[:12]}...)",
                    quarantine=True,
                )
                self._refuse(path, pointer, refusal, meta)
                return
            write_list(self.gout, status)
            for chunk in buf.packets():
                self.gout.write(b"%04x" % (len(chunk) + 4))
                self.gout.write(chunk)
            self.gout.write(FLUSH)
            write_list(self.gout, trailer)
        finally:
            buf.close()

    def _smudge_raw(
        self, lines: list[str], meta: dict[str, str], path: str, spool: IO[bytes]
    ) -> None:
        """Content that is not a pointer (a file committed without LFS): check its digest."""
        with spool:
            spool.seek(0)
            h = hashlib.sha256()
            size = 0
            while chunk := spool.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
            refusal = self.gate.check(path, h.hexdigest(), size, meta)
            if refusal is not None:
                # There is no pointer to leave in its place: refuse the file outright.
                self.gate.refused(path, h.hexdigest(), size, Refusal(refusal.reason, False), meta)
                self.refusals += 1
                write_list(self.gout, ["status=error"])
                return
            cin, cout = self._pipes()
            write_list(cin, lines)
            spool.seek(0)
            while chunk := spool.read(MAX_PKT_DATA):
                write_pkt(cin, chunk)
            cin.write(FLUSH)
            cin.flush()
            self._copy_response(cout)

    def _refuse(
        self, path: str, pointer: Pointer, refusal: Refusal, meta: Mapping[str, str]
    ) -> None:
        self.refusals += 1
        self.gate.refused(path, pointer.oid, pointer.size, refusal, meta)
        if self.gate.strict:
            write_list(self.gout, ["status=error"])
            return
        # Lenient: the work tree keeps the pointer text (git status stays clean).
        write_list(self.gout, ["status=success"])
        write_pkt(self.gout, pointer_text(pointer))
        self.gout.write(FLUSH)
        write_list(self.gout, [])


def pointer_text(pointer: Pointer) -> bytes:
    return pointer.text()


def _is_content_response(status: list[str]) -> bool:
    return _meta(status).get("status") == "success"


# --- the standalone transfer agent ------------------------------------------


class TransferGate(Protocol):
    def allow_download(self, oid: str, size: int) -> str | None:
        """``None`` to allow; otherwise the reason of the refusal."""
        ...


@dataclass(frozen=True)
class Endpoint:
    """Where a remote's LFS objects live: a local directory or an HTTP(S) URL."""

    url: str
    local_path: Path | None = None

    @property
    def is_local(self) -> bool:
        return self.local_path is not None


def endpoint_from_url(url: str, base: Path) -> Endpoint:
    """The LFS endpoint of a git remote URL (or an explicit ``lfs.url``)."""
    if url.startswith("file://"):
        return Endpoint(url, Path(url[len("file://") :]))
    if re.match(r"^https?://", url):
        u = url.rstrip("/")
        if u.endswith("/info/lfs"):
            return Endpoint(u)
        if not u.endswith(".git"):
            u += ".git"
        return Endpoint(u + "/info/lfs")
    if re.match(r"^[\w+.-]+://", url) or re.match(r"^[^/]+@[^/:]+:", url):
        raise UsageError(
            f"LFS remote {url!r} is not supported by the ml-integrity transfer agent",
            hint="use an https:// or file remote, or set lfs.url to the server's https:// URL",
        )
    p = Path(url)
    return Endpoint(url, p if p.is_absolute() else (base / p).resolve())


class TransferAgent:
    """git-lfs standalone custom transfer agent (JSON lines on stdin/stdout).

    Every download is first shown to the gate; a refused oid is answered with
    an error and never fetched, so it never enters the local store.
    """

    def __init__(
        self,
        gate: TransferGate,
        resolve_endpoint: Callable[[str], Endpoint],
        *,
        store: LfsStore,
        credentials: Callable[[str], dict[str, str]] | None = None,
        stdin: IO[str] | None = None,
        stdout: IO[str] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.gate = gate
        self.resolve_endpoint = resolve_endpoint
        self.store = store
        self.credentials = credentials
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.log = log or (lambda _m: None)
        self.operation = "download"
        self.endpoint: Endpoint | None = None
        self._child: subprocess.Popen[str] | None = None
        self._http: _HttpTransfer | None = None
        self.refused: list[str] = []

    def _send(self, msg: Mapping[str, object]) -> None:
        self.stdout.write(json.dumps(msg) + "\n")
        self.stdout.flush()

    def serve(self) -> int:
        for line in self.stdin:
            if not line.strip():
                continue
            msg = json.loads(line)
            event = msg.get("event")
            if event == "init":
                try:
                    self._init(msg)
                except (UsageError, ToolError) as exc:
                    self._send({"error": {"code": 32, "message": exc.message}})
                    return 0
                self._send({})
            elif event == "terminate":
                break
            elif event in ("download", "upload"):
                self._transfer(msg)
        self._stop()
        return 0

    def _init(self, msg: Mapping[str, Any]) -> None:
        self.operation = str(msg.get("operation", "download"))
        self.endpoint = self.resolve_endpoint(str(msg.get("remote", "origin")))
        if self.endpoint.is_local:
            self._child = subprocess.Popen(
                [require_git_lfs(), "standalone-file"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                bufsize=1,
            )
            init = dict(msg)
            self._child_send(init)
            reply = self._child_recv()
            if reply.get("error"):
                raise ToolError(f"git-lfs standalone-file: {reply['error']}")
        else:
            self._http = _HttpTransfer(self.endpoint.url, self.store, self.credentials)

    def _child_send(self, msg: Mapping[str, object]) -> None:
        assert self._child is not None and self._child.stdin is not None
        self._child.stdin.write(json.dumps(msg) + "\n")
        self._child.stdin.flush()

    def _child_recv(self) -> dict[str, Any]:
        assert self._child is not None and self._child.stdout is not None
        line = self._child.stdout.readline()
        if not line:
            raise ToolError("git-lfs standalone-file stopped unexpectedly")
        out: dict[str, Any] = json.loads(line)
        return out

    def _transfer(self, msg: Mapping[str, Any]) -> None:
        oid = str(msg.get("oid", ""))
        size = int(msg.get("size", 0))
        if msg.get("event") == "download":
            reason = self.gate.allow_download(oid, size)
            if reason is not None:
                self.refused.append(oid)
                self.log(f"refused to download LFS object {oid}: {reason}")
                self._send(
                    {
                        "event": "complete",
                        "oid": oid,
                        "error": {"code": 2, "message": f"ml-integrity refused {oid}: {reason}"},
                    }
                )
                return
        try:
            if self._child is not None:
                self._child_send(dict(msg))
                while True:
                    reply = self._child_recv()
                    self._send(reply)
                    if reply.get("event") == "complete":
                        break
            elif self._http is not None:
                if msg.get("event") == "download":
                    path = self._http.download(oid, size, self._progress(oid))
                    self._send({"event": "complete", "oid": oid, "path": str(path)})
                else:
                    self._http.upload(oid, size, Path(str(msg.get("path"))), self._progress(oid))
                    self._send({"event": "complete", "oid": oid})
            else:
                raise ToolError("transfer agent not initialised")
        except (ToolError, UsageError) as exc:
            self._send(
                {"event": "complete", "oid": oid, "error": {"code": 2, "message": exc.message}}
            )

    def _progress(self, oid: str) -> Callable[[int, int], None]:
        def report(done: int, since_last: int) -> None:
            self._send(
                {"event": "progress", "oid": oid, "bytesSoFar": done, "bytesSinceLast": since_last}
            )

        return report

    def _stop(self) -> None:
        if self._child is not None:
            with contextlib.suppress(OSError, ToolError):
                self._child_send({"event": "terminate"})
            with contextlib.suppress(OSError):
                assert self._child.stdin is not None
                self._child.stdin.close()
            try:
                self._child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._child.kill()
                self._child.wait()


class _HttpTransfer:
    """The LFS batch API and the ``basic`` transfer, over ``requests``."""

    def __init__(
        self,
        url: str,
        store: LfsStore,
        credentials: Callable[[str], dict[str, str]] | None,
    ) -> None:
        import requests

        self.url = url
        self.store = store
        self.credentials = credentials
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/vnd.git-lfs+json"
        self._auth: tuple[str, str] | None = None

    def _batch(self, operation: str, oid: str, size: int) -> dict[str, Any]:
        import requests

        body = {
            "operation": operation,
            "transfers": ["basic"],
            "objects": [{"oid": oid, "size": size}],
            "hash_algo": "sha256",
        }
        headers = {"Content-Type": "application/vnd.git-lfs+json"}
        for attempt in range(2):
            try:
                resp = self.session.post(
                    self.url + "/objects/batch",
                    json=body,
                    headers=headers,
                    auth=self._auth,
                    timeout=60,
                )
            except requests.RequestException as exc:
                raise ToolError(f"LFS batch request to {self.url} failed: {exc}") from exc
            if resp.status_code == 401 and attempt == 0 and self.credentials is not None:
                creds = self.credentials(self.url)
                if creds.get("username") is not None and creds.get("password") is not None:
                    self._auth = (creds["username"], creds["password"])
                    continue
            if resp.status_code != 200:
                raise ToolError(
                    f"LFS batch request to {self.url} failed: HTTP {resp.status_code}",
                    stderr=resp.text[:500],
                )
            break
        try:
            objects = resp.json()["objects"]
            obj: dict[str, Any] = next(o for o in objects if o.get("oid") == oid)
        except (ValueError, KeyError, StopIteration) as exc:
            raise ToolError(f"LFS server {self.url} sent a malformed batch response") from exc
        if obj.get("error"):
            err = obj["error"]
            raise ToolError(f"LFS server refused {oid}: {err.get('message')} ({err.get('code')})")
        return obj

    def download(self, oid: str, size: int, progress: Callable[[int, int], None]) -> Path:
        import requests

        obj = self._batch("download", oid, size)
        action = (obj.get("actions") or {}).get("download")
        if not action:
            raise ToolError(f"LFS server {self.url} offers no download for {oid}")
        self.store.tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.store.tmp_dir, prefix=f"{oid}-")
        h = hashlib.sha256()
        done = 0
        last = time.monotonic()
        try:
            with os.fdopen(fd, "wb") as f:
                resp = self.session.get(
                    action["href"], headers=action.get("header") or {}, stream=True, timeout=60
                )
                if resp.status_code != 200:
                    raise ToolError(f"download of {oid} failed: HTTP {resp.status_code}")
                since = 0
                for chunk in resp.iter_content(1 << 20):
                    f.write(chunk)
                    h.update(chunk)
                    done += len(chunk)
                    since += len(chunk)
                    if time.monotonic() - last > 0.2:
                        progress(done, since)
                        since, last = 0, time.monotonic()
                progress(done, since)
        except requests.RequestException as exc:
            os.unlink(tmp)
            raise ToolError(f"download of {oid} failed: {exc}") from exc
        except BaseException:
            os.unlink(tmp)
            raise
        if h.hexdigest() != oid or done != size:
            os.unlink(tmp)
            raise ToolError(
                f"downloaded object {oid} failed its check (sha256 {h.hexdigest()}, {done} bytes)"
            )
        return Path(tmp)

    def upload(self, oid: str, size: int, path: Path, progress: Callable[[int, int], None]) -> None:
        import requests

        obj = self._batch("upload", oid, size)
        actions = obj.get("actions") or {}
        up = actions.get("upload")
        if not up:
            return  # the server already has it
        try:
            with open(path, "rb") as f:  # a file body: streamed, with its Content-Length
                resp = self.session.put(
                    up["href"],
                    data=f,
                    headers={
                        "Content-Type": "application/octet-stream",
                        **(up.get("header") or {}),
                    },
                    timeout=60,
                )
            progress(size, size)
            if resp.status_code not in (200, 201):
                raise ToolError(
                    f"upload of {oid} failed: HTTP {resp.status_code}", stderr=resp.text[:500]
                )
            verify = actions.get("verify")
            if verify:
                resp = self.session.post(
                    verify["href"],
                    json={"oid": oid, "size": size},
                    headers={
                        "Content-Type": "application/vnd.git-lfs+json",
                        **(verify.get("header") or {}),
                    },
                    timeout=60,
                )
                if resp.status_code != 200:
                    raise ToolError(f"verification of upload {oid} failed: HTTP {resp.status_code}")
        except (requests.RequestException, OSError) as exc:
            raise ToolError(f"upload of {oid} failed: {exc}") from exc


def git_credential_fill(url: str, *, cwd: Path, env: Mapping[str, str]) -> dict[str, str]:
    """Ask ``git credential fill`` for credentials of ``url`` (no prompt: GIT_TERMINAL_PROMPT=0)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    query = f"protocol={parts.scheme}\nhost={parts.netloc}\npath={parts.path.lstrip('/')}\n\n"
    proc = subprocess.run(
        ["git", "credential", "fill"],
        input=query.encode(),
        capture_output=True,
        cwd=cwd,
        env={**env, "GIT_TERMINAL_PROMPT": "0"},
        check=False,
    )
    if proc.returncode != 0:
        return {}
    out = {}
    for line in proc.stdout.decode().splitlines():
        k, _, v = line.partition("=")
        out[k] = v
    return out


def run_git_lfs(
    args: list[str], *, cwd: Path, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``git lfs ARGS`` with its output going to our stdout/stderr."""
    require_git_lfs()
    return subprocess.run(
        ["git", "lfs", *args], cwd=cwd, env=None if env is None else dict(env), check=False
    )
