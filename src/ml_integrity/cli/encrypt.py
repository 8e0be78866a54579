"""``ml-integrity encrypt``: encrypt a file or a folder for one or more recipients."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ml_integrity.cli._common import add_command, add_json_flag, print_json

ORDER = 45

_EPILOG = """\
examples:
  ml-integrity sign models/bert --key signing.pem --bundle bert.sig
  ml-integrity encrypt models/bert --recipient alice.x25519.pub --recipient ci.aes \\
      --output models/bert.enc
  ml-integrity encrypt model.safetensors --recipient alice.x25519.pub --output model.enc

Sign first, then encrypt: the signature covers the plaintext, and
'ml-integrity verify PATH --decryption-key KEY' checks an encrypted folder against
it without writing plaintext to disk.

A recipient is an X25519 public key (ml-integrity keygen --type x25519) or an
AES-256 key file (--type aes256). Each file gets its own random data key, wrapped
once per recipient; a folder becomes a folder of the same layout, one encrypted
file per file (AWS Encryption SDK message v2, suite 0x0478, framed AES-256-GCM;
see docs/format.md). The output is written under a temporary name and renamed
into place when complete.

Exit 0 encrypted; 2 usage error (a missing or wrong kind of key, an existing
output); 3 I/O error.
"""


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "encrypt",
        help="encrypt a file or folder for recipients (AES-256-GCM)",
        description="Encrypt a file into a file, or a folder into a folder of the same layout.",
        epilog=_EPILOG,
    )
    parser.add_argument("path", type=Path, metavar="PATH", help="file or folder to encrypt")
    parser.add_argument(
        "--recipient",
        action="append",
        default=[],
        metavar="PUB",
        required=True,
        help="X25519 public key or AES-256 key file (or SCHEME:REF of a key-provider "
        "plug-in); repeatable: each recipient can decrypt",
    )
    parser.add_argument(
        "--output", "-o", required=True, type=Path, metavar="OUT", help="file or folder to write"
    )
    parser.add_argument(
        "--frame-size",
        type=_frame_size,
        default=None,
        metavar="BYTES",
        help="plaintext bytes per frame, 65536 to 1048576 (default: 1048576)",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing output file")
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def _frame_size(value: str) -> int:
    from ml_integrity.crypto import message

    try:
        n = int(value)
        message.check_frame_length(n)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a number from {message.MIN_FRAME} to {message.MAX_FRAME}"
        ) from None
    return n


def run(args: argparse.Namespace) -> int:
    from ml_integrity.crypto import keys, message, tree

    recipients = keys.load_recipients(args.recipient)
    files = tree.encrypt_path(
        args.path,
        args.output,
        recipients,
        frame_length=args.frame_size or message.DEFAULT_FRAME,
        force=args.force,
    )
    names = [r.describe() for r in recipients]
    if args.json:
        print_json(
            {
                "ok": True,
                "input": str(args.path),
                "output": str(args.output),
                "files": files,
                "recipients": names,
            }
        )
    else:
        n = len(files)
        print(
            f"encrypted {args.path} -> {args.output} ({n} file{'s' if n != 1 else ''}) "
            f"for {', '.join(names)}"
        )
    return 0
