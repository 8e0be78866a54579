"""``ml-integrity scan``: refuse code-carrying artifacts (pickles, Keras Lambda layers)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ml_integrity.cli import _env
from ml_integrity.cli._common import Progress, add_command, add_json_flag, print_json

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ml_integrity.core.lfs import LfsStore
    from ml_integrity.git.repository import Repository
    from ml_integrity.scan.scanner import FileReport, ScanPolicy, ScanReport
    from ml_integrity.trust.policy import PickleRule

ORDER = 50

_DESCRIPTION = """\
Scan model and data files for content that runs code when loaded: pickles
(PyTorch .pt/.bin/.ckpt, legacy PyTorch, joblib, numpy object arrays, nested
pickles), Keras Lambda layers and foreign modules, inside zip/tar archives and
gzip/bz2/xz/lzma/zlib/lz4 wrappers. Fail closed: a file is safe only when it
validates as a format that cannot carry code (safetensors, npy, text, images,
GGUF, ONNX, ...), whatever its name; anything else is unsafe (block) or not
scanned (allowlist). Pickles are judged by CPython's own unpicklers run inert
in a limited child process; nothing is imported or called.

Policy: --pickle block (default) refuses every pickle; --pickle allowlist
accepts pickles that only rebuild torch tensors, numpy arrays and plain
containers. A reviewed file can be allowed by its sha256 (--allow-sha256).
A Git LFS pointer is scanned through the local LFS object; when the object is
missing the file is not scanned (so not safe) unless --lfs-missing skip.
Anything that cannot be parsed or scanned is reported, never passed.

--staged scans what the next commit holds, not the work tree: the staged
blob of each file (a staged LFS pointer through its object in the local LFS
store), from the index git is committing (GIT_INDEX_FILE is honoured). PATHs
are then files or folders as staged; without PATH, every file the commit adds
or changes. This is the pre-commit hook ml-integrity-scan."""

_EPILOG = """\
examples:
  ml-integrity scan models/                      # every file under models/
  ml-integrity scan --pickle allowlist model.pt  # accept plain torch checkpoints
  ml-integrity scan --allow-sha256 3f2a...e1 --allow-sha256 9b0c...77 legacy/ (repeatable)
  ml-integrity scan --json . > scan.json
  ml-integrity scan --sarif scan.sarif .         # for github/codeql-action/upload-sarif
  ml-integrity scan --staged                     # what `git commit` would record now

