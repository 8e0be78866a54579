"""The Action's inputs and job context, and the trust made from them.

``action.yml`` passes every input as an environment variable
``GHA_ML_INTEGRITY_<INPUT>`` (never by interpolating it into a script);
:class:`Inputs` reads them, :class:`Context` the ``GITHUB_*`` variables of the
job. Trust never comes from what a pull request changed: a trust file given
by a path inside the workspace is read from the pull request's base commit
(:class:`TrustReader`), and :func:`resolve_action_trust` hands the inputs to
the one trust resolver.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml_integrity.errors import (
    ConfigError,
    OperationalError,
    UsageError,
)

if TYPE_CHECKING:
    from ml_integrity.git.runner import Git
    from ml_integrity.trust.policy import Policy
    from ml_integrity.trust.resolver import Trust


ENV_PREFIX = "GHA_ML_INTEGRITY_"
PR_EVENTS = frozenset({"pull_request", "pull_request_target", "pull_request_review"})
ZERO_SHA = "0" * 40


# --- context and inputs ----------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """The job, as the runner describes it in ``GITHUB_*`` variables."""

    workspace: Path
    event_name: str
    event: Mapping[str, Any]
    ref: str
    sha: str
    repository: str
    api_url: str
    server_url: str
    runner_temp: Path
    env: Mapping[str, str]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Context:
        workspace = env.get("GITHUB_WORKSPACE") or os.getcwd()
        event: Mapping[str, Any] = {}
        event_path = env.get("GITHUB_EVENT_PATH")
        if event_path:
            try:
                loaded = json.loads(Path(event_path).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise OperationalError(
                    f"cannot read the event payload: {exc}", path=event_path
                ) from None
            if isinstance(loaded, dict):
                event = loaded
        temp = env.get("RUNNER_TEMP") or os.path.join(workspace, ".ml-integrity-tmp")
        return cls(
            workspace=Path(workspace).resolve(),
            event_name=env.get("GITHUB_EVENT_NAME", ""),
            event=event,
            ref=env.get("GITHUB_REF", ""),
            sha=env.get("GITHUB_SHA", ""),
            repository=env.get("GITHUB_REPOSITORY", ""),
            api_url=env.get("GITHUB_API_URL", "https://api.github.com"),
            server_url=env.get("GITHUB_SERVER_URL", "https://github.com"),
            runner_temp=Path(temp).resolve(),
            env=env,
        )

    @property
    def is_pull_request(self) -> bool:
        return self.event_name in PR_EVENTS

    def base_sha(self) -> str | None:
        """The commit a pull request or a push starts from (``None`` when unknown)."""
        if self.is_pull_request:
            pr = self.event.get("pull_request")
            sha = pr.get("base", {}).get("sha") if isinstance(pr, dict) else None
            return sha if isinstance(sha, str) and sha else None
        if self.event_name == "push":
            before = self.event.get("before")
            if isinstance(before, str) and before and before != ZERO_SHA:
                return before
        return None

    def release_tag(self) -> str | None:
        release = self.event.get("release")
        if self.event_name == "release" and isinstance(release, dict):
            tag = release.get("tag_name")
            if isinstance(tag, str) and tag:
                return tag
        if self.ref.startswith("refs/tags/"):
            return self.ref[len("refs/tags/") :]
        return None

    def temp_dir(self, name: str) -> Path:
        d = self.runner_temp / "ml-integrity" / name
        d.mkdir(parents=True, exist_ok=True)
        return d


def _choice(env: Mapping[str, str], name: str, choices: Sequence[str], default: str) -> str:
    raw = env.get(ENV_PREFIX + name, "").strip().lower()
    value = raw or default
    if value not in choices:
        input_name = name.lower().replace("_", "-")
        raise UsageError(
            f"input {input_name}: {raw!r} is not one of {', '.join(c for c in choices if c)}",
            hint=f"set '{input_name}' to one of: {', '.join(c for c in choices if c)}",
        )
    return value


def _lines(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if line.strip()]


@dataclass(frozen=True)
class Inputs:
    """The Action's inputs (``action.yml`` documents each one)."""

    mode: str
    path: str
    bundle: str
    public_keys: list[str]
    cert_chain: list[str]
    identity: str
    identity_regex: str
    issuer: str
    github_repository: str
    github_ref: str
    github_workflow: str
    policy: str
    sigstore: str
    trusted_root: str
    trust_config: str
    scan: str
    pickle: str
    lfs_missing: str
    sarif_file: str
    signing_key: str
    upload: str
    on_existing_asset: str
    release_tag: str
    github_token: str = field(repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Inputs:
        def get(name: str) -> str:
            return env.get(ENV_PREFIX + name, "").strip()

        public_key = env.get(ENV_PREFIX + "PUBLIC_KEY", "")
        keys = [public_key.strip()] if "-----BEGIN" in public_key else _lines(public_key)
        return cls(
            mode=_choice(env, "MODE", ("verify", "sign"), "verify"),
            path=get("PATH"),
            bundle=get("BUNDLE"),
            public_keys=keys,
            cert_chain=_lines(env.get(ENV_PREFIX + "CERT_CHAIN", "")),
            identity=get("IDENTITY"),
            identity_regex=get("IDENTITY_REGEX"),
            issuer=get("ISSUER"),
            github_repository=get("GITHUB_REPOSITORY"),
            github_ref=get("GITHUB_REF"),
            github_workflow=get("GITHUB_WORKFLOW"),
            policy=get("POLICY"),
            sigstore=_choice(env, "SIGSTORE", ("production", "staging", ""), ""),
            trusted_root=get("TRUSTED_ROOT"),
            trust_config=get("TRUST_CONFIG"),
            scan=_choice(env, "SCAN", ("changed", "all", "none"), "changed"),
            pickle=_choice(env, "PICKLE", ("block", "allowlist"), "block"),
            lfs_missing=_choice(env, "SCAN_LFS_MISSING", ("fail", "skip"), "fail"),
            sarif_file=get("SARIF_FILE"),
            signing_key=env.get(ENV_PREFIX + "SIGNING_KEY", "").strip()
            or env.get("ML_INTEGRITY_SIGNING_KEY", "").strip(),
            upload=_choice(env, "UPLOAD_TO_RELEASE", ("auto", "true", "false"), "auto"),
            on_existing_asset=_choice(env, "ON_EXISTING_ASSET", ("replace", "skip"), "replace"),
            release_tag=get("RELEASE_TAG"),
            github_token=get("GITHUB_TOKEN"),
        )


# --- git access (through _git.Git) ------------------------------------------------------


def git_auth_env(ctx: Context, token: str) -> dict[str, str]:
    """Environment that lets git and git-lfs fetch from GitHub with the job's token.

    Passed as ``GIT_CONFIG_*`` variables: never on a command line, never in a
    file (``actions/checkout`` with ``persist-credentials: false`` leaves none).
    """
    if not token or not ctx.server_url.startswith("https://"):
        return {}
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": f"http.{ctx.server_url.rstrip('/')}/.extraheader",
        "GIT_CONFIG_VALUE_0": f"AUTHORIZATION: basic {basic}",
    }


