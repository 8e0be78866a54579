"""Verify mode: the repository's LFS files (or a model folder) against the trust inputs.

The LFS pointers of ``HEAD`` are read (nothing is downloaded for that), the
bundles ``.ml-integrity/*.sig`` are verified against the Action's trust, and
the changed artifacts are scanned (fetching only the LFS objects the scan
needs). With the ``path`` input a model folder or file is verified against
its bundle instead, as ``ml-integrity verify`` does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ml_integrity.action.inputs import (
    Context,
    Inputs,
    TrustReader,
    describe_trust,
    ensure_commit,
    git_auth_env,
    inside_workspace,
    relative,
    resolve_action_trust,
    resolve_path,
)
from ml_integrity.action.output import Row, Runner, VerifyReport, report_verify
from ml_integrity.errors import (
    ExitCode,
    IntegrityError,
    OperationalError,
    UsageError,
)

if TYPE_CHECKING:
    from ml_integrity.git.runner import Git
    from ml_integrity.scan.scanner import FileReport, ScanPolicy
    from ml_integrity.trust.policy import Policy
    from ml_integrity.trust.resolver import Trust


# --- verify ------------------------------------------------------------------------------


def run_verify(ctx: Context, inputs: Inputs, runner: Runner) -> int:
    from ml_integrity.git.runner import Git

    git = Git(ctx.workspace)
    auth = git_auth_env(ctx, inputs.github_token)
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

    report_verify(ctx, inputs, report, runner)
    return int(ExitCode.OK) if report.ok else int(ExitCode.FAILURE)


def _apply_policy_to_repository(policy: Policy, report: VerifyReport) -> None:
    """Denied digests refuse their rows (the tree's verdict applied the policy already:
    deny and allow lists, must-sign patterns, rollback, all-of / k-of-n)."""
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

    target = inside_workspace(ctx, inputs.path, "path")
    if not inputs.bundle:
        raise UsageError(
            "input bundle: required with 'path' in verify mode",
            hint="set 'bundle' to the signature file of the model (for example model.sig)",
        )
    bundle = resolve_path(ctx, inputs.bundle)
    prefix = relative(ctx, target)
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
            report.row(relative(ctx, bundle)).signature = "refused"
            report.row(relative(ctx, bundle)).reason = exc.message
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
        inner = relative(ctx, bundle)
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
    """Every path of HEAD against its signatures (no download); returns the LFS paths."""
    from ml_integrity.git.repository import Repository
    from ml_integrity.git.verification import check_tree

    # The Action's trust has no fingerprint (SigstoreRoots.cacheable), so nothing
    # is cached: a checkout reused by a self-hosted runner never answers from a
    # verification made with other trust.
    with Repository(git, trust=trust) as repo:
        # the one rule: every path of HEAD, with the policy's rules
        verdict = check_tree(repo, "HEAD", policy=trust.policy)
    report.signers = verdict.signers
    report.signature_error = verdict.verified.error if verdict.signed else None
    report.notes.extend(verdict.notes)
    if verdict.problem:
        report.notes.append(f"HEAD is refused: {verdict.problem}")
    for path in sorted({*verdict.files, *verdict.refused}):
        row = report.row(path)
        f = verdict.files.get(path)
        if f is not None:
            row.size = f.size
            row.sha256 = f.digest
        reason = verdict.refused.get(path) or verdict.problem
        row.signature = "refused" if reason else "ok"
        row.reason = reason
    if not verdict.signed:
        report.notes.append("HEAD has no Git LFS files and no signature: nothing to verify")
        runner.log("ml-integrity: HEAD has no Git LFS files and no signature")
    else:
        runner.log(
            f"ml-integrity: {verdict.describe()}, "
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
