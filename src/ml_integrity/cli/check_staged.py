"""``ml-integrity check-staged``: the three pre-commit checks in one process.

``scan --staged``, ``manifest --staged --check`` and ``verify --staged``
share one repository listing and one interpreter start-up here: the
``ml-integrity`` pre-commit hook (the single hooks remain for those who
want only some of the checks).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from ml_integrity.cli._common import add_command, add_json_flag, print_json
from ml_integrity.cli._options import add_key_trust_options
from ml_integrity.cli._trust import add_verify_options

if TYPE_CHECKING:
    from ml_integrity.git.repository import Repository
    from ml_integrity.trust.resolver import Trust

ORDER = 36
CHECKS = ("scan", "manifest", "signed")

_EPILOG = """\
examples:
  ml-integrity check-staged                      everything, before `git commit`
  ml-integrity check-staged a.pt models/        scan these (as staged), check the rest
  ml-integrity check-staged --skip signed        no signature check (unsigned repositories)
  ml-integrity check-staged --policy ~/trust.yaml

The checks, on the index git is committing (GIT_INDEX_FILE is honoured):
  scan      the staged content of the files the commit adds or changes (or of
            the PATHs): pickles and other code-carrying artifacts are refused
            (as `ml-integrity scan --staged`)
  manifest  .ml-integrity/manifest.json lists exactly the staged LFS files
            (as `ml-integrity manifest --staged --check`)
  signed    every staged LFS file is covered by a valid staged signature, verified
            offline, with trust from --key/--cert-chain/--policy or git config
            (as `ml-integrity verify --staged`)

Every failure is reported; exit 0 when all pass, else the highest exit code
(1 integrity, 2 usage or configuration, 3 operational)."""


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "check-staged",
        help="scan, manifest and signature checks of the staged content (pre-commit)",
        description="Check what the next commit holds, in one process: the scanner on the "
        "staged files, the manifest against the staged LFS files, and the staged "
        "signatures. This is the pre-commit hook 'ml-integrity'.",
        epilog=_EPILOG,
    )
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="files or folders to scan, as staged (default: every file the commit adds or changes)",
    )
    parser.add_argument(
        "--only-paths",
        action="store_true",
        help="scan exactly the PATHs given, none when none are given (the pre-commit hook "
        "passes the staged files its filters selected); the PATHs must follow `--`, so that "
        "a file named like an option is a file",
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=CHECKS,
        help="leave a check out (repeatable)",
    )
    scan = parser.add_argument_group("scan")
    scan.add_argument(
        "--pickle",
        choices=("block", "allowlist"),
        default=None,
        help="block every pickle (default; or the policy's rule), or allow allowlisted ones",
    )
    scan.add_argument(
        "--allow-sha256",
        action="append",
        default=[],
        metavar="HEX",
        help="sha256 of a reviewed file that is allowed whatever it contains (repeatable)",
    )
    scan.add_argument(
        "--lfs-missing",
        choices=("fail", "skip"),
        default="fail",
        help="a staged LFS pointer whose object is not in the local store: fail or skip",
    )
    add_key_trust_options(parser, "signature trust (as for verify --staged)")
    add_verify_options(parser)
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ml_integrity.cli._trust import trust_request
    from ml_integrity.cli.main import report_error
    from ml_integrity.cli.verify import check_signatures, signatures_json
    from ml_integrity.errors import Error
    from ml_integrity.git.repository import Repository
    from ml_integrity.git.runner import Git
    from ml_integrity.trust.resolver import resolve_trust

    if args.only_paths:
        require_separator(args)
    checks = [c for c in CHECKS if c not in args.skip]
    git = Git.discover(keep_index=True)
    codes: dict[str, int] = {}
    report: dict[str, Any] = {}

    def failed(check: str, err: Error) -> None:
        from ml_integrity.cli.hook import localize

        # a hint names a command that works where the hook runs (pre-commit's own venv)
        err.hint = localize(err.hint)
        codes[check] = int(err.exit_code)
        report[check] = {"ok": False, **err.to_json()}
        if not args.json:
            report_error(err, as_json=False)

    trust: Trust | None = None
    if "signed" in checks or args.policy is not None:
        try:
            # a commit hook never waits for the network (TUF refresh)
            trust = resolve_trust(trust_request(args), "repository", repo=git).offline()
        except Error as err:
            failed("signed", err)
    with Repository(git, trust=trust) as repo:
        if "scan" in checks:
            try:
                codes["scan"] = _scan(args, repo, trust, report)
            except Error as err:
                failed("scan", err)
        if "manifest" in checks:
            from ml_integrity.git.staged import manifest_status

            try:
                status = manifest_status(repo)
                if not status.ok:
                    raise status.error()
                codes["manifest"] = 0
                report["manifest"] = status.to_json()
            except Error as err:
                failed("manifest", err)
        if "signed" in checks and trust is not None:
            from ml_integrity.errors import IntegrityError
            from ml_integrity.git.staged import without_trust

            try:
                verdict = check_signatures(repo, trust, staged=True)
                codes["signed"] = 0
                report["signed"] = signatures_json(verdict, trust, staged=True)
            except IntegrityError as err:
                untrusted = trust.policy is None and not trust.git_config()
                failed("signed", without_trust(err) if untrusted else err)
            except Error as err:
                failed("signed", err)
    code = max(codes.values(), default=0)
    if args.json:
        print_json({"ok": code == 0, "checks": checks, **report})
    elif code == 0:
        print(
            f"ml-integrity: staged content OK ({', '.join(checks) or 'no checks'})", file=sys.stderr
        )
    return code


def require_separator(args: argparse.Namespace) -> None:
    """With ``--only-paths`` (the pre-commit hooks), file names must come after ``--``:
    a staged file named ``--skip=scan`` is then a file, never an option."""
    from ml_integrity.errors import UsageError

    if "--" not in getattr(args, "argv", ["--"]):
        raise UsageError(
            "--only-paths needs the file names after `--`",
            hint='end the hook\'s `args:` in .pre-commit-config.yaml with "--" (the default '
            'args of the ml-integrity hooks are ["--"])',
        )


def _scan(
    args: argparse.Namespace, repo: Repository, trust: Trust | None, report: dict[str, Any]
) -> int:
    from ml_integrity.cli.scan import print_report, scan_policy, scan_staged_paths

    rule = trust.policy.pickle if trust is not None and trust.policy is not None else None
    policy = scan_policy(args, rule)
    if args.only_paths and not args.paths:
        from ml_integrity.scan.scanner import ScanReport

        result = ScanReport(policy)  # pre-commit passed no file: nothing to scan
    else:
        result = scan_staged_paths(repo, args.paths, policy)
    report["scan"] = result.to_json()
    if not args.json:
        print_report(result, getattr(args, "verbose", 0))
    return 0 if result.ok else 1
