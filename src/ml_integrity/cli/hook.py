"""``ml-integrity hook NAME SCRIPT [ARGS]`` (hidden): the body of our git hooks.

Runs, in order: the hook that was there before (``NAME.pre-ml-integrity``)
or git-lfs's hook (``git lfs NAME``), then ml-integrity's own check:

- post-checkout / post-merge: every path of HEAD against the signed
  manifest, and files left as pointers because they were refused. Exit 1 when
  anything was refused (git makes ``git checkout`` fail; post-merge's exit
  code is ignored by git, but the lines are shown).
- pre-commit: rebuild ``.ml-integrity/manifest.json`` from every staged
  path and stage it (repositories with a ``.ml-integrity/`` folder).
- pre-push: nothing more than the chained hooks (git-lfs uploads the objects).

The exit code is the first non-zero one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ml_integrity.git.runner import Git


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "hook",
        description="run one ml-integrity git hook (installed by 'ml-integrity install').",
    )
    parser.add_argument("name")
    parser.add_argument("script", type=Path)
    parser.add_argument("hook_args", nargs=argparse.REMAINDER)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ml_integrity.git import hooks
    from ml_integrity.git.runner import Git, run_script

    name: str = args.name
    hook_args: list[str] = list(args.hook_args)
    hooks_dir = args.script.resolve().parent
    stdin = sys.stdin.buffer.read() if name == "pre-push" else None
    git = Git.discover(keep_index=True)
    codes: list[int] = []
    previous = hooks_dir / (name + hooks.PREVIOUS_SUFFIX)
    prev_text = ""
    if previous.is_file():
        prev_text = previous.read_text(errors="replace")
        codes.append(run_script([str(previous), *hook_args], cwd=git.root, stdin=stdin))
    if name in hooks.LFS_HOOKS and "git lfs" not in prev_text and "git-lfs" not in prev_text:
        codes.append(_git_lfs_hook(name, hook_args, git.root, stdin))
    codes.append(_own_check(name, hook_args, git))
    return next((c for c in codes if c != 0), 0)


def _git_lfs_hook(name: str, hook_args: list[str], root: Path, stdin: bytes | None) -> int:
    import shutil

    from ml_integrity.git.lfs import INSTALL_HINT
    from ml_integrity.git.runner import run_script

    if shutil.which("git-lfs") is None:
        print(
            f"ml-integrity: this repository uses Git LFS but git-lfs was not found "
            f"(the {name} hook cannot run)\nhint: {INSTALL_HINT}",
            file=sys.stderr,
        )
        return 2
    return run_script(["git", "lfs", name, *hook_args], cwd=root, stdin=stdin)


def _own_check(name: str, hook_args: list[str], git: Git) -> int:
    from ml_integrity.errors import Error
    from ml_integrity.git.manifests import update_manifest
    from ml_integrity.git.repository import META_DIR, Repository
    from ml_integrity.trust.resolver import TrustRequest, resolve_trust

    try:
        # only the checkout hooks verify; their trust is the git config's
        checks = name in ("post-checkout", "post-merge")
        trust = resolve_trust(TrustRequest(), "checkout", repo=git) if checks else None
        with Repository(git, trust=trust) as repo:
            if name == "pre-commit":
                if (repo.root / META_DIR).is_dir() and update_manifest(repo):
                    print(
                        f"ml-integrity: updated {META_DIR}/manifest.json from the staged "
                        "files; sign it before pushing (ml-integrity sign-repo --key KEY)",
                        file=sys.stderr,
                    )
                return 0
            if name in ("post-checkout", "post-merge"):
                return _check_head(repo, name, hook_args)
            return 0
    except Error as err:
        print(f"ml-integrity: {name} hook: {err.diagnostics()}", file=sys.stderr)
        return int(err.exit_code)


def _check_head(repo: Any, name: str, hook_args: list[str]) -> int:
    from ml_integrity.git.recovery import restore_refused
    from ml_integrity.git.verification import check_tree

    verdict = check_tree(repo, "HEAD", worktree=False)
    if not verdict.signed:
        return 0
    previous: str | None = None
    if name == "post-checkout" and hook_args and hook_args[0].strip("0"):
        previous = hook_args[0]
    elif name == "post-merge" and repo.git.rev_parse("ORIG_HEAD^{tree}"):
        previous = "ORIG_HEAD"
    restored = {r.path: r.action for r in restore_refused(repo, verdict, previous)}
    quarantined = set(repo.store.quarantined())
    problems = dict(verdict.refused)
    if verdict.problem:
        problems["(the whole tree)"] = verdict.problem
    suspects = {
        p: ptr for p, ptr in verdict.pointers.items() if p in problems or ptr.oid in quarantined
    }
    left = set(repo.pointer_files(suspects))
    for path in sorted(left - set(problems)):
        problems[path] = "its local object was corrupt and is in .git/lfs/quarantine/"
    if not problems:
        return 0
    for path, reason in sorted(problems.items()):
        state = "left as a pointer" if path in left else restored.get(path, "not verified")
        print(f"ml-integrity: REFUSED {path} ({state}): {reason}", file=sys.stderr)
    from ml_integrity.git.repository import RECOVER_COMMAND

    print(
        f"ml-integrity: {name}: {len(problems)} path(s) of HEAD are not covered by a valid "
        f"signature (see above). Recover with `{RECOVER_COMMAND}` once the "
        "content is signed, or check out a signed commit.",
        file=sys.stderr,
    )
    return 1
