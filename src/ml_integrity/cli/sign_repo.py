"""``ml-integrity sign-repo``: sign the manifest of every staged path."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ml_integrity.cli._common import add_command, add_json_flag, print_json

ORDER = 35

_EPILOG = """\
The manifest lists every staged path: Git LFS files by their pointer's oid
(no file is hashed again: the oid is the sha256 of the file), other files by
the sha256 of their staged content. Top-level .git* files and .github/ are
left out (as model_signing does) and recorded in the signature. Each
signature carries a version one above every earlier one (rollback
protection) and, with --repository, the repository's identity. The result
is an OMS bundle that `model_signing verify` accepts on a checkout. Both
files are written and staged; commit them with the content they cover:

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
        help="sign the manifest of every staged path (.ml-integrity/)",
        description="Write .ml-integrity/manifest.json from every staged path, sign it "
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
    parser.add_argument(
        "--repository",
        metavar="ID",
        help="bind the signature to this repository identity, e.g. github.com/org/models "
        "(verifiers can require it: policy rollback.repository, --repository)",
    )
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import re

    from ml_integrity.cli._trust import make_key_signer
    from ml_integrity.errors import UsageError
    from ml_integrity.git.manifests import sign_index
    from ml_integrity.git.repository import Repository

    if not re.fullmatch(r"[A-Za-z0-9._-]+", args.name) or args.name.startswith("."):
        raise UsageError(f"invalid bundle name {args.name!r}", hint="use letters, digits, . _ -")
    signer = make_key_signer(args.key, args.cert)
    with Repository.discover(keep_index=True) as repo:
        manifest, bundle = sign_index(repo, signer, name=args.name, repository=args.repository)
        rel = bundle.relative_to(repo.root).as_posix()
    if args.json:
        print_json(
            {
                "ok": True,
                "bundle": rel,
                "files": len(manifest.entries),
                "version": manifest.version,
                "repository": manifest.repository,
                "signer": signer.describe(),
            }
        )
    else:
        print(
            f"signed {len(manifest.entries)} file(s), version {manifest.version}: {rel} "
            "(staged, with the manifest)"
        )
    return 0
