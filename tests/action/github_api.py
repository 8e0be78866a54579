"""A loopback stand-in for the GitHub REST API (releases and release assets).

It stands in for ``api.github.com`` and ``uploads.github.com``, which tests
cannot reach: just the endpoints the Action uses, with GitHub's status codes
and JSON shapes (REST API version 2022-11-28):

- ``GET  /repos/{owner}/{repo}/releases/tags/{tag}``  200, or 404
- ``GET  /repos/{owner}/{repo}/releases/{id}/assets`` 200, paginated (``Link``)
- ``DELETE /repos/{owner}/{repo}/releases/assets/{id}`` 204, or 404
- ``POST /uploads/repos/{owner}/{repo}/releases/{id}/assets?name=N`` 201, or
  422 ``already_exists``

Requests without the expected bearer token get 401. Tests can queue failures
per endpoint (``fail["upload"] = [502, 503]``), make an upload arrive and still
answer 502 (``land_then_fail``), and read every request made (``log``).
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "ghs_test-token-not-a-secret"


@dataclass
class Request:
    method: str
    endpoint: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class FakeGitHub:
    def __init__(self, repository: str = "acme/models", token: str = TOKEN) -> None:
        self.repository = repository
        self.token = token
        self.releases: dict[str, dict[str, Any]] = {}
        self.assets: dict[int, list[dict[str, Any]]] = {}
        self.blobs: dict[int, bytes] = {}
        self.fail: dict[str, list[int]] = {}
        self.land_then_fail = 0
        self.retry_after: str | None = None
        """Sent as ``Retry-After`` with queued failures (GitHub does on 429 and some 503s)."""
        self.page_size = 100
        self.log: list[Request] = []
        self._next_id = 1000
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- state -----------------------------------------------------------------

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def add_release(self, tag: str) -> dict[str, Any]:
        rid = self._id()
        release = {
            "id": rid,
            "tag_name": tag,
            "html_url": f"https://github.com/{self.repository}/releases/tag/{tag}",
            "upload_url": f"{self.url}/uploads/repos/{self.repository}/releases/{rid}/assets"
            "{?name,label}",
        }
        self.releases[tag] = release
        self.assets[rid] = []
        return release

    def add_asset(self, tag: str, name: str, data: bytes = b"old") -> dict[str, Any]:
        rid = self.releases[tag]["id"]
        aid = self._id()
        asset = {
            "id": aid,
            "name": name,
            "size": len(data),
            "state": "uploaded",
            "browser_download_url": f"https://github.com/{self.repository}/releases/download/"
            f"{tag}/{name}",
        }
        self.assets[rid].append(asset)
        self.blobs[aid] = data
        return asset

    def asset_data(self, tag: str, name: str) -> bytes | None:
        rid = self.releases[tag]["id"]
        for a in self.assets[rid]:
            if a["name"] == name:
                return self.blobs[a["id"]]
        return None

    def count(self, endpoint: str, method: str | None = None) -> int:
        return sum(
            1 for r in self.log if r.endpoint == endpoint and (method is None or r.method == method)
        )

    # -- serving ---------------------------------------------------------------------

    @contextmanager
    def running(self) -> Iterator[FakeGitHub]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(
                self, status: int, body: object = None, headers: dict[str, str] | None = None
            ) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                endpoint, args = fake._route(method, url.path)
                with fake._lock:
                    fake.log.append(Request(method, endpoint, self.path, body, dict(self.headers)))
                    if self.headers.get("Authorization") != f"Bearer {fake.token}":
                        return self._send(401, {"message": "Bad credentials"})
                    queued = fake.fail.get(endpoint)
                    if queued:
                        status = queued.pop(0)
                        extra = {"Retry-After": fake.retry_after} if fake.retry_after else {}
                        return self._send(status, {"message": "Server Error"}, extra)
                    status, out, headers = fake._dispatch(method, endpoint, args, query, body)
                self._send(status, out, headers)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join()

    _ROUTES = [
        ("GET", r"/repos/[^/]+/[^/]+/releases/tags/(?P<tag>[^/]+)", "get_release"),
        ("GET", r"/repos/[^/]+/[^/]+/releases/(?P<rid>\d+)/assets", "list_assets"),
        ("DELETE", r"/repos/[^/]+/[^/]+/releases/assets/(?P<aid>\d+)", "delete_asset"),
        ("POST", r"/uploads/repos/[^/]+/[^/]+/releases/(?P<rid>\d+)/assets", "upload"),
    ]

    def _route(self, method: str, path: str) -> tuple[str, dict[str, str]]:
        for m, pattern, name in self._ROUTES:
            match = re.fullmatch(pattern, path)
            if m == method and match:
                if not path.startswith(
                    ("/repos/" + self.repository + "/", "/uploads/repos/" + self.repository + "/")
                ):
                    return "wrong-repository", {}
                return name, {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
        return "unknown", {}

    def _dispatch(
        self, method: str, endpoint: str, args: dict[str, str], query: dict[str, str], body: bytes
    ) -> tuple[int, object, dict[str, str]]:
        not_found = {"message": "Not Found"}
        if endpoint == "get_release":
            release = self.releases.get(args["tag"])
            return (200, release, {}) if release else (404, not_found, {})
        if endpoint == "list_assets":
            assets = self.assets.get(int(args["rid"]))
            if assets is None:
                return 404, not_found, {}
            page = int(query.get("page", "1"))
            size = min(int(query.get("per_page", "30")), self.page_size)
            chunk = assets[(page - 1) * size : page * size]
            headers = {}
            if page * size < len(assets):
                nxt = (
                    f"{self.url}/repos/{self.repository}/releases/{args['rid']}/assets"
                    f"?per_page={size}&page={page + 1}"
                )
                headers["Link"] = f'<{nxt}>; rel="next"'
            return 200, chunk, headers
        if endpoint == "delete_asset":
            aid = int(args["aid"])
            for assets in self.assets.values():
                for a in assets:
                    if a["id"] == aid:
                        assets.remove(a)
                        self.blobs.pop(aid, None)
                        return 204, None, {}
            return 404, not_found, {}
        if endpoint == "upload":
            rid = int(args["rid"])
            name = query.get("name", "")
            if rid not in self.assets or not name:
                return 404, not_found, {}
            if any(a["name"] == name for a in self.assets[rid]):
                return (
                    422,
                    {
                        "message": "Validation Failed",
                        "errors": [
                            {"resource": "ReleaseAsset", "code": "already_exists", "field": "name"}
                        ],
                    },
                    {},
                )
            tag = next(t for t, r in self.releases.items() if r["id"] == rid)
            asset = self.add_asset(tag, name, body)
            if self.land_then_fail:
                self.land_then_fail -= 1
                return 502, {"message": "Bad Gateway"}, {}
            return 201, asset, {}
        return 404, not_found, {}


@contextmanager
def fake_github(repository: str = "acme/models") -> Iterator[FakeGitHub]:
    with FakeGitHub(repository).running() as fake:
        yield fake
