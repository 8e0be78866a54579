"""Entry point of the GitHub Action (``action.yml``): verify on pull requests, sign releases.

``action.yml`` passes every input to this module as an environment variable
``GHA_ML_INTEGRITY_<INPUT>`` (never by interpolating it into a script), runs
``python -m ml_integrity.action``, and exposes what this module writes to
``$GITHUB_OUTPUT``. Like ``_cli.py`` this module prints, and it is the only
other place that turns errors into exit codes (same contract: 0 verified or
signed, 1 integrity or policy failure, 2 usage or configuration error,
3 operational error).

Modes:

- ``verify`` reads the LFS pointers of ``HEAD`` (nothing is downloaded for
  that), verifies the bundles ``.ml-integrity/*.sig`` against the trust
  given to the Action, and scans the changed artifacts (fetching only the
  LFS objects the scan needs). Trust never comes from what a pull request
  changed: a trust file given by a path inside the repository is read from
  the pull request's *base* commit (see :class:`TrustReader`).
- ``sign`` builds the manifest of ``HEAD``, signs it (keyless with the job's
  OIDC identity, or with a key), and attaches the bundle to the release.

With the ``path`` input both modes work on a model folder or file instead
(an OMS bundle over its files, as ``ml-integrity sign``/``verify`` do).

What the runner gets: a job summary (Markdown), at most 10 ``::error`` and
10 ``::warning`` annotations per step (GitHub's limit; the rest are counted
in the summary), and the outputs ``verified``, ``report``, ``report-path``,
``bundle-path``, ``log-index``, ``asset-url``, ``sarif-path``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from ml_integrity import __version__
from ml_integrity.errors import (
    ConfigError,
    Error,
    ExitCode,
    IntegrityError,
    OperationalError,
    UsageError,
)

if TYPE_CHECKING:
    from ml_integrity.core.signing import Signer
    from ml_integrity.git.runner import Git
    from ml_integrity.scan.scanner import FileReport, ScanPolicy, ScanReport
    from ml_integrity.trust.policy import Policy
    from ml_integrity.trust.resolver import Trust

ENV_PREFIX = "GHA_ML_INTEGRITY_"
MAX_ANNOTATIONS = 10
"""GitHub shows at most 10 annotations of each level per step."""
SUMMARY_LIMIT = 1_000_000
"""``$GITHUB_STEP_SUMMARY`` may hold at most 1 MiB per step; we stay below."""
OUTPUT_LIMIT = 900_000
"""An output value may hold at most 1 MB; a larger report goes only to the file."""
SUMMARY_ROWS = 200
PR_EVENTS = frozenset({"pull_request", "pull_request_target", "pull_request_review"})
ZERO_SHA = "0" * 40

Level = Literal["error", "warning", "notice"]


# --- workflow commands and file commands ---------------------------------------------


def escape_data(value: str) -> str:
    """Escape the message of a workflow command (``::error ...::MESSAGE``)."""
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(value: str) -> str:
    """Escape a property value of a workflow command (``file=``, ``title=``)."""
    return escape_data(value).replace(":", "%3A").replace(",", "%2C")


def one_line(value: str) -> str:
    """``value`` with control characters made visible, for plain log lines.

    Names of files come from the repository under test; a newline in one must
    not start a workflow command of its own.
    """
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in value)


class Runner:
    """What the Action tells the runner: log lines, annotations, outputs, summary."""

    def __init__(self, stdout: IO[str], output_file: Path | None, summary_file: Path | None):
        self.stdout = stdout
        self.output_file = output_file
        self.summary_file = summary_file
        self.shown: dict[str, int] = {"error": 0, "warning": 0, "notice": 0}
        self.dropped: dict[str, int] = {"error": 0, "warning": 0, "notice": 0}
        self.summary: list[str] = []
        self.outputs: dict[str, str] = {}

    def log(self, line: str) -> None:
        self.stdout.write(one_line(line) + "\n")
        self.stdout.flush()

    def annotate(
        self,
        level: Level,
        message: str,
        *,
        file: str | None = None,
        title: str | None = None,
        line: int | None = None,
    ) -> bool:
        """One annotation, if the per-step budget allows; returns whether it was shown."""
        if self.shown[level] >= MAX_ANNOTATIONS:
            self.dropped[level] += 1
            return False
        self.shown[level] += 1
        props = []
        if file:
            props.append(f"file={escape_property(file)}")
            if line is not None:
                props.append(f"line={line}")
        if title:
            props.append(f"title={escape_property(title)}")
        head = f"::{level} {','.join(props)}" if props else f"::{level}"
        self.stdout.write(f"{head}::{escape_data(message)}\n")
        self.stdout.flush()
        return True

    def group(self, title: str) -> contextlib.AbstractContextManager[None]:
        @contextlib.contextmanager
        def grouped() -> Iterator[None]:
            self.stdout.write(f"::group::{escape_data(title)}\n")
            self.stdout.flush()
            try:
                yield
            finally:
                self.stdout.write("::endgroup::\n")
                self.stdout.flush()

        return grouped()

    def set_output(self, name: str, value: str) -> None:
        self.outputs[name] = value

    def add_summary(self, markdown: str) -> None:
        self.summary.append(markdown)

    def flush(self) -> None:
        """Write the outputs and the job summary (once, at the end)."""
        if self.output_file is not None and self.outputs:
            text = "".join(format_output(k, v) for k, v in self.outputs.items())
            with open(self.output_file, "a", encoding="utf-8") as f:
                f.write(text)
        if self.summary_file is not None and self.summary:
            text = "\n".join(self.summary) + "\n"
            if len(text.encode("utf-8")) > SUMMARY_LIMIT:
                cut = text.encode("utf-8")[: SUMMARY_LIMIT - 200].decode("utf-8", "ignore")
                text = cut + "\n\n_(summary truncated: GitHub allows 1 MiB; see the report)_\n"
            with open(self.summary_file, "a", encoding="utf-8") as f:
                f.write(text)


def format_output(name: str, value: str) -> str:
    """One ``$GITHUB_OUTPUT`` record; multi-line values use a random heredoc delimiter."""
    if "\n" not in value and "\r" not in value:
        return f"{name}={value}\n"
    while True:
        delimiter = f"ghadelimiter_{uuid.uuid4().hex}"
        if delimiter not in value:
            return f"{name}<<{delimiter}\n{value}\n{delimiter}\n"


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


def _git_auth_env(ctx: Context, token: str) -> dict[str, str]:
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


# --- the report --------------------------------------------------------------------------


@dataclass
class Row:
    """One artifact in the verdict: its signature status and its scan result."""

    path: str
    size: int | None = None
    sha256: str | None = None
    signature: str = "-"
    """``ok``, ``refused`` or ``-`` (not checked)."""
    reason: str | None = None
    scan: str | None = None
    findings: list[dict[str, object]] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "signature": self.signature,
            "reason": self.reason,
            "scan": self.scan,
            "findings": self.findings,
        }


@dataclass
class VerifyReport:
    target: str
    trust: list[str]
    rows: dict[str, Row] = field(default_factory=dict)
    signers: list[str] = field(default_factory=list)
    signature_error: str | None = None
    scan_scope: str = "none"
    scan: ScanReport | None = None
    notes: list[str] = field(default_factory=list)

    def row(self, path: str) -> Row:
        if path not in self.rows:
            self.rows[path] = Row(path)
        return self.rows[path]

    @property
    def signatures_ok(self) -> bool:
        return self.signature_error is None and all(
            r.signature != "refused" for r in self.rows.values()
        )

    @property
    def scan_ok(self) -> bool:
        return self.scan is None or self.scan.ok

    @property
    def ok(self) -> bool:
        return self.signatures_ok and self.scan_ok

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "mode": "verify",
            "version": __version__,
            "target": self.target,
            "trust": self.trust,
            "signers": self.signers,
            "signature_error": self.signature_error,
            "scan_scope": self.scan_scope,
            "scan_policy": self.scan.policy.to_json() if self.scan else None,
            "notes": self.notes,
            "artifacts": [self.rows[p].to_json() for p in sorted(self.rows)],
        }


# --- verify ------------------------------------------------------------------------------


def run_verify(ctx: Context, inputs: Inputs, runner: Runner) -> int:
    from ml_integrity.git.runner import Git

    git = Git(ctx.workspace)
    auth = _git_auth_env(ctx, inputs.github_token)
    base = ctx.base_sha()
    if base is not None and not ensure_commit(git, base, auth):
        if ctx.is_pull_request:
            raise OperationalError(
                f"the base commit {base[:12]} of this pull request is not available",
                hint="check out with 'fetch-depth: 0' (actions/checkout), or let the job "
                "reach the repository (github-token input)",
            )
        runner.log(f"ml-integrity: the commit before this push ({base[:12]}) is not available")
        base = None
    trust = resolve_action_trust(inputs, TrustReader(ctx, git, base))
    policy = trust.policy
    assert policy is not None
    target = inputs.path or "repository"
    report = VerifyReport(target, describe_trust(policy))
    report.notes.extend(policy.warnings)

    with runner.group("ml-integrity: signatures"):
        if inputs.path:
            scope = _verify_path(ctx, inputs, trust, report, runner)
        else:
            scope = _verify_repository(git, trust, report, runner)
            _apply_policy_to_repository(policy, report)

    if inputs.scan != "none":
        with runner.group("ml-integrity: scan"):
            _scan(ctx, git, inputs, policy, base, scope, report, runner, auth)

    _report_verify(ctx, inputs, report, runner)
    return int(ExitCode.OK) if report.ok else int(ExitCode.FAILURE)


def _inside(ctx: Context, value: str, what: str) -> Path:
    path = (ctx.workspace / value).resolve()
    try:
        path.relative_to(ctx.workspace)
    except ValueError:
        raise UsageError(
            f"{what} {value!r} is outside the workspace",
            hint="give a path relative to the repository root",
        ) from None
    return path


def _resolve(ctx: Context, value: str) -> Path:
    """A path input: relative to the repository root, or absolute (e.g. under RUNNER_TEMP)."""
    return (ctx.workspace / Path(value).expanduser()).resolve()


def _rel(ctx: Context, path: Path) -> str:
    try:
        return path.resolve().relative_to(ctx.workspace).as_posix()
    except ValueError:
        return str(path)


def _apply_policy_to_repository(policy: Policy, report: VerifyReport) -> None:
    """What the policy says beyond "who may sign", for the repository's LFS files.

    Each bundle is checked against the policy's signers; a requirement across
    several bundles (all-of, k-of-n) and rollback rules need the per-bundle
    verdicts of the model verifier, which repository mode does not have yet:
    refuse such a policy rather than pass without enforcing it.
    """
    from ml_integrity.git.repository import check_policy_supported

    check_policy_supported(
        policy,
        hint="verify a model folder with the 'path' and 'bundle' inputs, or drop the rule",
    )
    for row in report.rows.values():
        if row.sha256 and row.sha256 in policy.deny_digests:
            row.signature = "refused"
            row.reason = f"sha256:{row.sha256[:12]}... is denied by the policy"


def _verify_path(
    ctx: Context,
    inputs: Inputs,
    trust: Trust,
    report: VerifyReport,
    runner: Runner,
) -> list[str]:
    """Verify a model folder or file against its bundle; returns the artifact paths."""
    from ml_integrity.core import manifest
    from ml_integrity.trust.verdict import verify

    target = _inside(ctx, inputs.path, "path")
    if not inputs.bundle:
        raise UsageError(
            "input bundle: required with 'path' in verify mode",
            hint="set 'bundle' to the signature file of the model (for example model.sig)",
        )
    bundle = _resolve(ctx, inputs.bundle)
    prefix = _rel(ctx, target)
    try:
        assert trust.policy is not None
        result = verify(target, [bundle], trust.policy, trust.backends())
    except IntegrityError as exc:
        report.signature_error = exc.message
        for kind, names in (
            ("changed", exc.diff.changed),
            ("missing", exc.diff.missing),
            ("extra", exc.diff.extra),
        ):
            for p in names:
                row = report.row(p if target.is_file() else f"{prefix}/{p}")
                row.signature = "refused"
                row.reason = (
                    exc.diff.notes.get(p)
                    or {
                        "changed": "content differs from what was signed",
                        "missing": "signed, but missing",
                        "extra": "not signed",
                    }[kind]
                )
        if not exc.diff:
            report.row(_rel(ctx, bundle)).signature = "refused"
            report.row(_rel(ctx, bundle)).reason = exc.message
        runner.log(f"ml-integrity: FAILED: {exc.message}")
    else:
        report.signers = list(dict.fromkeys(b.signer for b in result.bundles))
        report.notes.extend(result.notes)
        for name, digest in result.signed.resources.items():
            shown = prefix if target.is_file() else f"{prefix}/{name}"
            report.row(shown).sha256 = digest
        runner.log(f"ml-integrity: {prefix}: {result.files} file(s) signed by {result.signer}")
        for line in result.lines()[1:]:
            runner.log(f"ml-integrity: {line}")
    if target.is_file():
        paths = [prefix]
    else:
        inner = _rel(ctx, bundle)
        ignore = [inner[len(prefix) + 1 :]] if inner.startswith(prefix + "/") else []
        paths = [f"{prefix}/{p}" for p in manifest.list_files(target, ignore=ignore)]
    for p in paths:
        row = report.row(p)
        f = ctx.workspace / p
        if row.signature == "-" and report.signature_error is None:
            row.signature = "ok"
        with contextlib.suppress(OSError):
            row.size = f.stat().st_size
    return paths


def _verify_repository(
    git: Git,
    trust: Trust,
    report: VerifyReport,
    runner: Runner,
) -> list[str]:
    """Pointer-level check of HEAD (no download); returns the LFS paths."""
    from ml_integrity.git.repository import Repository

    # The Action's trust has no fingerprint (SigstoreRoots.cacheable), so nothing
    # is cached: a checkout reused by a self-hosted runner never answers from a
    # verification made with other trust.
    with Repository(git, trust=trust) as repo:
        verdict = repo.check_tree("HEAD")
    report.signers = sorted(set(verdict.verified.signers))
    report.signature_error = verdict.verified.error if verdict.pointers else None
    report.notes.extend(verdict.verified.warnings)
    for path, pointer in sorted(verdict.pointers.items()):
        row = report.row(path)
        row.size = pointer.size
        row.sha256 = pointer.oid
        reason = verdict.refused.get(path)
        row.signature = "refused" if reason else "ok"
        row.reason = reason
    if not verdict.pointers:
        report.notes.append("HEAD has no Git LFS files: there was nothing to verify")
        runner.log("ml-integrity: HEAD has no Git LFS files")
    else:
        runner.log(
            f"ml-integrity: {len(verdict.pointers)} LFS file(s), "
            f"{len(verdict.refused)} refused; signed by {', '.join(report.signers) or 'nobody'}"
        )
    return sorted(verdict.pointers)


# --- scan ------------------------------------------------------------------------------


def changed_paths(git: Git, base: str) -> list[str]:
    """Files added or modified between ``base`` and HEAD (deletions left out)."""
    raw = git.run(["diff", "--name-only", "-z", "--no-renames", "--diff-filter=d", base, "HEAD"])
    return sorted(p.decode("utf-8", "surrogateescape") for p in raw.stdout.split(b"\0") if p)


def _scan(
    ctx: Context,
    git: Git,
    inputs: Inputs,
    policy: Policy,
    base: str | None,
    scope: list[str],
    report: VerifyReport,
    runner: Runner,
    auth: Mapping[str, str],
) -> None:
    from ml_integrity.scan import scanner as scanning

    if inputs.scan == "changed" and base is not None:
        changed = changed_paths(git, base)
        if inputs.path:
            in_scope = set(scope)
            targets = [p for p in changed if p in in_scope]
        else:
            targets = [p for p in changed if not p.startswith(".ml-integrity/")]
        report.scan_scope = f"changed since {base[:12]}"
    else:
        if inputs.path:
            targets = list(scope)
        else:
            tree = git.ls_tree("HEAD")
            targets = [t.path for t in tree if t.type == "blob" and t.mode != "120000"]
            targets = [p for p in targets if not p.startswith(".ml-integrity/")]
        report.scan_scope = "all files" if inputs.scan == "all" else "all files (no base commit)"
    files = []
    for p in targets:
        f = ctx.workspace / p
        if f.is_symlink() or not f.is_file():
            continue
        files.append(p)
    _fetch_lfs_objects(ctx, git, files, runner, auth)
    if policy.source.kind == "action input":  # a policy file: its pickle rule applies
        pickle_mode: str = policy.pickle.mode
        allowed = policy.pickle.allowed_digests | policy.allow_digests
    else:
        pickle_mode, allowed = inputs.pickle, frozenset()
    scan_policy: ScanPolicy = scanning.ScanPolicy(
        pickle=pickle_mode,  # type: ignore[arg-type]
        allowed_sha256=frozenset(d.removeprefix("sha256:") for d in allowed),
        lfs_missing=inputs.lfs_missing,  # type: ignore[arg-type]
    )
    scan_report = scanning.ScanReport(scan_policy)
    for p in files:
        fr = scanning.scan_file(ctx.workspace / p, scan_policy, display=p)
        scan_report.files.append(fr)
        _record_scan(report.row(p), fr)
    report.scan = scan_report
    bad = [f for f in scan_report.files if not f.ok]
    runner.log(
        f"ml-integrity: scanned {len(files)} file(s) ({report.scan_scope}): "
        f"{len(bad)} unsafe or not scanned"
    )


def _record_scan(row: Row, fr: FileReport) -> None:
    row.scan = fr.verdict
    row.findings = [f.to_json() for f in fr.findings]


def _fetch_lfs_objects(
    ctx: Context, git: Git, files: list[str], runner: Runner, auth: Mapping[str, str]
) -> None:
    """Download the LFS objects of ``files`` that are pointers here (only those)."""
    from ml_integrity.core.lfs import LfsStore, parse_pointer
    from ml_integrity.git.lfs import run_git_lfs

    store = LfsStore.for_git_dir(git.common_dir, git.config_get("lfs.storage"))
    wanted = []
    for p in files:
        f = ctx.workspace / p
        try:
            if f.stat().st_size >= 1024:
                continue
            pointer = parse_pointer(f.read_bytes())
        except OSError:
            continue
        if pointer is not None and not store.has(pointer.oid):
            wanted.append(p)
    if not wanted:
        return
    runner.log(f"ml-integrity: fetching {len(wanted)} LFS object(s) to scan")
    head = git.rev_parse("HEAD") or "HEAD"
    env = {**git.env(), **auth}
    for start in range(0, len(wanted), 100):
        include = ",".join(_lfs_include(p) for p in wanted[start : start + 100])
        proc = run_git_lfs(
            ["fetch", "origin", head, "--include", include, "--exclude", ""],
            cwd=git.root,
            env=env,
        )
        if proc.returncode != 0:
            runner.log(f"ml-integrity: git lfs fetch failed (exit {proc.returncode})")


def _lfs_include(path: str) -> str:
    """A git-lfs --include pattern that matches exactly ``path``."""
    out = []
    for ch in path:
        if ch in "\\*?[]":
            out.append("\\" + ch)
        elif ch == ",":
            out.append("?")  # the list separator of --include; '?' matches it
        else:
            out.append(ch)
    return "/" + "".join(out)


# --- verify: what the runner shows ---------------------------------------------------------


def _report_verify(ctx: Context, inputs: Inputs, report: VerifyReport, runner: Runner) -> None:
    for row in sorted(report.rows.values(), key=lambda r: r.path):
        if row.signature == "refused":
            runner.annotate(
                "error",
                f"{row.reason or 'not covered by a valid signature'}",
                file=None if os.path.isabs(row.path) else row.path,
                title="ml-integrity: not signed by a trusted signer",
            )
        for finding in row.findings:
            member = f" (in {finding['member']})" if finding.get("member") else ""
            runner.annotate(
                "error",
                f"{finding['message']}{member}. Hint: {finding['hint']}",
                file=row.path,
                title=f"ml-integrity: {finding['kind']}",
            )
    if report.signature_error and not any(r.signature == "refused" for r in report.rows.values()):
        runner.annotate("error", report.signature_error, title="ml-integrity: verification failed")
    for note in report.notes:
        runner.annotate("warning", note, title="ml-integrity")

    doc = report.to_json()
    if inputs.sarif_file and report.scan is not None:
        sarif_path = _resolve(ctx, inputs.sarif_file)
        _write_sarif(sarif_path, report)
        runner.set_output("sarif-path", _rel(ctx, sarif_path))
        doc["sarif"] = _rel(ctx, sarif_path)
    _write_report(ctx, runner, doc)
    runner.set_output("verified", "true" if report.ok else "false")
    runner.add_summary(_verify_summary(report, runner))


def _write_report(ctx: Context, runner: Runner, doc: dict[str, object]) -> None:
    from ml_integrity.core.signing import write_atomic

    text = json.dumps(doc, indent=2, sort_keys=True)
    path = ctx.temp_dir("out") / "report.json"
    write_atomic(path, text.encode() + b"\n")
    runner.set_output("report-path", str(path))
    if len(text.encode()) > OUTPUT_LIMIT:
        short = {k: v for k, v in doc.items() if k != "artifacts"}
        short["artifacts_truncated"] = True
        text = json.dumps(short, indent=2, sort_keys=True)
    runner.set_output("report", text)


def _write_sarif(path: Path, report: VerifyReport) -> None:
    from ml_integrity.core.signing import write_atomic
    from ml_integrity.scan.sarif import sarif

    assert report.scan is not None
    doc: dict[str, Any] = sarif(report.scan)
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    rules.append(
        {
            "id": "not-signed",
            "name": "NotSigned",
            "shortDescription": {"text": "Artifact not covered by a trusted signature"},
            "fullDescription": {
                "text": "The artifact's digest is not in a manifest signed by a signer the "
                "workflow trusts: it was changed, added without signing, or signed by "
                "someone else."
            },
            "help": {"text": "Sign the change (ml-integrity sign-repo) or revert it."},
            "defaultConfiguration": {"level": "error"},
            "properties": {"tags": ["security", "supply-chain"]},
        }
    )
    index = len(rules) - 1
    for row in sorted(report.rows.values(), key=lambda r: r.path):
        if row.signature != "refused":
            continue
        run["results"].append(
            {
                "ruleId": "not-signed",
                "ruleIndex": index,
                "level": "error",
                "message": {"text": row.reason or "not covered by a trusted signature"},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {"uri": _uri(row.path), "uriBaseId": "%SRCROOT%"},
                            "region": {"startLine": 1},
                        }
                    }
                ],
                "partialFingerprints": {"mlIntegrityNotSigned/v1": f"{row.path}:{row.sha256}"},
            }
        )
    write_atomic(path, (json.dumps(doc, indent=2) + "\n").encode())


def _uri(path: str) -> str:
    import urllib.parse

    return urllib.parse.quote(path)


def _md(text: str) -> str:
    """``text`` safe inside a Markdown table cell."""
    return one_line(text).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _size(n: int | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


def _verify_summary(report: VerifyReport, runner: Runner) -> str:
    verdict = "✅ verified" if report.ok else "❌ not verified"
    lines = [f"## ml-integrity: {verdict}", ""]
    lines.append(f"- **Target:** {_md(report.target)}")
    lines.append(
        "- **Signed by:** " + (", ".join(_md(s) for s in report.signers) or "no trusted signer")
    )
    lines.append(
        "- **Trust (from the Action's inputs):** " + "; ".join(_md(t) for t in report.trust)
    )
    if report.signature_error:
        lines.append(f"- **Signature check:** {_md(report.signature_error)}")
    if report.scan is not None:
        pol = report.scan.policy
        bad = sum(1 for f in report.scan.files if not f.ok)
        lines.append(
            f"- **Scan:** {len(report.scan.files)} file(s), {report.scan_scope}; "
            f"{bad} unsafe or not scanned (pickle policy: {pol.pickle})"
        )
    else:
        lines.append("- **Scan:** off")
    lines.extend(f"- **Note:** {_md(note)}" for note in report.notes)
    dropped = runner.dropped["error"] + runner.dropped["warning"]
    if dropped:
        lines.append(
            f"- **{dropped} more problem(s) are not annotated** (GitHub shows at most "
            f"{MAX_ANNOTATIONS} errors and {MAX_ANNOTATIONS} warnings per step); "
            "all are listed below."
        )
    lines += [
        "",
        "| Artifact | Size | SHA-256 | Signature | Scan | Details |",
        "|---|---|---|---|---|---|",
    ]
    rows = sorted(
        report.rows.values(), key=lambda r: (r.signature != "refused" and not r.findings, r.path)
    )
    for row in rows[:SUMMARY_ROWS]:
        sig = {"ok": "✅ signed", "refused": "❌ refused", "-": ""}.get(
            row.signature, row.signature
        )
        scan = {"safe": "✅ safe", "unsafe": "❌ unsafe", "not-scanned": "❌ not scanned"}.get(
            row.scan or "", row.scan or ""
        )
        details = row.reason or ""
        if row.findings:
            details = "; ".join(str(f["message"]) for f in row.findings[:3])
        sha = f"`{row.sha256[:12]}`" if row.sha256 else ""
        lines.append(
            f"| `{_md(row.path)}` | {_size(row.size)} | {sha} | {sig} | {scan} | {_md(details)} |"
        )
    if len(rows) > SUMMARY_ROWS:
        lines.append(f"\n_{len(rows) - SUMMARY_ROWS} more artifact(s) in the report output._")
    return "\n".join(lines)


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

    trust_config = _resolve(ctx, inputs.trust_config) if inputs.trust_config else None
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
            _resolve(ctx, inputs.bundle) if inputs.bundle else ctx.temp_dir("out") / f"{name}.sig"
        )
        with runner.group("ml-integrity: sign"):
            if inputs.path:
                target = _inside(ctx, inputs.path, "path")
                result = sign_model(target, signer, bundle)
                manifest = result.manifest
                who = result.signer
            else:
                from ml_integrity.git.repository import Repository
                from ml_integrity.git.runner import Git

                with Repository(Git(ctx.workspace)) as repo:
                    pointers = repo.lfs_pointers("HEAD")
                if not pointers:
                    raise UsageError(
                        "HEAD has no Git LFS files: nothing to sign",
                        hint="track the models with 'git lfs track', or sign a folder with "
                        "the 'path' input",
                    )
                repo_id = f"{ctx.server_url.split('://', 1)[-1].rstrip('/')}/{ctx.repository}"
                manifest = mf.Manifest(
                    tuple(mf.Entry(p, ptr.size, ptr.oid) for p, ptr in pointers.items()),
                    repository=repo_id if ctx.repository else None,
                )
                statement = oms.build_statement(manifest, model_name=name)
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
    _write_report(ctx, runner, doc)
    lines = [
        "## ml-integrity: ✅ signed",
        "",
        f"- **Target:** {_md(inputs.path or 'repository (Git LFS files of HEAD)')}",
        f"- **Signer:** {_md(who)}",
        f"- **Artifacts:** {len(manifest.entries)} ({_size(manifest.total_size)})",
        f"- **Bundle:** `{_md(bundle.name)}`",
    ]
    if log_index:
        lines.append(f"- **Transparency log index:** {log_index}")
    lines.append(f"- **Release asset:** {_md(asset) if asset else 'not attached'}")
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


# --- main ---------------------------------------------------------------------------------


def _error_title(err: Error) -> str:
    if err.exit_code == ExitCode.FAILURE:
        return "ml-integrity: integrity failure"
    if err.exit_code == ExitCode.USAGE:
        return "ml-integrity: configuration error"
    return "ml-integrity: could not run"


def main(environ: Mapping[str, str] | None = None, stdout: IO[str] | None = None) -> int:
    """Run the Action; return the exit code of the contract."""
    env = os.environ if environ is None else environ
    out = stdout or sys.stdout
    output_file = env.get("GITHUB_OUTPUT")
    summary_file = env.get("GITHUB_STEP_SUMMARY")
    runner = Runner(
        out,
        Path(output_file) if output_file else None,
        Path(summary_file) if summary_file else None,
    )
    mode = env.get(ENV_PREFIX + "MODE", "verify").strip().lower() or "verify"
    try:
        ctx = Context.from_env(env)
        inputs = Inputs.from_env(env)
        with _chdir(ctx.workspace):
            if inputs.mode == "verify":
                return run_verify(ctx, inputs, runner)
            return run_sign(ctx, inputs, runner)
    except Error as err:
        file = err.path if err.path and not os.path.isabs(err.path) else None
        message = err.message + (f" (hint: {err.hint})" if err.hint else "")
        runner.annotate("error", message, file=file, title=_error_title(err))
        for line in err.details():
            runner.log(f"  {line}")
        runner.add_summary(
            f"## ml-integrity: ❌ {_error_title(err).split(': ', 1)[1]}\n\n"
            + "<br>".join(_md(line) for line in err.diagnostics().splitlines())
        )
        if mode == "verify":
            runner.set_output("verified", "false")
        return int(err.exit_code)
    except KeyboardInterrupt:
        runner.annotate("error", "interrupted", title="ml-integrity")
        return int(ExitCode.INTERRUPTED)
    except Exception as exc:  # a bug: say so, fail, and keep the job's log useful
        runner.annotate(
            "error",
            f"internal error: {type(exc).__name__}: {exc}. This is a bug in ml-integrity; "
            "please report it at https://github.com/ml-integrity/ml-integrity/issues",
            title="ml-integrity: internal error",
        )
        if mode == "verify":
            runner.set_output("verified", "false")
        return int(ExitCode.OPERATIONAL)
    finally:
        try:
            runner.flush()
        except OSError as exc:
            out.write(
                f"::error::ml-integrity: cannot write the step outputs: {escape_data(str(exc))}\n"
            )


@contextlib.contextmanager
def _chdir(path: Path) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)
