"""Adapter for the GitHub REST API: find a release by tag, attach an asset to it.

Used by the Action's ``sign`` mode to attach the signature bundle to a
release. Everything goes through one :class:`GitHubClient`:

- the API base URL is ``GITHUB_API_URL`` (GitHub Enterprise Server sets it;
  tests point it at a loopback stand-in), uploads go to the ``upload_url``
  the API returns for the release (``uploads.github.com`` on github.com);
- server errors (5xx), 429 and connection failures are retried with
  exponential backoff (``Retry-After`` is honoured); other answers are final;
- uploading an asset whose name already exists (a re-run, or two jobs of a
  matrix racing) never fails: ``on_existing="replace"`` deletes the old
  asset and uploads again, ``"skip"`` keeps the old one. Both the listing
  before the upload and GitHub's ``422 already_exists`` answer are handled,
  since the asset can appear between the two;
- the token is sent only in the ``Authorization`` header, never logged.

Errors follow the contract: a missing permission or a missing release is a
:class:`~ml_integrity.errors.UsageError` (exit 2, the workflow must change),
an unreachable or failing service a :class:`~ml_integrity.errors.NetworkError`
(exit 3).
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ml_integrity import __version__
from ml_integrity.errors import NetworkError, UsageError

if TYPE_CHECKING:
    import requests

__all__ = ["Asset", "GitHubClient", "Release", "UploadResult"]

_logger = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.github.com"
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
OnExisting = Literal["replace", "skip"]


@dataclass(frozen=True)
class Asset:
    id: int
    name: str
    url: str
    """The asset's download page (``browser_download_url``)."""


@dataclass(frozen=True)
class Release:
    id: int
    tag: str
    upload_url: str
    """Where assets are uploaded, without the ``{?name,label}`` template."""
    html_url: str


@dataclass(frozen=True)
class UploadResult:
    asset: Asset | None
    action: Literal["uploaded", "replaced", "skipped"]


