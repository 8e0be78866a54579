"""``ml-integrity keygen``: make a signing key pair for air-gapped signing."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ml_integrity.cli._common import add_command, add_json_flag, print_json

ORDER = 10

_EPILOG = """\
examples:
  ml-integrity keygen --out ~/.keys/models.pem
  ml-integrity keygen --out release.pem --type ec-p384

The private key (mode 0600) is written to OUT and the public key to OUT.pub.
Give OUT.pub to the people who verify. EC keys verify with model_signing too;
Ed25519 bundles verify with ml-integrity only (model_signing 1.1.1 checks EC keys).
"""


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "keygen",
        help="create a signing key pair",
        description="Create a private key and its public key for key-based signing.",
        epilog=_EPILOG,
    )
    parser.add_argument("--out", required=True, type=Path, metavar="KEY", help="private key file")
    parser.add_argument(
        "--type",
        default="ec-p256",
        choices=("ec-p256", "ec-p384", "ec-p521", "ed25519"),
        help="key type (default: ec-p256)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite existing key files")
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ml_integrity.trust import keys

    private, public = keys.generate(args.out, args.type, force=args.force)
    key = keys.load_public_key(public)
    if args.json:
        print_json(
            {
                "ok": True,
                "private_key": str(private),
                "public_key": str(public),
                "type": args.type,
                "hint": keys.key_hint(key),
            }
        )
    else:
        print(f"wrote private key {private} (keep it secret) and public key {public}")
        print(f"key: {keys.describe_key(key)}")
    return 0
