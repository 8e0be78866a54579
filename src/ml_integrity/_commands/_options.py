"""Options shared by commands that walk and hash a model folder."""

from __future__ import annotations

import argparse
import os


def _workers(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def add_walk_options(parser: argparse.ArgumentParser, *, symlinks: bool = True) -> None:
    group = parser.add_argument_group("files")
    group.add_argument(
        "--ignore-path",
        action="append",
        default=[],
        metavar="PATH",
        help="relative path to leave out (a folder covers its contents); repeatable. "
        ".git, .gitattributes, .github and .gitignore are always left out",
    )
    if symlinks:
        group.add_argument(
            "--allow-symlinks",
            action="store_true",
            help="follow symbolic links inside the model (refused by default)",
        )
    group.add_argument(
        "--workers",
        type=_workers,
        default=int(os.environ.get("ML_INTEGRITY_WORKERS", "0")) or None,
        metavar="N",
        help="hashing threads (default: number of CPUs; env: ML_INTEGRITY_WORKERS)",
    )
    group.add_argument(
        "--rehash",
        action="store_true",
        help="hash every file again, ignoring the stat cache",
    )
