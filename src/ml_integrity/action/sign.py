"""Sign mode: the manifest of ``HEAD`` (or a model folder), signed and attached to the release.

Keyless with the job's OIDC identity, or with a key (``signing-key``); the
bundle is attached to the release of the tag or release event
(``upload-to-release``), keeping or replacing an existing asset.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ml_integrity import __version__
from ml_integrity.action.inputs import Context, Inputs, inside_workspace, resolve_path
from ml_integrity.action.output import Runner, md, size_text, write_report
from ml_integrity.errors import (
    Error,
    ExitCode,
    UsageError,
)

if TYPE_CHECKING:
    from ml_integrity.core.signing import Signer


# --- sign ---------------------------------------------------------------------------------


def make_signer(ctx: Context, inputs: Inputs) -> tuple[Signer, Callable[[], None]]:
    """The signer the inputs ask for, and a clean-up for any temporary key file."""
    if inputs.signing_key:
        from ml_integrity.trust.keys import KeySigner

        password = ctx.env.get("ML_INTEGRITY_KEY_PASSWORD")
        secret = password.encode() if password else None
        if inputs.signing_key.startswith("-----BEGIN"):
            keyfile = ctx.temp_dir("key") / f"signing-{uuid.uuid4().hex}.pem"
            fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(inputs.signing_key.strip() + "\n")

            def remove() -> None:
                with contextlib.suppress(OSError):
                    keyfile.unlink()

            try:
                return KeySigner(keyfile, password=secret), remove
            except Error:
                remove()
                raise
        key_path = ctx.workspace / Path(inputs.signing_key).expanduser()
        return KeySigner(key_path, password=secret), (lambda: None)
    return _keyless_signer(ctx, inputs), (lambda: None)


def _keyless_signer(ctx: Context, inputs: Inputs) -> Signer:
    if not ctx.env.get("ACTIONS_ID_TOKEN_REQUEST_URL") or not ctx.env.get(
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN"
    ):
        fork = ""
        if ctx.is_pull_request:
            fork = " Pull requests from forks never get an OIDC token: sign on release or push."
        raise UsageError(
            "keyless signing needs the job's OIDC token, and this job has none "
            "(ACTIONS_ID_TOKEN_REQUEST_URL is not set)." + fork,
            hint="add 'permissions: id-token: write' to the job (plus 'contents: write' to "
            "attach the bundle to the release), or sign with a key (signing-key input)",
        )
    from ml_integrity.trust.sigstore_sign import SigstoreSigner

    trust_config = resolve_path(ctx, inputs.trust_config) if inputs.trust_config else None
    if trust_config is not None and inputs.sigstore == "staging":
        raise UsageError("give either sigstore: staging or trust-config")
    return SigstoreSigner(
        staging=inputs.sigstore == "staging", trust_config=trust_config, interactive=False
    )


def _log_index(bundle_text: str) -> str:
    try:
        doc = json.loads(bundle_text)
        entries = doc["verificationMaterial"].get("tlogEntries") or []
        return str(entries[0]["logIndex"]) if entries else ""
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return ""


def run_sign(ctx: Context, inputs: Inputs, runner: Runner) -> int:
    from ml_integrity.core import manifest as mf
    from ml_integrity.core import oms
    from ml_integrity.core.signing import sign as sign_model
    from ml_integrity.core.signing import write_atomic

    signer, cleanup = make_signer(ctx, inputs)
    try:
        name = Path(inputs.path).name if inputs.path else ctx.repository.rsplit("/", 1)[-1]
        name = name or ctx.workspace.name
        bundle = (
            resolve_path(ctx, inputs.bundle)
            if inputs.bundle
            else ctx.temp_dir("out") / f"{name}.sig"
        )
        with runner.group("ml-integrity: sign"):
            if inputs.path:
                target = inside_workspace(ctx, inputs.path, "path")
                # its own temp folder is the Action's to replace (a re-run on the same runner)
                result = sign_model(target, signer, bundle, overwrite=not inputs.bundle)
                manifest = result.manifest
                who = result.signer
            else:
                from ml_integrity.git.manifests import manifest_from_index
                from ml_integrity.git.repository import Repository
                from ml_integrity.git.runner import Git

                with Repository(Git(ctx.workspace)) as repo:
                    tree = manifest_from_index(repo, source="HEAD")  # every path of HEAD
                if not tree.entries:
                    raise UsageError(
                        "HEAD has no files to sign",
                        hint="commit the models first, or sign a folder with the 'path' input",
                    )
                repo_id = f"{ctx.server_url.split('://', 1)[-1].rstrip('/')}/{ctx.repository}"
                manifest = mf.Manifest(
                    tree.entries,
                    repository=repo_id if ctx.repository else None,
                    ignore_paths=tree.ignore_paths,
                )
                statement = oms.build_statement(
                    manifest, model_name=name, ignore_paths=manifest.ignore_paths
                )
                write_atomic(bundle, signer.sign_statement(statement).encode())
                who = signer.describe()
            runner.log(f"ml-integrity: signed {len(manifest.entries)} artifact(s) as {who}")
            runner.log(f"ml-integrity: bundle: {bundle}")
    finally:
        cleanup()
    text = bundle.read_text(encoding="utf-8")
    log_index = _log_index(text)
    runner.set_output("bundle-path", str(bundle))
    runner.set_output("log-index", log_index)
    asset = _upload(ctx, inputs, bundle, runner)
    runner.set_output("asset-url", asset or "")
    doc: dict[str, object] = {
        "ok": True,
        "mode": "sign",
        "version": __version__,
        "target": inputs.path or "repository",
        "signer": who,
        "bundle": str(bundle),
        "log_index": log_index or None,
        "asset_url": asset,
        "artifacts": [e.to_json() for e in manifest.entries],
    }
    write_report(ctx, runner, doc)
    lines = [
        "## ml-integrity: ✅ signed",
        "",
        f"- **Target:** {md(inputs.path or 'repository (Git LFS files of HEAD)')}",
        f"- **Signer:** {md(who)}",
        f"- **Artifacts:** {len(manifest.entries)} ({size_text(manifest.total_size)})",
        f"- **Bundle:** `{md(bundle.name)}`",
    ]
    if log_index:
        lines.append(f"- **Transparency log index:** {log_index}")
    lines.append(f"- **Release asset:** {md(asset) if asset else 'not attached'}")
    runner.add_summary("\n".join(lines))
    return int(ExitCode.OK)


def _upload(ctx: Context, inputs: Inputs, bundle: Path, runner: Runner) -> str | None:
    from ml_integrity.action.github import GitHubClient, Release

    if inputs.upload == "false":
        return None
    tag = inputs.release_tag or ctx.release_tag()
    if tag is None:
        if inputs.upload == "true":
            raise UsageError(
                "upload-to-release is true, but this run is not for a tag or release",
                hint="run on 'release' or on a tag push, or set release-tag",
            )
        runner.log("ml-integrity: not a release or tag: the bundle is not attached anywhere")
        return None
    with GitHubClient(inputs.github_token, ctx.repository, api_url=ctx.api_url) as client:
        release: Release | None = None
        event_release = ctx.event.get("release")
        if (
            ctx.event_name == "release"
            and isinstance(event_release, dict)
            and event_release.get("tag_name") == tag
            and event_release.get("upload_url")
        ):
            # From the event: also finds a draft release, which the API's tag lookup does not.
            release = Release(
                int(event_release["id"]),
                tag,
                str(event_release["upload_url"]).split("{", 1)[0],
                str(event_release.get("html_url", "")),
            )
        else:
            release = client.release_by_tag(tag)
        if release is None:
            message = f"there is no release for tag {tag}: the bundle was not attached"
            if inputs.upload == "true":
                raise UsageError(message, hint="create the release first, then sign")
            runner.annotate("warning", message, title="ml-integrity")
            return None
        result = client.upload_asset(
            release,
            bundle,
            on_existing=inputs.on_existing_asset,  # type: ignore[arg-type]
        )
    runner.log(f"ml-integrity: release {tag}: {bundle.name} {result.action}")
    if result.action == "skipped":
        runner.annotate(
            "notice",
            f"release {tag} already has {bundle.name}; kept it (on-existing-asset: skip)",
            title="ml-integrity",
        )
    return result.asset.url if result.asset else None