def ensure_commit(git: Git, sha: str, auth: Mapping[str, str]) -> bool:
    """Whether ``sha`` is available locally, fetching it from ``origin`` if needed."""
    if git.rev_parse(f"{sha}^{{commit}}"):
        return True
    git.run(["fetch", "--quiet", "--no-tags", "--depth=1", "origin", sha], check=False, env=auth)
    return git.rev_parse(f"{sha}^{{commit}}") is not None


class TrustReader:
    """Reads trust material (keys, certificates, policies) named by the Action's inputs.

    A value that is PEM text is used as is. A path outside the workspace is
    read from disk. A path inside the workspace is read from the pull
    request's base commit on pull-request events, so that a pull request
    cannot bring its own trust: a file it adds does not exist there and is
    refused, a file it changes is read as it was before. On other events
    (push, release) the checked-out file is read.
    """

    def __init__(self, ctx: Context, git: Git | None, base: str | None) -> None:
        self.ctx = ctx
        self.git = git
        self.base = base

    def read(self, value: str, what: str) -> tuple[bytes, str]:
        """The bytes of a trust input and a description of where they came from."""
        if value.lstrip().startswith("-----BEGIN"):
            data = value.strip().encode() + b"\n"
            return data, "PEM text given to the Action"
        path = Path(value).expanduser()
        # Lexically, never through symbolic links: a link the pull request
        # adds inside the workspace must not lead the read outside of it.
        absolute = Path(os.path.normpath(self.ctx.workspace / path))
        try:
            rel = absolute.relative_to(self.ctx.workspace)
        except ValueError:
            return _read_file(absolute, what), str(absolute)
        if self.ctx.is_pull_request:
            if self.git is None or self.base is None:
                raise OperationalError(
                    f"cannot read {what} {rel.as_posix()} from the pull request's base commit",
                    hint="check out with 'fetch-depth: 0' (actions/checkout), or give the "
                    "trust material inline or from outside the workspace",
                )
            blob = self.git.run(["cat-file", "blob", f"{self.base}:{rel.as_posix()}"], check=False)
            if blob.returncode != 0:
                raise ConfigError(
                    f"{what} {rel.as_posix()} does not exist in the base commit "
                    f"{self.base[:12]} of this pull request",
                    path=rel.as_posix(),
                    hint="trust comes from the base branch, never from the pull request: "
                    "merge the key or policy first, in a reviewed pull request of its own",
                )
            return blob.stdout, f"{rel.as_posix()} at base commit {self.base[:12]}"
        return _read_file(absolute, what), rel.as_posix()


