"""``ml-integrity sign-repo``: sign the manifest of the staged LFS files."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ml_integrity.cli._common import add_command, add_json_flag, print_json

ORDER = 35

_EPILOG = """\
The manifest is built from the staged Git LFS pointers (no file is hashed
again: a pointer's oid is the sha256 of the file). Both files are written
and staged; commit them with the content they cover:

  git add models/
  ml-integrity sign-repo --key signer.pem
  git commit -m "model v2, signed"

Verifiers trust the public key through their git config:
  git config ml-integrity.publicKey /path/to/signer.pem.pub

An encrypted private key reads its password from ML_INTEGRITY_KEY_PASSWORD.
"""


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "sign-repo",
        help="sign the manifest of the staged LFS files (.ml-integrity/)",
        description="Write .ml-integrity/manifest.json from the staged LFS pointers, sign it "
        "as an OMS bundle (.ml-integrity/NAME.sig) and stage both.",
        epilog=_EPILOG,
    )
    parser.add_argument("--key", type=Path, metavar="KEY", required=True, help="private key (PEM)")
    parser.add_argument(
        "--cert",
        action="append",
        default=[],
        type=Path,
        metavar="CHAIN",
        help="certificate of KEY, then intermediates (PEM; repeatable)",
    )
    parser.add_argument(
        "--name",
        default="manifest",
        metavar="NAME",
        help="bundle file name under .ml-integrity/ (default: manifest -> manifest.sig)",
    )
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import re

    from ml_integrity.cli._trust import make_key_signer
    from ml_integrity.errors import UsageError
    from ml_integrity.git.repository import Repository

    if not re.fullmatch(r"[A-Za-z0-9._-]+", args.name) or args.name.startswith("."):
        raise UsageError(f"invalid bundle name {args.name!r}", hint="use letters, digits, . _ -")
    signer = make_key_signer(args.key, args.cert)
    with Repository.discover(keep_index=True) as repo:
        manifest, bundle = repo.sign_index(signer, name=args.name)
        rel = bundle.relative_to(repo.root).as_posix()
    if args.json:
        print_json(
            {"ok": True, "bundle": rel, "files": len(manifest.entries), "signer": signer.describe()}
        )
    else:
        print(f"signed {len(manifest.entries)} LFS file(s): {rel} (staged, with the manifest)")
    return 0
