"""The GitHub REST adapter against a loopback stand-in for the GitHub API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ml_integrity.action.github import GitHubClient
from ml_integrity.errors import ExitCode, NetworkError, UsageError

from .github_api import TOKEN, FakeGitHub, fake_github


@pytest.fixture
def gh() -> Iterator[FakeGitHub]:
    with fake_github() as fake:
        yield fake


def client(
    gh: FakeGitHub, *, token: str = TOKEN, sleeps: list[float] | None = None
) -> GitHubClient:
    record = sleeps if sleeps is not None else []
    return GitHubClient(token, gh.repository, api_url=gh.url, sleep=record.append)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    p = tmp_path / "models.sigstore.json"
    p.write_text('{"new": true}\n')
    return p


def test_finds_release_by_tag_and_uploads(gh: FakeGitHub, bundle: Path) -> None:
    gh.add_release("v1.0")
    with client(gh) as c:
        release = c.release_by_tag("v1.0")
        assert release is not None and release.tag == "v1.0"
        assert "{" not in release.upload_url
        result = c.upload_asset(release, bundle)
    assert result.action == "uploaded"
    assert result.asset is not None and result.asset.name == bundle.name
    assert gh.asset_data("v1.0", bundle.name) == bundle.read_bytes()
    upload = next(r for r in gh.log if r.endpoint == "upload")
    assert upload.headers["Content-Type"] == "application/json"


def test_missing_release_is_none(gh: FakeGitHub) -> None:
    with client(gh) as c:
        assert c.release_by_tag("v9") is None


def test_tag_with_slash_is_quoted(gh: FakeGitHub) -> None:
    gh.add_release("models/v2")
    with client(gh) as c:
        release = c.release_by_tag("models/v2")
    assert release is not None and release.tag == "models/v2"


def test_rerun_replaces_existing_asset(gh: FakeGitHub, bundle: Path) -> None:
    gh.add_release("v1")
    gh.add_asset("v1", bundle.name, b"stale")
    with client(gh) as c:
        release = c.release_by_tag("v1")
        assert release is not None
        result = c.upload_asset(release, bundle, on_existing="replace")
    assert result.action == "replaced"
    assert gh.asset_data("v1", bundle.name) == bundle.read_bytes()
    assert gh.count("delete_asset") == 1


def test_rerun_can_keep_existing_asset(gh: FakeGitHub, bundle: Path) -> None:
    gh.add_release("v1")
    gh.add_asset("v1", bundle.name, b"first")
    with client(gh) as c:
        release = c.release_by_tag("v1")
        assert release is not None
        result = c.upload_asset(release, bundle, on_existing="skip")
    assert result.action == "skipped"
    assert gh.asset_data("v1", bundle.name) == b"first"
    assert gh.count("upload") == 0


def test_server_errors_are_retried_with_backoff(gh: FakeGitHub, bundle: Path) -> None:
    gh.add_release("v1")
    gh.fail["get_release"] = [500]
    gh.fail["upload"] = [502, 503]
    sleeps: list[float] = []
    with client(gh, sleeps=sleeps) as c:
        release = c.release_by_tag("v1")
        assert release is not None
        result = c.upload_asset(release, bundle)
    assert result.action == "uploaded"
    assert gh.count("upload") == 3
    assert sleeps == [0.5, 0.5, 1.0]  # exponential per call: 0.5 s, then 0.5 s, 1 s


def test_upload_that_landed_despite_5xx_is_not_a_failure(gh: FakeGitHub, bundle: Path) -> None:
    # GitHub can store an asset and still answer 5xx; the retry then gets 422
    # already_exists, which must not fail the job.
    gh.add_release("v1")
    gh.land_then_fail = 1
    with client(gh) as c:
        release = c.release_by_tag("v1")
        assert release is not None
        result = c.upload_asset(release, bundle, on_existing="replace")
    assert result.action in ("uploaded", "replaced")
    assert gh.asset_data("v1", bundle.name) == bundle.read_bytes()
    assert [a["name"] for a in gh.assets[gh.releases["v1"]["id"]]] == [bundle.name]


def test_race_already_exists_with_skip(gh: FakeGitHub, bundle: Path) -> None:
    gh.add_release("v1")
    gh.land_then_fail = 1
    with client(gh) as c:
        release = c.release_by_tag("v1")
        assert release is not None
        result = c.upload_asset(release, bundle, on_existing="skip")
    assert result.action == "skipped"


def test_gives_up_after_retries(gh: FakeGitHub) -> None:
    gh.fail["get_release"] = [503] * 10
    with client(gh) as c, pytest.raises(NetworkError) as info:
        c.release_by_tag("v1")
    assert info.value.exit_code == ExitCode.OPERATIONAL
    assert "5 attempts" in info.value.message
    assert gh.count("get_release") == 5


def test_retry_after_is_honoured(gh: FakeGitHub) -> None:
    gh.add_release("v1")
    gh.fail["get_release"] = [429, 503]
    gh.retry_after = "3"
    sleeps: list[float] = []
    with client(gh, sleeps=sleeps) as c:
        assert c.release_by_tag("v1") is not None
    assert sleeps == [3.0, 3.0]


def test_connection_refused_is_a_network_error(tmp_path: Path) -> None:
    with fake_github() as gone:
        url = gone.url
    sleeps: list[float] = []
    c = GitHubClient(TOKEN, "acme/models", api_url=url, retries=2, sleep=sleeps.append)
    with pytest.raises(NetworkError):
        c.release_by_tag("v1")
    assert len(sleeps) == 2


def test_bad_token_is_a_usage_error_with_permission_hint(gh: FakeGitHub) -> None:
    with client(gh, token="wrong") as c, pytest.raises(UsageError) as info:
        c.release_by_tag("v1")
    assert info.value.exit_code == ExitCode.USAGE
    assert "contents: write" in (info.value.hint or "")


def test_no_token_is_a_usage_error(gh: FakeGitHub) -> None:
    with pytest.raises(UsageError):
        GitHubClient("", gh.repository, api_url=gh.url)


def test_asset_listing_follows_pagination(gh: FakeGitHub, bundle: Path) -> None:
    gh.add_release("v1")
    gh.page_size = 2
    for i in range(5):
        gh.add_asset("v1", f"other-{i}.txt")
    gh.add_asset("v1", bundle.name, b"stale")
    with client(gh) as c:
        release = c.release_by_tag("v1")
        assert release is not None
        assert len(c.list_assets(release)) == 6
        assert c.upload_asset(release, bundle).action == "replaced"
    assert gh.count("list_assets") >= 3
