"""The LFS batch API and the ``basic`` transfer over HTTP(S) (``requests``, lazily).

The transfer agent's client for HTTP remotes: one batch request per object,
then the ``href``/``header`` of the action; downloads are hashed while they
are written under ``.git/lfs/tmp`` and refused when the digest or the size
differs. Credentials come from ``git credential fill`` on a 401.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ml_integrity.core.lfs import LfsStore
from ml_integrity.errors import ToolError

__all__ = ["HttpTransfer"]


class HttpTransfer:
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
