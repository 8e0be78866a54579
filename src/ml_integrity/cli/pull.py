"""``ml-integrity pull``: ``git lfs pull``, then verify; also the recovery command."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ml_integrity.cli._common import Progress, add_command, add_json_flag, print_json

ORDER = 50

_EPILOG = """\
Steps:
  1. every path of HEAD is checked against its signed manifest
     (signatures verified with the trust in your git config);
  2. objects of refused files are moved out of the local store
     (.git/lfs/quarantine/), and quarantined objects that are now signed
     are moved back;
  3. git lfs pull [ARGS] (the ml-integrity transfer agent refuses any
     object that no verified manifest names);
  4. HEAD is checked again: every file must be signed and checked out.

This is also the recovery command after a refused checkout: once the
content is signed (or you checked out a signed commit), run it again.

examples:
  ml-integrity pull
  ml-integrity pull --rehash           also hash the files and local objects
  ml-integrity pull -- origin --include "models/*"

exit codes: 0 all verified; 1 something was refused; 3 git-lfs failed (for instance an
object missing on the server: the files stay pointers).
"""


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "pull",
        help="git lfs pull, then verify (also: recover refused files)",
        description="Download and check out the LFS files of HEAD, accepting only content "
        "that a verified tree holds at a path signed for it; then verify every file of HEAD.",
        epilog=_EPILOG,
    )
    parser.add_argument(
        "--rehash", action="store_true", help="also hash the work-tree files and local objects"
    )
    parser.add_argument("lfs_args", nargs="*", metavar="ARGS", help="passed to git lfs pull")
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ml_integrity.errors import IntegrityError, ToolError
    from ml_integrity.git.gates import download_refusals, forget_download_refusals
    from ml_integrity.git.lfs import require_git_lfs, run_git_lfs
    from ml_integrity.git.recovery import prepare_store, restore_refused
    from ml_integrity.git.repository import RECOVER_HINT, Repository
    from ml_integrity.git.runner import Git
    from ml_integrity.git.verification import check_tree
    from ml_integrity.trust.resolver import TrustRequest, resolve_trust

    require_git_lfs()
    lfs_args = [a for a in args.lfs_args if a != "--"] if args.lfs_args else []
    git = Git.discover()
    trust = resolve_trust(TrustRequest(), "checkout", repo=git)  # the git config's trust
    with Repository(git, trust=trust) as repo:
        before = check_tree(repo, "HEAD")
        if before.signed and before.verified.error:
            raise IntegrityError(
                f"HEAD cannot be verified: {before.verified.error}",
                hint="check out a signed commit, or sign this one (ml-integrity sign-repo); "
                "trust comes from git config ml-integrity.publicKey",
            )
        moved_back = prepare_store(repo, before)
        previous = "ORIG_HEAD" if repo.git.rev_parse("ORIG_HEAD^{tree}") else None
        for fixed in restore_refused(repo, before, previous):
            print(f"ml-integrity: REFUSED {fixed.path}: {fixed.action}", file=sys.stderr)
        for path in moved_back:
            print(
                f"ml-integrity: {path}: signed now, object moved back from quarantine",
                file=sys.stderr,
            )
        sys.stdout.flush()
        forget_download_refusals(repo)
        rc = run_git_lfs(["pull", *lfs_args], cwd=repo.root).returncode
    with Repository(Git.discover(), trust=trust) as repo, Progress("rehashing") as progress:
        after = check_tree(repo, "HEAD", rehash=args.rehash, progress=progress)
        refused = download_refusals(repo)  # the transfer agent's: exit 1, not 3
    missing = [p for p in after.left_as_pointer if p not in after.refused]
    if args.json:
        print_json(
            {**after.to_json(), "ok": after.ok and not missing and rc == 0, "git_lfs_exit": rc}
        )
    for path, reason in sorted({**after.refused, **after.rehash_failed}.items()):
        print(f"ml-integrity: REFUSED {path}: {reason}", file=sys.stderr)
    if after.problem:
        print(f"ml-integrity: REFUSED HEAD: {after.problem}", file=sys.stderr)
    for note in after.notes:
        print(f"ml-integrity: note: {note}", file=sys.stderr)
    for path in missing:
        print(
            f"ml-integrity: MISSING {path}: still an LFS pointer (not downloaded)", file=sys.stderr
        )
    if not after.ok:
        raise after.error()
    if rc != 0 and refused:
        raise IntegrityError(
            f"the transfer agent refused {len(refused)} LFS object(s); see the reasons above",
            hint="nothing refused was written (the files stay as they were), nothing was lost",
        )
    if missing and rc != 0:
        # every path is signed: git-lfs could not fetch (an object missing on the server,
        # the network), which is operational, not a refusal
        raise ToolError(
            f"git lfs pull failed (exit {rc}); {len(missing)} signed LFS file(s) of HEAD "
            "are not checked out",
            hint="see git-lfs's message above; the files stay LFS pointers, nothing was lost",
        )
    if missing:
        raise IntegrityError(
            f"{len(missing)} LFS file(s) of HEAD could not be checked out",
            hint=RECOVER_HINT,
        )
    if rc != 0:
        raise ToolError(f"git lfs pull failed (exit {rc})", hint="see git-lfs's message above")
    if not args.json:
        print(
            f"OK: {after.describe()} of HEAD verified ({after.verified.source}, "
            f"signed by {', '.join(after.signers) or 'nobody: nothing is signed here'})"
        )
    return 0
