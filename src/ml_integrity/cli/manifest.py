"""``ml-integrity manifest``: list what a model folder contains, with digests."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ml_integrity.cli._common import Progress, add_command, add_json_flag, print_json
from ml_integrity.cli._options import add_engine_options, add_walk_options

ORDER = 20

_EPILOG = """\
examples:
  ml-integrity manifest models/bert            # table: size, sha256, path
  ml-integrity manifest models/bert --json     # canonical manifest JSON on stdout
  ml-integrity manifest models/bert --output bert.manifest.json
  ml-integrity manifest data/ --output data.manifest.json --engine dask --workers 8
  ml-integrity manifest data/ -o data.manifest.json --engine dask --scheduler tcp://head:8786

A folder with --output or --json is walked, hashed and written as a stream:
memory stays flat however many files it holds. --engine dask hashes on a Dask
cluster (a local one of --workers processes without --scheduler); the manifest
is byte for byte the one the default engine writes.

The second run over an unchanged folder reads no large file again: a stat
cache (device, inode, size, mtime, ctime) remembers the digests. Streamed
manifests read files up to 256 KiB again (that costs about what a cache lookup
does, and keeps the cache small). --rehash ignores the cache.

In a git repository, --staged works on the manifest of every staged path
(.ml-integrity/manifest.json; LFS files by their pointers' oids, other files
by the sha256 of their staged content; top-level .git* files and .github/
are left out and recorded; GIT_INDEX_FILE is honoured):
  ml-integrity manifest --staged                print it
  ml-integrity manifest --staged --check        exit 1 when the staged manifest is stale
                                                (the pre-commit hook ml-integrity-manifest)
  ml-integrity manifest --staged --write        rewrite and stage it (the fix)
"""


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "manifest",
        help="print or write the manifest of a folder",
        description="Hash every file of a model folder (or one file) into a manifest: "
        "path, size, sha256 and content format.",
        epilog=_EPILOG,
    )
    parser.add_argument("path", type=Path, nargs="?", metavar="PATH", help="model folder or file")
    staged = parser.add_argument_group("the staged files of a git repository")
    staged.add_argument(
        "--staged",
        action="store_true",
        help="the manifest of every staged path (.ml-integrity/manifest.json), not a folder",
    )
    what = staged.add_mutually_exclusive_group()
    what.add_argument(
        "--check",
        action="store_true",
        help="with --staged: exit 1 unless the staged manifest lists exactly the staged "
        "files (path, size, sha256)",
    )
    what.add_argument(
        "--write",
        action="store_true",
        help="with --staged: write .ml-integrity/manifest.json from the index and stage it",
    )
    parser.add_argument(
        "--output", "-o", type=Path, metavar="FILE", help="write the manifest JSON to FILE"
    )
    add_walk_options(parser)
    add_engine_options(parser)
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ml_integrity.errors import UsageError

    if args.staged:
        if args.path is not None or args.output is not None:
            raise UsageError("--staged works on the repository's index: give no PATH or --output")
        return run_staged(args)
    if args.check or args.write:
        raise UsageError(f"{'--check' if args.check else '--write'} needs --staged")
    if args.path is None:
        raise UsageError("give the model folder or file (or --staged)")
    from ml_integrity.core import manifest, signing

    ignores = signing.resolve_ignore_paths(args.path, args.ignore_path)
    if args.output is not None:
        ignores += signing.bundle_ignores(args.path, args.output)
    if args.path.is_dir() and (args.output or args.json or args.engine != "threads"):
        return run_stream(args, ignores)
    with Progress("hashing") as progress:
        m = manifest.build_from_directory(
            args.path,
            allow_symlinks=args.allow_symlinks,
            ignore=ignores,
            default_ignores=manifest.DEFAULT_IGNORES if args.ignore_git_paths else (),
            workers=args.workers,
            rehash=args.rehash,
            progress=progress,
        )
    data = m.to_json()
    if args.output is not None:
        signing.write_atomic(args.output, data)
        print(f"wrote {args.output}: {len(m.entries)} files, {m.total_size:,} bytes")
    elif args.json:
        print(data.decode("utf-8"), end="")
    else:
        for e in m.entries:
            fmt = e.format or "-"
            print(f"{e.sha256}  {e.size:>14,}  {fmt:<12} {e.path}")
        print(f"{len(m.entries)} files, {m.total_size:,} bytes")
    return 0


def run_stream(args: argparse.Namespace, ignores: list[str]) -> int:
    """A folder's manifest written as a stream (bounded memory), by the chosen engine."""
    import sys
    import tempfile

    from ml_integrity.cli._options import make_engine
    from ml_integrity.core import manifest, streaming

    engine = make_engine(args)
    walk = {"allow_symlinks": args.allow_symlinks, "ignore": ignores}
    if args.output is not None:
        files, size = streaming.build_to_path(args.path, engine, args.output, **walk)
        print(f"wrote {args.output}: {files} files, {size:,} bytes")
        return 0
    with tempfile.TemporaryDirectory(prefix="ml-integrity-") as tmp:
        out = Path(tmp) / "manifest.json"
        files, size = streaming.build_to_path(args.path, engine, out, **walk)
        if args.json:
            with open(out, "rb") as f:
                while chunk := f.read(1 << 20):
                    sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
            return 0
        m = manifest.Manifest.from_json(out.read_bytes(), source=str(out))
    for e in m.entries:
        print(f"{e.sha256}  {e.size:>14,}  {e.format or '-':<12} {e.path}")
    print(f"{files} files, {size:,} bytes")
    return 0


def run_staged(args: argparse.Namespace) -> int:
    import sys

    from ml_integrity.git.manifests import manifest_from_index, update_manifest
    from ml_integrity.git.repository import MANIFEST_PATH, Repository
    from ml_integrity.git.staged import manifest_status

    with Repository.discover(keep_index=True) as repo:
        if args.check:
            status = manifest_status(repo)
            if not status.ok:
                raise status.error()
            if args.json:
                print_json(status.to_json())
            else:
                print(
                    f"{MANIFEST_PATH} matches the {status.files} staged file(s)",
                    file=sys.stderr,
                )
            return 0
        if args.write:
            changed = update_manifest(repo)
            files = len(manifest_from_index(repo).entries)
            if args.json:
                print_json(
                    {"ok": True, "manifest": MANIFEST_PATH, "files": files, "changed": changed}
                )
            elif changed:
                print(f"wrote and staged {MANIFEST_PATH} ({files} file(s))")
            else:
                print(f"{MANIFEST_PATH} is up to date ({files} file(s))")
            return 0
        m = manifest_from_index(repo)
    if args.json:
        print(m.to_json().decode("utf-8"), end="")
    else:
        for e in m.entries:
            print(f"{e.sha256}  {e.size:>14,}  {e.path}")
        print(f"{len(m.entries)} files, {m.total_size:,} bytes")
    return 0
