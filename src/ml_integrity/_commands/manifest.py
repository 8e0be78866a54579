"""``ml-integrity manifest``: list what a model folder contains, with digests."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._common import Progress, add_command, add_json_flag
from ._options import add_walk_options

ORDER = 20

_EPILOG = """\
examples:
  ml-integrity manifest models/bert            # table: size, sha256, path
  ml-integrity manifest models/bert --json     # canonical manifest JSON on stdout
  ml-integrity manifest models/bert --output bert.manifest.json

The second run over an unchanged folder reads no file content: a stat cache
(device, inode, size, mtime, ctime) remembers the digests. --rehash ignores it.
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
    parser.add_argument("path", type=Path, metavar="PATH", help="model folder or file")
    parser.add_argument(
        "--output", "-o", type=Path, metavar="FILE", help="write the manifest JSON to FILE"
    )
    add_walk_options(parser)
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from .. import manifest, signing

    ignores = list(args.ignore_path)
    if args.output is not None:
        ignores += signing.bundle_ignores(args.path, args.output)
    with Progress("hashing") as progress:
        m = manifest.build_from_directory(
            args.path,
            allow_symlinks=args.allow_symlinks,
            ignore=ignores,
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