def _read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read {what}: {exc.strerror}",
            path=path,
            hint="check the path given to the Action",
        ) from None


# --- trust: the one trust value made from the inputs -------------------------------------


def resolve_action_trust(inputs: Inputs, reader: TrustReader) -> Trust:
    """The Action's trust, from its inputs (never from the repository itself).

    Sigstore's trusted root: the ``trusted-root`` input, else the policy's,
    else the public-good instance named by the ``sigstore`` input (production
    by default), refreshed over TUF.
    """
    from ml_integrity.trust.resolver import SigstoreRoots, TrustRequest, resolve_trust

    request = TrustRequest(
        identity=inputs.identity,
        identity_regex=inputs.identity_regex,
        issuer=inputs.issuer,
        github_repository=inputs.github_repository,
        github_ref=inputs.github_ref,
        github_workflow=inputs.github_workflow,
        keys=tuple(inputs.public_keys),
        cert_chain=tuple(inputs.cert_chain),
        policy=inputs.policy or None,
        roots=SigstoreRoots(
            instance="staging"
            if inputs.sigstore == "staging"
            else "production"
            if inputs.sigstore == "production"
            else ""
        ),
        trusted_root=inputs.trusted_root or None,
    )
    return resolve_trust(request, "action", reader=reader)


def describe_trust(policy: Policy) -> list[str]:
    out = [s.describe() for s in policy.signers]
    if any(s.rule.kind == "sigstore" for s in policy.signers):
        out.append(f"Sigstore instance: {policy.sigstore.describe()}")
    if policy.source.kind != "command line":
        out.insert(0, f"policy {policy.source.describe()}")
    return out


def inside_workspace(ctx: Context, value: str, what: str) -> Path:
    path = (ctx.workspace / value).resolve()
    try:
        path.relative_to(ctx.workspace)
    except ValueError:
        raise UsageError(
            f"{what} {value!r} is outside the workspace",
            hint="give a path relative to the repository root",
        ) from None
    return path


def resolve_path(ctx: Context, value: str) -> Path:
    """A path input: relative to the repository root, or absolute (e.g. under RUNNER_TEMP)."""
    return (ctx.workspace / Path(value).expanduser()).resolve()


def relative(ctx: Context, path: Path) -> str:
    try:
        return path.resolve().relative_to(ctx.workspace).as_posix()
    except ValueError:
        return str(path)