exit codes: 0 every file safe, 1 a file is unsafe or could not be scanned,
2 usage error, 3 operational error."""


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "scan",
        help="refuse pickles and other code-carrying artifacts",
        description=_DESCRIPTION,
        epilog=_EPILOG,
    )
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="files or directories (at least one without --staged)",
    )
    parser.add_argument(
        "--staged",
        action="store_true",
        help="scan the staged content (the index), not the work tree; without PATH, every "
        "file the next commit adds or changes",
    )
    parser.add_argument(
        "--only-paths",
        action="store_true",
        help="with --staged: scan exactly the PATHs, none when none are given (the pre-commit "
        "hook); the PATHs must follow `--`, so that a file named like an option is a file",
    )
    parser.add_argument(
        "--pickle",
        choices=("block", "allowlist"),
        default=_env.get("ML_INTEGRITY_PICKLE"),
        help="block every pickle (default), or allow allowlisted torch/numpy/container "
        "pickles (env: ML_INTEGRITY_PICKLE); overrides the policy's pickle rule",
    )
    parser.add_argument(
        "--policy",
        type=Path,
        metavar="FILE",
        help="a trust policy (YAML) whose 'pickle' rule (mode, allowed digests) applies",
    )
    parser.add_argument(
        "--allow-sha256",
        action="append",
        default=[],
        metavar="HEX",
        help="sha256 of a reviewed file that is allowed whatever it contains (repeatable)",
    )
    parser.add_argument(
        "--lfs-missing",
        choices=("fail", "skip"),
        default="fail",
        help="an LFS pointer whose object is not present: fail (default) or skip",
    )
    parser.add_argument(
        "--sarif", metavar="FILE", type=Path, help="also write a SARIF 2.1.0 report to FILE"
    )
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ml_integrity.scan import scanner as scanning

    pickle_rule = None
    if args.policy is not None:
        from ml_integrity.trust.policy_source import load_policy

        pickle_rule = load_policy(args.policy, "command line").pickle
    if args.only_paths:
        from ml_integrity.cli.check_staged import require_separator
        from ml_integrity.errors import UsageError

        if not args.staged:
            raise UsageError("--only-paths needs --staged")
        require_separator(args)
    policy = scan_policy(args, pickle_rule)
    with Progress("scanning") as progress:
        if args.staged and args.only_paths and not args.paths:
            from ml_integrity.scan.scanner import ScanReport

            report = ScanReport(policy)  # pre-commit passed no file: nothing to scan
        elif args.staged:
            report = _scan_staged(args.paths, policy, progress)
        elif not args.paths:
            from ml_integrity.errors import UsageError

            raise UsageError(
                "give the files or folders to scan (or --staged for what is staged)",
                hint="ml-integrity scan models/",
            )
        else:
            report = scanning.scan_paths(
                args.paths, policy, progress=progress, lfs_object=lfs_object_lookup()
            )
    if args.sarif is not None:
        from ml_integrity.core.signing import write_atomic
        from ml_integrity.scan.sarif import sarif

        write_atomic(args.sarif, (json.dumps(sarif(report), indent=2) + "\n").encode("utf-8"))
    if args.json:
        print_json(report.to_json())
    print_report(report, getattr(args, "verbose", 0), lines=not args.json)
    return 0 if report.ok else 1


def scan_policy(args: argparse.Namespace, rule: PickleRule | None = None) -> ScanPolicy:
    """The scanner's policy: the trust policy's pickle rule, then --pickle, --allow-sha256."""
    from ml_integrity.scan.scanner import ScanPolicy

    mode: Literal["block", "allowlist"] = "block"
    allowed = {h.lower() for h in args.allow_sha256}
    if rule is not None:
        mode = rule.mode
        allowed |= set(rule.allowed_digests)
    if args.pickle is not None:
        mode = "allowlist" if args.pickle == "allowlist" else "block"
    return ScanPolicy(pickle=mode, allowed_sha256=frozenset(allowed), lfs_missing=args.lfs_missing)


def lfs_object_lookup() -> Callable[[Path, str], Path | None]:
    """Where the object of the LFS pointer at a path is, as git-lfs finds it: the local
    store of the repository that holds the file (``lfs.storage`` honoured, worktrees
    share the common store); None when it is not there or the file is in no repository.
    Git runs only for pointers, once per folder (and is imported only then)."""
    stores: dict[Path, LfsStore | None] = {}

    def lookup(path: Path, oid: str) -> Path | None:
        from ml_integrity.core.lfs import LfsStore
        from ml_integrity.errors import UsageError
        from ml_integrity.git.runner import Git

        folder = Path(os.path.abspath(path)).parent
        if folder not in stores:
            try:
                git = Git.discover(folder)
            except UsageError:
                stores[folder] = None
            else:
                stores[folder] = LfsStore.for_git_dir(git.common_dir, git.config_get("lfs.storage"))
        store = stores[folder]
        if store is None:
            return None
        obj = store.object_path(oid)
        return obj if obj.is_file() else None

    return lookup


def print_report(report: ScanReport, verbose: int, *, lines: bool = True) -> None:
    """One line per file that is not safe (stdout), a summary (stderr)."""
    if lines:
        for f in report.files:
            line = _human(f, verbose)
            if line:
                print(line)
    counts = {v: sum(1 for f in report.files if f.verdict == v) for v in _ORDER}
    summary = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    print(
        f"ml-integrity scan: {len(report.files)} files: {summary or 'nothing to scan'} "
        f"(policy: pickle={report.policy.pickle})",
        file=sys.stderr,
    )


def _scan_staged(
    paths: list[str], policy: ScanPolicy, progress: Callable[[int, int], None]
) -> ScanReport:
    from ml_integrity.git.repository import Repository

    with Repository.discover(keep_index=True) as repo:
        return scan_staged_paths(repo, paths, policy, progress)


def scan_staged_paths(
    repo: Repository,
    paths: Sequence[str],
    policy: ScanPolicy,
    progress: Callable[[int, int], None] | None = None,
) -> ScanReport:
    """Scan the staged content of PATHs (command-line paths), or of the staged changes."""
    from ml_integrity.git.staged import scan_staged, staged_entries

    rel = [repo_path(p, repo.root) for p in paths]
    return scan_staged(repo, staged_entries(repo.git, rel), policy, progress=progress)


def repo_path(path: str, root: Path) -> str:
    """A PATH of the command line (relative to the current directory) as an index path."""
    from ml_integrity.errors import UsageError

    # lexically first (a symbolic link inside the repository stays a path of it)
    for candidate in (Path(os.path.abspath(path)), Path(os.path.realpath(path))):
        for base in (root, root.resolve()):
            try:
                rel = candidate.relative_to(base)
            except ValueError:
                continue
            return rel.as_posix() if rel.parts else "."
    raise UsageError(
        f"{path} is outside the repository {root}", path=path, hint="scan it without --staged"
    )


_ORDER = ("safe", "allowed", "skipped", "unsafe", "not-scanned")


def _human(f: FileReport, verbose: int) -> str:
    if f.verdict == "safe":
        return f"{f.path}: ok ({f.format})" if verbose else ""
    if f.verdict in ("allowed", "skipped"):
        return f"{f.path}: {f.verdict}: {f.note}"
    first = f.findings[0]
    where = f" in {first.member}" if first.member else ""
    more = f" (+{len(f.findings) - 1} more)" if len(f.findings) > 1 else ""
    lines = [f"{f.path}: {f.verdict.upper()}: {first.message}{where}{more}; hint: {first.hint}"]
    if verbose:
        lines += [
            f"  {x.kind}: {x.message}" + (f" in {x.member}" if x.member else "")
            for x in f.findings[1:]
        ]
    return "\n".join(lines)
