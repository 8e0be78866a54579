"""Loopback test doubles for the services keyless signing talks to.

Nothing here is a real Sigstore service; everything listens on 127.0.0.1 only.

- :class:`OIDCTokenServer` stands in for **GitHub Actions' OIDC token
  endpoint** (the URL in ``ACTIONS_ID_TOKEN_REQUEST_URL``). It checks the
  bearer request token like GitHub does and mints HS256 JWTs with
  ``aud`` = the requested audience and GitHub-shaped claims; tests can make it
  return errors, malformed JSON, a wrong audience or expired tokens.
- :class:`FakeSigstore` runs ``tests/tools/sigstore-mock/server.js``, our Node
  adapter around npm's ``@sigstore/mock``: it stands in for **Fulcio** (the
  certificate authority and its CT log) and **Rekor v1** (the transparency
  log). :meth:`FakeSigstore.trust_config` builds the Sigstore
  ``ClientTrustConfig`` (trusted root + signing config) that points at it.

sigstore-python's real code runs against both: ambient credential detection,
CSR, SCT verification, log submission, bundle assembly, and all of
verification. Fidelity limits: the CT log and Rekor are single-entry logs
made up per request (inclusion proof of a one-leaf tree); Fulcio does not
check the CSR's proof of possession.

Reusable: import the classes, or the fixtures in
:mod:`tests.support.sigstore_fixtures`.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

REPO_ROOT = Path(__file__).resolve().parents[2]
MOCK_DIR = REPO_ROOT / "tests" / "tools" / "sigstore-mock"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"

__all__ = [
    "GITHUB_ISSUER",
    "MOCK_DIR",
    "FakeSigstore",
    "OIDCTokenServer",
    "closed_port_url",
    "environment",
    "github_claims",
    "mint_jwt",
    "mock_unavailable_reason",
]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def mint_jwt(claims: Mapping[str, Any], secret: str) -> str:
    """An HS256 JWT over ``claims`` (as an identity provider would issue)."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64url(json.dumps(dict(claims), separators=(",", ":")).encode())
    signing_input = f"{header}.{body}".encode("ascii")
    sig = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}.{body}.{_b64url(sig)}"


def github_claims(
    *,
    repository: str = "octo-org/models",
    ref: str = "refs/heads/main",
    workflow_file: str = ".github/workflows/release.yml",
    workflow_name: str = "Release",
    event_name: str = "push",
    sha: str = "0123456789abcdef0123456789abcdef01234567",
    job_workflow: str | None = None,
) -> dict[str, Any]:
    """The claims GitHub Actions puts in an OIDC token (without iat/exp/aud).

    ``job_workflow`` is ``OWNER/REPO/PATH@REF`` of a called reusable workflow;
    by default the job runs in the repository's own workflow.
    """
    owner = repository.split("/")[0]
    workflow_ref = f"{repository}/{workflow_file}@{ref}"
    return {
        "iss": GITHUB_ISSUER,
        "sub": f"repo:{repository}:ref:{ref}",
        "repository": repository,
        "repository_owner": owner,
        "repository_id": "123456",
        "repository_owner_id": "654321",
        "repository_visibility": "public",
        "ref": ref,
        "ref_type": "tag" if ref.startswith("refs/tags/") else "branch",
        "sha": sha,
        "workflow": workflow_name,
        "workflow_ref": workflow_ref,
        "workflow_sha": sha,
        "job_workflow_ref": job_workflow or workflow_ref,
        "job_workflow_sha": sha,
        "event_name": event_name,
        "run_id": "42",
        "run_number": "7",
        "run_attempt": "1",
        "runner_environment": "github-hosted",
        "actor": "octocat",
    }


