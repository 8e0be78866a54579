"""The standalone transfer agent: git-lfs's downloads, gated.

:class:`TransferAgent` is a git-lfs standalone custom transfer agent (JSON
lines on stdin/stdout) that refuses downloads a :class:`TransferGate` does
not allow, so refused objects never enter the local store. File remotes are
delegated to ``git-lfs standalone-file``; HTTP remotes are served through the
LFS batch API (:mod:`.batch`).
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from ml_integrity.core.lfs import LfsStore
from ml_integrity.errors import ToolError, UsageError
from ml_integrity.git.batch import HttpTransfer
from ml_integrity.git.lfs import Child, require_git_lfs

__all__ = ["Endpoint", "TransferAgent", "TransferGate", "endpoint_from_url"]

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
        on_refusal: Callable[[str, str], None] | None = None,
        cwd: Path | None = None,
    ) -> None:
        """``on_refusal(oid, reason)`` is told of every download refused for integrity
        (not of git-lfs's own failures, such as an object missing on the server)."""
        self.gate = gate
        self.resolve_endpoint = resolve_endpoint
        self.store = store
        self.credentials = credentials
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.log = log or (lambda _m: None)
        self.on_refusal = on_refusal or (lambda _o, _r: None)
        self.cwd = cwd
        """Where ``git-lfs standalone-file`` runs (default: ours, as git-lfs starts us)."""
        self.operation = "download"
        self.endpoint: Endpoint | None = None
        self._child: Child | None = None
        self._http: HttpTransfer | None = None
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
            self._child = Child.start(
                [require_git_lfs(), "standalone-file"], text=True, cwd=self.cwd
            )
            init = dict(msg)
            self._child_send(init)
            reply = self._child_recv()
            if reply.get("error"):
                raise ToolError(f"git-lfs standalone-file: {reply['error']}")
        else:
            self._http = HttpTransfer(self.endpoint.url, self.store, self.credentials)

    def _child_send(self, msg: Mapping[str, object]) -> None:
        assert self._child is not None
        cin, _ = self._child.text_pipes()
        cin.write(json.dumps(msg) + "\n")
        cin.flush()

    def _child_recv(self) -> dict[str, Any]:
        assert self._child is not None
        _, cout = self._child.text_pipes()
        line = cout.readline()
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
                self.on_refusal(oid, reason)
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
            self._child.stop(timeout=30)
