"""``ml-integrity hook NAME SCRIPT [ARGS]`` (hidden): the body of our git hooks.

Runs, in order: the hook that was there before (``NAME.pre-ml-integrity``)
or git-lfs's hook (``git lfs NAME``), then ml-integrity's own check:

- post-checkout / post-merge: every path of HEAD against the signed
  manifest, and files left as pointers because they were refused. Exit 1 when
  anything was refused (git makes ``git checkout`` fail; post-merge's exit
  code is ignored by git, but the lines are shown).
- pre-commit: rebuild ``.ml-integrity/manifest.json`` from every staged
  path and stage it (repositories with a ``.ml-integrity/`` folder).
- pre-push: first, every commit pushed (each ref's new tip) against its
  signed manifest under the configured trust, as a consumer's checkout will
  check it; a stale or missing signature refuses the push (exit 1) before
  anything is uploaded. Then the chained hooks (git-lfs uploads the objects).
  ``git push --no-verify`` skips the hook, as for every git hook.

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
    if name == "pre-push":
        refused = _check_push(git, stdin or b"")
        if refused:
            return refused  # nothing is uploaded for a push that is refused
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


def check_after_clone(git: Git, hook_args: list[str]) -> int:
    """The post-checkout hook's own check, made by ``ml-integrity clone`` in its process
    (its clone-time hook ran only git-lfs's hook: see ``hooks.clone_hook_text``)."""
    return _own_check("post-checkout", hook_args, git)


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
                        f"files; sign it before pushing ({hint_command()} sign-repo --key KEY)",
                        file=sys.stderr,
                    )
                return 0
            if name in ("post-checkout", "post-merge"):
                return _check_head(repo, name, hook_args)
            return 0  # pre-push: checked before the chained hooks (_check_push)
    except Error as err:
        print(f"ml-integrity: {name} hook: {err.diagnostics()}", file=sys.stderr)
        return int(err.exit_code)


def _check_head(repo: Any, name: str, hook_args: list[str]) -> int:
    from ml_integrity.git.recovery import restore_refused
    from ml_integrity.git.verification import check_tree

    verdict = check_tree(repo, "HEAD", worktree=False, during_checkout=True)
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
    import os

    from ml_integrity.git.gates import take_reported

    # the filter of this git command already said some of them: each refusal once
    said = take_reported(repo, os.getpgrp(), since=_process_start(os.getppid()))
    pointers = verdict.pointers
    for path, reason in sorted(problems.items()):
        ptr = pointers.get(path)
        if path in left and ptr is not None and (path, ptr.oid) in said:
            continue
        state = "left as a pointer" if path in left else restored.get(path, "not verified")
        print(f"ml-integrity: REFUSED {path} ({state}): {reason}", file=sys.stderr)
    from ml_integrity.git.recovery import last_verified_commit

    good = last_verified_commit(repo)
    instead = (
        f"`git checkout {good[:12]}` (the last commit whose content verifies)"
        if good
        else "check out a signed commit"
    )
    print(
        f"ml-integrity: {name}: {len(problems)} path(s) of HEAD are not covered by a valid "
        f"signature (each said above); the refused files are LFS pointers, nothing was lost. "
        f"Recover with `{hint_command()} pull` once the content is signed, or {instead}.",
        file=sys.stderr,
    )
    return 1


_ZERO = "0" * 40


def _check_push(git: Git, updates: bytes) -> int:
    """git's pre-push stdin: ``<local ref> <local sha> <remote ref> <remote sha>`` per
    line. Each new tip must verify under the configured trust (deletions pass)."""
    from ml_integrity.errors import Error
    from ml_integrity.git.repository import Repository
    from ml_integrity.git.verification import check_tree
    from ml_integrity.trust.resolver import TrustRequest, resolve_trust

    tips: dict[str, str] = {}
    for line in updates.decode("utf-8", "replace").splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[1].strip("0"):
            tips.setdefault(fields[1], fields[0])
    if not tips:
        return 0
    try:
        trust = resolve_trust(TrustRequest(), "checkout", repo=git)
        with Repository(git, trust=trust) as repo:
            failed = 0
            for sha, ref in tips.items():
                verdict = check_tree(repo, sha, worktree=False)
                if not verdict.signed or verdict.ok:
                    continue
                failed += 1
                err = verdict.error()
                for path, reason in sorted(verdict.refused.items()):
                    print(f"ml-integrity: REFUSED {path}: {reason}", file=sys.stderr)
                if verdict.problem:
                    print(f"ml-integrity: REFUSED {ref}: {verdict.problem}", file=sys.stderr)
                print(
                    f"ml-integrity: pre-push: not pushing {ref} ({sha[:12]}): {err.message}",
                    file=sys.stderr,
                )
    except Error as err:
        print(f"ml-integrity: pre-push hook: {err.diagnostics()}", file=sys.stderr)
        return int(err.exit_code)
    if not failed:
        return 0
    command = hint_command()
    print(
        "hint: sign the content and commit the signature, then push again: "
        f"`{command} sign-repo --key KEY` and `git commit`; with no trust configured, "
        "`git config ml-integrity.publicKey /path/to/signer.pub` first; to push unsigned "
        "content anyway: `git push --no-verify`",
        file=sys.stderr,
    )
    return 1


def hint_command() -> str:
    """The command a hint printed by a hook should name: ``ml-integrity`` when that is
    what the user's shell runs, else this interpreter (``python -m ml_integrity``).
    Inside the pre-commit framework (``PRE_COMMIT`` set) the console script is on
    the hook's PATH only, never on the user's."""
    import os
    import shlex
    import shutil

    script = shutil.which("ml-integrity")
    if script is not None and not os.environ.get("PRE_COMMIT"):
        here = Path(sys.executable).parent
        if Path(script).resolve().parent == here.resolve() or Path(script).parent == here:
            return "ml-integrity"
    return f"{shlex.quote(sys.executable)} -m ml_integrity"


def _process_start(pid: int) -> float | None:
    """When process ``pid`` (the git command running this hook) started, in seconds
    since the epoch, where the system says it (Linux: ``/proc``); else None."""
    import os

    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/stat", encoding="ascii", errors="replace") as f:
            boot = next(int(x.split()[1]) for x in f if x.startswith("btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK") - 1.0
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def localize(text: str | None) -> str | None:
    """A hint with every `` `ml-integrity ...` `` command spelled as :func:`hint_command`."""
    if text is None:
        return None
    command = hint_command()
    if command == "ml-integrity":
        return text
    return text.replace("`ml-integrity ", f"`{command} ")