class GitHubClient:
    """A small GitHub REST client for one repository (``owner/name``).

    ``sleep`` is injectable so that tests of the retry logic do not wait.
    """

    def __init__(
        self,
        token: str,
        repository: str,
        *,
        api_url: str | None = None,
        retries: int = 4,
        backoff: float = 0.5,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import requests

        if not token:
            raise UsageError(
                "no GitHub token to attach the bundle to the release",
                hint="pass github-token (the default ${{ github.token }} works with "
                "'permissions: contents: write'), or set upload-to-release: false",
            )
        if repository.count("/") != 1 or not all(repository.split("/")):
            raise UsageError(
                f"not a GitHub repository name: {repository!r}", hint="expected OWNER/NAME"
            )
        self.repository = repository
        self.api_url = (api_url or DEFAULT_API_URL).rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self._sleep = sleep
        self._session = requests.Session()
        self._session.headers.update(
            {
                "Accept": "application/vnd.github+json",
                "Authorization": f"Bearer {token}",
                "X-GitHub-Api-Version": "2022-11-28",
                "User-Agent": f"ml-integrity-action/{__version__}",
            }
        )

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> GitHubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------

    def _request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        params: Mapping[str, str | int] | None = None,
        body: Callable[[], bytes] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """One API call, retried on 5xx/429/connection errors; other answers returned."""
        import requests

        last = ""
        last_response: requests.Response | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                delay = self._delay(attempt, last_response)
                _logger.info("retrying %s in %.1fs (%s)", what, delay, last)
                self._sleep(delay)
                last_response = None
            try:
                response = self._session.request(
                    method,
                    url,
                    params=params,
                    data=body() if body is not None else None,
                    headers=dict(headers or {}),
                    timeout=self.timeout,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = f"{type(exc).__name__}"
                continue
            if response.status_code in _RETRY_STATUS:
                last = f"HTTP {response.status_code}"
                last_response = response
                continue
            return response
        raise NetworkError(
            f"GitHub API: {what} failed after {self.retries + 1} attempts ({last})",
            hint=f"check {self.api_url} and https://www.githubstatus.com; re-run the job",
        )

    def _delay(self, attempt: int, response: requests.Response | None) -> float:
        if response is not None:
            retry_after = response.headers.get("Retry-After", "")
            if retry_after.isdigit():
                return min(float(retry_after), 60.0)
        return float(min(self.backoff * 2 ** (attempt - 1), 30.0))

    def _url(self, path: str) -> str:
        return f"{self.api_url}/repos/{self.repository}/{path}"

    def _fail(self, response: requests.Response, what: str) -> UsageError | NetworkError:
        message = _message(response)
        if response.status_code in (401, 403):
            return UsageError(
                f"GitHub API refused to {what} (HTTP {response.status_code}: {message})",
                hint="the job needs 'permissions: contents: write' and a token for "
                f"{self.repository} (github-token input)",
            )
        return NetworkError(
            f"GitHub API: cannot {what} (HTTP {response.status_code}: {message})",
            hint="re-run the job; if it persists, check the repository and release on GitHub",
        )

    # -- releases ------------------------------------------------------------------

    def release_by_tag(self, tag: str) -> Release | None:
        """The release of ``tag``, or ``None`` when there is none (drafts are not found)."""
        quoted = urllib.parse.quote(tag, safe="")
        what = f"find the release of tag {tag}"
        response = self._request("GET", self._url(f"releases/tags/{quoted}"), what=what)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._fail(response, what)
        data = _json(response, what)
        try:
            upload = str(data["upload_url"]).split("{", 1)[0]
            return Release(int(data["id"]), str(data["tag_name"]), upload, str(data["html_url"]))
        except (KeyError, TypeError, ValueError):
            raise NetworkError(f"GitHub API: unexpected answer to '{what}'") from None

    def list_assets(self, release: Release) -> list[Asset]:
        what = f"list the assets of release {release.tag}"
        url: str | None = self._url(f"releases/{release.id}/assets")
        params: dict[str, str | int] | None = {"per_page": 100}
        assets: list[Asset] = []
        while url:
            response = self._request("GET", url, what=what, params=params)
            if response.status_code != 200:
                raise self._fail(response, what)
            data = _json(response, what)
            if not isinstance(data, list):
                raise NetworkError(f"GitHub API: unexpected answer to '{what}'")
            assets.extend(_asset(item, what) for item in data)
            url = response.links.get("next", {}).get("url")
            params = None  # the next link carries them
        return assets

    def delete_asset(self, asset: Asset) -> None:
        what = f"delete the release asset {asset.name}"
        response = self._request("DELETE", self._url(f"releases/assets/{asset.id}"), what=what)
        if response.status_code not in (204, 404):  # 404: already gone (a racing job)
            raise self._fail(response, what)

    def upload_asset(
        self,
        release: Release,
        path: Path,
        *,
        name: str | None = None,
        content_type: str = "application/json",
        on_existing: OnExisting = "replace",
    ) -> UploadResult:
        """Attach ``path`` to ``release``; an existing asset of that name is replaced or kept."""
        name = name or path.name
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read: {exc.strerror}", path=path) from None
        replaced = False
        for _ in range(3):
            existing = next((a for a in self.list_assets(release) if a.name == name), None)
            if existing is not None:
                if on_existing == "skip":
                    return UploadResult(existing, "skipped")
                self.delete_asset(existing)
                replaced = True
            what = f"upload {name} to release {release.tag}"
            response = self._request(
                "POST",
                release.upload_url,
                what=what,
                params={"name": name},
                body=lambda: data,
                headers={"Content-Type": content_type},
            )
            if response.status_code == 201:
                action: Literal["uploaded", "replaced"] = "replaced" if replaced else "uploaded"
                return UploadResult(_asset(_json(response, what), what), action)
            if response.status_code == 422 and _already_exists(response):
                # Created meanwhile (another job, or a retried upload that did
                # arrive): look again and replace or keep it.
                continue
            raise self._fail(response, what)
        raise NetworkError(
            f"GitHub API: the release asset {name} kept reappearing while replacing it",
            hint="another job uploads the same asset name; give each job its own bundle name",
        )


def _json(response: requests.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise NetworkError(f"GitHub API: the answer to '{what}' is not JSON") from None


def _asset(item: object, what: str) -> Asset:
    try:
        if isinstance(item, dict):
            url = str(item.get("browser_download_url", ""))
            return Asset(int(item["id"]), str(item["name"]), url)
    except (KeyError, TypeError, ValueError):
        pass
    raise NetworkError(f"GitHub API: unexpected asset in the answer to '{what}'")


def _message(response: requests.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.reason or "no message"
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])
    return response.reason or "no message"


def _already_exists(response: requests.Response) -> bool:
    try:
        data = response.json()
    except ValueError:
        return False
    errors = data.get("errors") if isinstance(data, dict) else None
    return isinstance(errors, list) and any(
        isinstance(e, dict) and e.get("code") == "already_exists" for e in errors
    )