@dataclass
class OIDCTokenServer:
    """Stand-in for GitHub Actions' OIDC token endpoint, on 127.0.0.1.

    Set the attributes to shape the next responses:

    - ``claims``: the token's claims (``iat``/``nbf``/``exp``/``aud`` are added);
    - ``lifetime``: seconds until ``exp`` (negative: an expired token);
    - ``audience``: force the ``aud`` claim (default: the requested audience);
    - ``status``/``body``: answer with this HTTP status and body instead;
    - ``malformed``: answer 200 with a body that is not the expected JSON.
    """

    claims: dict[str, Any] = field(default_factory=github_claims)
    secret: str = field(default_factory=lambda: secrets.token_hex(32))
    request_token: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    lifetime: int = 300
    audience: str | None = None
    status: int | None = None
    body: str = ""
    malformed: bool = False
    requests: list[dict[str, str]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def mint(self, audience: str = "sigstore", **overrides: Any) -> str:
        now = int(time.time())
        claims = {
            **self.claims,
            "aud": self.audience or audience,
            "iat": now,
            "nbf": now,
            "exp": now + self.lifetime,
            **overrides,
        }
        return mint_jwt(claims, self.secret)

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/token?api-version=2.0"

    def env(self) -> dict[str, str]:
        """The environment a GitHub Actions job with ``id-token: write`` has."""
        return {
            "GITHUB_ACTIONS": "true",
            "ACTIONS_ID_TOKEN_REQUEST_URL": self.url,
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": self.request_token,
        }

    def start(self) -> OIDCTokenServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                query = parse_qs(urlparse(self.path).query)
                owner.requests.append(
                    {
                        "path": urlparse(self.path).path,
                        "audience": query.get("audience", [""])[0],
                        "api-version": query.get("api-version", [""])[0],
                        "authorization": self.headers.get("Authorization", ""),
                    }
                )
                if owner.status is not None:
                    return self._send(owner.status, owner.body or '{"message":"error"}')
                if self.headers.get("Authorization", "") != f"bearer {owner.request_token}":
                    return self._send(401, '{"message":"Bad credentials"}')
                if owner.malformed:
                    return self._send(200, '{"count": 1, "val')
                token = owner.mint(query.get("audience", [""])[0] or "sigstore")
                self._send(200, json.dumps({"count": 1, "value": token}))

            def _send(self, status: int, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def mock_unavailable_reason() -> str | None:
    """Why the Node fake cannot run here, or None when it can."""
    if shutil.which("node") is None:
        return "node is not installed (run tests/tools/install.sh)"
    pkg = MOCK_DIR / "node_modules" / "@sigstore" / "mock" / "package.json"
    if not pkg.exists():
        return "@sigstore/mock is not installed (run tests/tools/install.sh)"
    version = json.loads(pkg.read_text()).get("version")
    if version != "0.13.0":
        return f"@sigstore/mock {version} installed, 0.13.0 needed (run tests/tools/install.sh)"
    return None


def _iso(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeSigstore:
    """Runs the Node stand-in for Fulcio + Rekor v1 on 127.0.0.1.

    ``oidc_secret`` is the HS256 secret of the :class:`OIDCTokenServer` whose
    tokens the fake Fulcio accepts (standing in for the issuer's JWKS).
    """

    def __init__(self, oidc_secret: str) -> None:
        self.oidc_secret = oidc_secret
        self._proc: subprocess.Popen[str] | None = None
        self.info: dict[str, Any] = {}

    @property
    def url(self) -> str:
        return str(self.info["url"])

    def start(self) -> FakeSigstore:
        reason = mock_unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        self._proc = subprocess.Popen(
            ["node", "server.js", "--oidc-secret", self.oidc_secret],
            cwd=MOCK_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            err = self._proc.stderr.read() if self._proc.stderr else ""
            raise RuntimeError(f"sigstore-mock did not start: {err.strip()}")
        self.info = json.loads(line)
        return self

    def stop(self) -> None:
        if self._proc is not None:
            if self._proc.stdin:
                self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            for stream in (self._proc.stdout, self._proc.stderr):
                if stream:
                    stream.close()
            self._proc = None

    # --- trust material ----------------------------------------------------

    def trusted_root(self) -> dict[str, Any]:
        """The Sigstore ``trusted_root.json`` document of this fake instance."""
        start = _iso(datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1))

        def log(key: dict[str, str]) -> dict[str, Any]:
            return {
                "baseUrl": self.url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": key["public_key"],
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": {"start": start},
                },
                "logId": {"keyId": key["log_id"]},
            }

        return {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [log(self.info["rekor"])],
            "certificateAuthorities": [
                {
                    "subject": {"organization": "sigstore.mock", "commonName": "sigstore"},
                    "uri": self.url,
                    "certChain": {
                        "certificates": [{"rawBytes": self.info["fulcio"]["root_certificate"]}]
                    },
                    "validFor": {"start": start},
                }
            ],
            "ctlogs": [log(self.info["ctlog"])],
            "timestampAuthorities": [],
        }

    def signing_config(
        self, *, fulcio_url: str | None = None, rekor_url: str | None = None
    ) -> dict[str, Any]:
        """A signing config pointing at this fake (or at the URLs given)."""
        start = _iso(datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1))

        def service(url: str) -> dict[str, Any]:
            return {
                "url": url,
                "majorApiVersion": 1,
                "validFor": {"start": start},
                "operator": "ml-integrity-tests",
            }

        return {
            "mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
            "caUrls": [service(fulcio_url or self.url)],
            "oidcUrls": [],
            "rekorTlogUrls": [service(rekor_url or self.url)],
            "tsaUrls": [],
            "rekorTlogConfig": {"selector": "ANY"},
            "tsaConfig": {"selector": "ANY"},
        }

    def trust_config(self, **urls: str | None) -> dict[str, Any]:
        """A ``ClientTrustConfig`` document: trusted root + signing config."""
        return {
            "mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
            "trustedRoot": self.trusted_root(),
            "signingConfig": self.signing_config(**urls),
        }

    def write_trust_config(self, path: Path, **urls: str | None) -> Path:
        path.write_text(json.dumps(self.trust_config(**urls), indent=2))
        return path

    def write_trusted_root(self, path: Path) -> Path:
        path.write_text(json.dumps(self.trusted_root(), indent=2))
        return path

    # --- controls ------------------------------------------------------------

    def _control(self, method: str, path: str, body: object = None) -> Any:
        import urllib.request

        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def fail_next(self, service: str, status: int, times: int = 1) -> None:
        """Make the next ``times`` requests to ``fulcio`` or ``rekor`` fail with ``status``."""
        path = {"fulcio": "/api/v2/signingCert", "rekor": "/api/v1/log/entries"}[service]
        self._control("POST", "/__mock/fail", {"path": path, "status": status, "times": times})

    def received(self) -> list[dict[str, str]]:
        """The requests the fake received so far (method and path)."""
        result: list[dict[str, str]] = self._control("GET", "/__mock/requests")
        return result


def closed_port_url() -> str:
    """A loopback URL where nothing listens (connections are refused)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Temporarily set environment variables (for in-process tests)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
