"""Options shared by several commands: walking and hashing a model folder, key-based trust."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ml_integrity.cli import _env

if TYPE_CHECKING:
    from ml_integrity.core.streaming import Engine


def positive_int(value: str) -> int:
    """An argparse ``type``: an integer of at least 1."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def add_walk_options(parser: argparse.ArgumentParser) -> None:
    """The options that say which files of a model count (the same on manifest, sign, verify)."""
    group = parser.add_argument_group("files")
    group.add_argument(
        "--ignore-path",
        action="append",
        default=[],
        metavar="PATH",
        help="path to leave out, relative to the model or absolute inside it (a folder "
        "covers its contents); repeatable",
    )
    group.add_argument(
        "--ignore-git-paths",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="leave out the top-level .git, .gitattributes, .github and .gitignore, as "
        "model_signing does (default: on; when verifying, git paths the bundle signs are "
        "always checked)",
    )
    group.add_argument(
        "--allow-symlinks",
        action="store_true",
        help="follow symbolic links inside the model (refused by default; a link out of "
        "the model or into a cycle is always refused); a bundle signed with it records "
        "allow_symlinks, as model_signing does, and its verifiers follow the links",
    )
    group.add_argument(
        "--workers",
        type=positive_int,
        default=_env.workers(),
        metavar="N",
        help="hashing threads, and helper processes for many small files (default: number "
        "of CPUs; env: ML_INTEGRITY_WORKERS); with --engine dask and no --scheduler, the "
        "local Dask worker processes",
    )
    group.add_argument(
        "--rehash",
        action="store_true",
        help="hash every file again, ignoring the stat cache",
    )


def add_key_trust_options(parser: argparse.ArgumentParser, title: str) -> None:
    """--key and --cert-chain: the key-based trust of verify and check-staged."""
    trust = parser.add_argument_group(title)
    trust.add_argument("--key", type=Path, metavar="PUB", help="the signer's public key (PEM)")
    trust.add_argument(
        "--cert-chain",
        action="append",
        default=[],
        type=Path,
        metavar="CA",
        help="trusted root certificate(s) (PEM) for certificate-method bundles; repeatable",
    )


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """--engine and --scheduler: who hashes (this machine's threads, or a Dask cluster)."""
    group = parser.add_argument_group("hashing engine")
    group.add_argument(
        "--engine",
        choices=("threads", "dask"),
        default="threads",
        help="threads (default): this machine; dask: a Dask distributed cluster, a local one "
        "of --workers processes unless --scheduler is given (pip install 'ml-integrity[dask]'); "
        "sign: folders with any --hash, and the shards of --shard-size",
    )
    group.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="with --engine dask: the address of a running scheduler (tcp://host:8786); "
        "the workers need the files at the same path",
    )


def make_engine(args: argparse.Namespace) -> Engine:
    """The engine the command line asks for (an ``ml_integrity.core.streaming.Engine``)."""
    from ml_integrity.errors import UsageError

    if args.scheduler is not None and args.engine != "dask":
        raise UsageError("--scheduler needs --engine dask")
    from ml_integrity.engines import make_engine as make

    return make(args.engine, workers=args.workers, rehash=args.rehash, scheduler=args.scheduler)
