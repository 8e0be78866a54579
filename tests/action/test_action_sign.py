"""The Action in sign mode, run as the runner runs it, against a loopback GitHub API stand-in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ml_integrity.trust import keys as _keys

from .conftest import ActionEnv, commit_all
from .github_api import TOKEN, FakeGitHub, fake_github


@pytest.fixture
def gh() -> Iterator[FakeGitHub]:
    with fake_github() as fake:
        yield fake


@pytest.fixture
def keypair(tmp_path: Path) -> tuple[Path, Path]:
    return _keys.generate(tmp_path / "keys" / "signer.pem", "ec-p256")


def add_model(action_env: ActionEnv) -> Path:
    model = action_env.workspace / "models" / "tiny"
    model.mkdir(parents=True)
    (model / "weights.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " * 4)
    (model / "config.json").write_text('{"layers": 2}\n')
    commit_all(action_env.workspace, "add model")
    return model


def release_env(action_env: ActionEnv, gh: FakeGitHub, tag: str = "v1.0") -> None:
    release = gh.releases.get(tag) or gh.add_release(tag)
    action_env.event_name = "release"
    action_env.event = {"action": "published", "release": release}
    action_env.extra.update({"GITHUB_REF": f"refs/tags/{tag}", "GITHUB_API_URL": gh.url})
    action_env.inputs["github-token"] = TOKEN


def test_signs_a_model_with_a_key_and_attaches_the_bundle(
    action_env: ActionEnv, gh: FakeGitHub, keypair: tuple[Path, Path], cli: object
) -> None:
    add_model(action_env)
    release_env(action_env, gh)
    action_env.inputs.update(
        {"mode": "sign", "path": "models/tiny", "signing-key": str(keypair[0])}
    )
    result = action_env.run()
    assert result.returncode == 0, result.stdout + result.stderr
    bundle = Path(result.outputs["bundle-path"])
    assert bundle.name == "tiny.sig" and bundle.is_file()
    assert result.outputs["log-index"] == ""  # key-based: no transparency log
    assert result.outputs["asset-url"].endswith("/releases/download/v1.0/tiny.sig")
    assert gh.asset_data("v1.0", "tiny.sig") == bundle.read_bytes()
    report = result.report
    assert report["ok"] is True and report["mode"] == "sign"
    assert sorted(a["path"] for a in report["artifacts"]) == ["config.json", "weights.safetensors"]
    assert "## ml-integrity: ✅ signed" in result.summary
    assert "EC P-256 key" in result.summary
    # The bundle is a real OMS bundle: the CLI verifies the model with it.
    verified = cli(  # type: ignore[operator]
        "verify", action_env.workspace / "models" / "tiny", "--bundle", bundle, "--key", keypair[1]
    )
    assert verified.returncode == 0, verified.stderr


def test_rerun_replaces_the_asset_and_skip_keeps_it(
    action_env: ActionEnv, gh: FakeGitHub, keypair: tuple[Path, Path]
) -> None:
    add_model(action_env)
    release_env(action_env, gh)
    gh.add_asset("v1.0", "tiny.sig", b"from an earlier run")
    action_env.inputs.update(
        {"mode": "sign", "path": "models/tiny", "signing-key": str(keypair[0])}
    )
    first = action_env.run()
    assert first.returncode == 0, first.stdout
    assert gh.asset_data("v1.0", "tiny.sig") == Path(first.outputs["bundle-path"]).read_bytes()

    action_env.inputs["on-existing-asset"] = "skip"
    kept = gh.asset_data("v1.0", "tiny.sig")
    second = action_env.run()
    assert second.returncode == 0, second.stdout
    assert gh.asset_data("v1.0", "tiny.sig") == kept
    assert any("kept it" in a.message for a in second.annotations if a.level == "notice")


def test_github_5xx_then_success(
    action_env: ActionEnv, gh: FakeGitHub, keypair: tuple[Path, Path]
) -> None:
    add_model(action_env)
    release_env(action_env, gh)
    gh.fail["upload"] = [502]
    action_env.inputs.update(
        {"mode": "sign", "path": "models/tiny", "signing-key": str(keypair[0])}
    )
    result = action_env.run()
    assert result.returncode == 0, result.stdout
    assert gh.count("upload") == 2
    assert gh.asset_data("v1.0", "tiny.sig") is not None


def test_github_down_is_exit_3(
    action_env: ActionEnv, gh: FakeGitHub, keypair: tuple[Path, Path]
) -> None:
    add_model(action_env)
    release_env(action_env, gh)
    gh.fail["list_assets"] = [503] * 10
    gh.retry_after = "0"  # the server asks for no wait: the test need not sleep
    action_env.inputs.update(
        {"mode": "sign", "path": "models/tiny", "signing-key": str(keypair[0])}
    )
    result = action_env.run()
    assert result.returncode == 3
    (error,) = result.errors()
    assert "failed after 5 attempts" in error.message
    assert error.props["title"] == "ml-integrity: could not run"


def test_key_from_a_secret_in_the_environment_is_not_left_on_disk(
    action_env: ActionEnv, keypair: tuple[Path, Path]
) -> None:
    add_model(action_env)
    action_env.event_name = "push"
    action_env.extra["ML_INTEGRITY_SIGNING_KEY"] = keypair[0].read_text()
    action_env.inputs.update({"mode": "sign", "path": "models/tiny"})
    result = action_env.run()
    assert result.returncode == 0, result.stdout
    assert result.outputs["asset-url"] == ""  # not a tag: nothing attached
    temp = action_env.root / "runner-temp"
    assert not [
        p
        for p in temp.rglob("*")
        if p.is_file() and p.read_bytes().startswith(b"-----BEGIN PRIVATE")
    ]


def test_tag_without_release(
    action_env: ActionEnv, gh: FakeGitHub, keypair: tuple[Path, Path]
) -> None:
    add_model(action_env)
    action_env.event_name = "push"
    action_env.extra.update({"GITHUB_REF": "refs/tags/v2.0", "GITHUB_API_URL": gh.url})
    action_env.inputs.update(
        {
            "mode": "sign",
            "path": "models/tiny",
            "signing-key": str(keypair[0]),
            "github-token": TOKEN,
        }
    )
    result = action_env.run()
    assert result.returncode == 0, result.stdout
    assert any(
        "no release for tag v2.0" in a.message for a in result.annotations if a.level == "warning"
    )

    action_env.inputs["upload-to-release"] = "true"
    strict = action_env.run()
    assert strict.returncode == 2
    assert "no release for tag v2.0" in strict.errors()[0].message


def test_keyless_without_id_token_permission(action_env: ActionEnv) -> None:
    add_model(action_env)
    action_env.event_name = "push"
    action_env.extra["GITHUB_REF"] = "refs/tags/v1"
    action_env.inputs.update({"mode": "sign", "path": "models/tiny"})
    result = action_env.run()
    assert result.returncode == 2
    (error,) = result.errors()
    assert "id-token: write" in error.message
    assert "ACTIONS_ID_TOKEN_REQUEST_URL" in error.message
    assert "configuration error" in error.props["title"]
    assert "❌" in result.summary


def test_keyless_on_a_fork_pull_request_says_why(action_env: ActionEnv) -> None:
    add_model(action_env)
    action_env.event_name = "pull_request"
    action_env.inputs.update({"mode": "sign", "path": "models/tiny"})
    result = action_env.run()
    assert result.returncode == 2
    assert "forks never get an OIDC token" in result.errors()[0].message


@pytest.mark.parametrize(
    ("name", "value"),
    [("mode", "publish"), ("upload-to-release", "maybe"), ("on-existing-asset", "fail")],
)
def test_bad_input_value_is_exit_2(action_env: ActionEnv, name: str, value: str) -> None:
    action_env.inputs.update({"mode": "sign", name: value})
    result = action_env.run()
    assert result.returncode == 2
    assert name in result.errors()[0].message


def test_outputs_survive_hostile_file_names(
    action_env: ActionEnv, keypair: tuple[Path, Path]
) -> None:
    # A name with a newline must not start a workflow command or break $GITHUB_OUTPUT.
    model = action_env.workspace / "evil"
    model.mkdir()
    (model / "a\n::warning::injected").write_bytes(b"x")
    commit_all(action_env.workspace, "evil")
    action_env.event_name = "push"
    action_env.inputs.update({"mode": "sign", "path": "evil", "signing-key": str(keypair[0])})
    result = action_env.run()
    assert result.returncode == 0, result.stdout
    assert not any(a.message == "injected" for a in result.annotations)
    report = json.loads(result.outputs["report"])
    assert report["artifacts"][0]["path"] == "a\n::warning::injected"
