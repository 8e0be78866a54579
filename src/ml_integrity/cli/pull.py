"""``ml-integrity pull``: ``git lfs pull``, then verify; also the recovery command."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from ml_integrity.cli._common import Progress, add_command, add_json_flag, print_json

if TYPE_CHECKING:
    from ml_integrity.errors import Error

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
    from ml_integrity.errors import IntegrityError
    from ml_integrity.git.gates import download_refusals, forget_download_refusals
    from ml_integrity.git.lfs import require_git_lfs, run_git_lfs
    from ml_integrity.git.recovery import gate_pointers, prepare_store, restore_refused
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
        restored = list(restore_refused(repo, before, previous))
        gate_pointers(repo, before)  # git lfs pull fills only (path, oid) pairs that verify
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
        agent_refused = download_refusals(repo)  # the transfer agent's: exit 1, not 3
    missing = [p for p in after.left_as_pointer if p not in after.refused]
    error = _failure(after, missing, rc, RECOVER_HINT, agent_refused)
    refused = {**after.refused, **after.rehash_failed}
    if error is not None and error.hint == RECOVER_HINT:
        error.hint = f"{RECOVER_HINT}; or {_instead(trust)}"
    # one line per refusal: the error lists the refused paths (each with its reason)
    for fixed in restored:
        if fixed.path not in refused:
            print(f"ml-integrity: {fixed.path}: {fixed.action}", file=sys.stderr)
    for note in after.notes:
        print(f"ml-integrity: note: {note}", file=sys.stderr)
    for path in missing:
        print(
            f"ml-integrity: MISSING {path}: still an LFS pointer (not downloaded)", file=sys.stderr
        )
    if args.json:
        # exactly one JSON document, on success and on failure
        doc: dict[str, object] = {**after.to_json(), "git_lfs_exit": rc}
        if error is not None:
            doc.update(error.to_json())
        doc["ok"] = error is None
        print_json(doc)
    if error is not None:
        from ml_integrity.cli.main import report_error

        return report_error(error, as_json=False)
    if not args.json:
        print(
            f"OK: {after.describe()} of HEAD verified ({after.verified.source}, "
            f"signed by {', '.join(after.signers) or 'nobody: nothing is signed here'})"
        )
    return 0


def _failure(
    after: Any, missing: list[str], rc: int, recover_hint: str, agent_refused: Any
) -> Error | None:
    """The one failure of a pull (None when everything is verified and checked out)."""
    from ml_integrity.errors import IntegrityError, ToolError

    if not after.ok:
        err: Error = after.error()
        return err
    if rc != 0 and agent_refused:
        return IntegrityError(
            f"the transfer agent refused {len(agent_refused)} LFS object(s); see the reasons above",
            hint="nothing refused was written (the files stay as they were), nothing was lost",
        )
    if missing and rc != 0:
        # every path is signed: git-lfs could not fetch (an object missing on the server,
        # the network), which is operational, not a refusal
        return ToolError(
            f"git lfs pull failed (exit {rc}); {len(missing)} signed LFS file(s) of HEAD "
            "are not checked out",
            hint="see git-lfs's message above; the files stay LFS pointers, nothing was lost",
        )
    if missing:
        return IntegrityError(
            f"{len(missing)} LFS file(s) of HEAD could not be checked out", hint=recover_hint
        )
    if rc != 0:
        return ToolError(f"git lfs pull failed (exit {rc})", hint="see git-lfs's message above")
    return None


def _instead(trust: Any) -> str:
    """Which commit to check out instead: the last one whose content verifies."""
    from ml_integrity.git.recovery import last_verified_commit
    from ml_integrity.git.repository import Repository
    from ml_integrity.git.runner import Git

    with Repository(Git.discover(), trust=trust) as repo:
        good = last_verified_commit(repo)
    if good is None:
        return "check out a signed commit"
    return f"`git checkout {good[:12]}` (the last commit whose content verifies)"
