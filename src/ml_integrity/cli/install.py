"""``ml-integrity install`` / ``uninstall``: hook ml-integrity into Git and Git LFS."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ml_integrity.cli._common import add_command, add_json_flag, print_json

ORDER = 60

_INSTALL_EPILOG = """\
what it sets (in the repository's own config, or the global one with --global):
  filter.lfs.process            ml-integrity's filter, in front of git-lfs's
                                (.gitattributes keeps filter=lfs)
  lfs.standalonetransferagent   ml-integrity's download gate for git lfs pull/fetch
  hooks                         post-checkout, post-merge, pre-push, pre-commit;
                                a hook already there keeps running, and so does
                                git-lfs's own (git lfs <hook>)

Trust comes from your git config, never from the repository:
  git config ml-integrity.publicKey /path/to/signer.pub

examples:
  ml-integrity install                 this repository
  ml-integrity install --strict        refused files abort the checkout
  ml-integrity install --global        every clone on this machine (hooks via
                                       init.templateDir)
  ml-integrity uninstall               put everything back as it was

Running 'git lfs install' afterwards keeps ml-integrity working (it reports
that the hooks already exist). Do not run 'git lfs install --force'.
"""


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "install",
        help="verify Git LFS content on clone, checkout and pull",
        description="Configure the filter wrapper, the LFS transfer agent and the hooks "
        "so that every checkout and download of LFS content is verified against the "
        "signed manifest.",
        epilog=_INSTALL_EPILOG,
    )
    parser.add_argument(
        "--global",
        dest="scope",
        action="store_const",
        const="global",
        default="local",
        help="configure git globally (every repository and new clone of this user)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        default=None,
        help="abort a checkout on any refused file (default: keep the pointer, fail loudly)",
    )
    add_json_flag(parser)
    parser.set_defaults(handler=run_install)

    un = add_command(
        subparsers,
        "uninstall",
        help="undo 'ml-integrity install' exactly",
        description="Restore the git config values and hooks that were there before "
        "'ml-integrity install'.",
        epilog="examples:\n  ml-integrity uninstall\n  ml-integrity uninstall --global\n",
    )
    un.add_argument(
        "--global",
        dest="scope",
        action="store_const",
        const="global",
        default="local",
        help="undo a global install",
    )
    add_json_flag(un)
    un.set_defaults(handler=run_uninstall)


def _git_for(scope: str) -> Any:
    from pathlib import Path

    from ml_integrity.git.runner import Git

    if scope == "global":
        try:
            return Git.discover()
        except Exception:
            return Git(Path.home())
    return Git.discover()


def run_install(args: argparse.Namespace) -> int:
    from ml_integrity.git import hooks

    report = hooks.install(_git_for(args.scope), scope=args.scope, strict=args.strict)
    if args.json:
        print_json({"ok": True, **report.to_json()})
        return 0
    where = "globally" if args.scope == "global" else "in this repository"
    print(f"ml-integrity installed {where}")
    for name, state in report.hooks.items():
        print(f"  hook {name}: {state}")
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def run_uninstall(args: argparse.Namespace) -> int:
    from ml_integrity.git import hooks

    report = hooks.uninstall(_git_for(args.scope), scope=args.scope)
    if args.json:
        print_json({"ok": True, **report.to_json()})
        return 0
    for name, state in report.hooks.items():
        print(f"  hook {name}: {state}")
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    if report.config or report.hooks:
        print("ml-integrity uninstalled: git config and hooks are as they were before")
    return 0
