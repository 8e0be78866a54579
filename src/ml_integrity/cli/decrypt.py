"""``ml-integrity decrypt``: decrypt a file or a folder made by ``ml-integrity encrypt``."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ml_integrity.cli._common import add_command, add_json_flag, print_json

ORDER = 46

_EPILOG = """\
examples:
  ml-integrity decrypt models/bert.enc --key ~/.keys/alice.x25519 --output models/bert
  ml-integrity decrypt model.enc --key team.aes --output model.safetensors
  ml-integrity verify models/bert.enc --bundle bert.sig --key signing.pem.pub \\
      --decryption-key ~/.keys/alice.x25519      verify without decrypting to disk

Every frame is authenticated; the output is written under a temporary name and
renamed into place only after the last frame of every file has verified, so a
failure leaves no plaintext behind. Decrypting does not check the signature:
verify (with --decryption-key) before you use the content.

Exit 0 decrypted; 1 tampered, truncated, reordered or extended ciphertext, or
the key is not a recipient; 2 usage error (a missing or wrong kind of key, an
existing output); 3 I/O error.
"""


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "decrypt",
        help="decrypt a file or folder made by 'encrypt'",
        description="Decrypt a file into a file, or a folder into a folder of the same layout.",
        epilog=_EPILOG,
    )
    parser.add_argument("path", type=Path, metavar="PATH", help="encrypted file or folder")
    parser.add_argument(
        "--key",
        action="append",
        default=[],
        required=True,
        metavar="KEY",
        help="X25519 private key or AES-256 key file (or SCHEME:REF of a key-provider "
        "plug-in); repeatable: any one that is a recipient will do",
    )
    parser.add_argument(
        "--output", "-o", required=True, type=Path, metavar="OUT", help="file or folder to write"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing output file")
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ml_integrity.crypto import keys, tree

    decryption_keys = keys.load_decryption_keys(args.key)
    files = tree.decrypt_path(args.path, args.output, decryption_keys, force=args.force)
    if args.json:
        print_json(
            {"ok": True, "input": str(args.path), "output": str(args.output), "files": files}
        )
    else:
        n = len(files)
        print(f"decrypted {args.path} -> {args.output} ({n} file{'s' if n != 1 else ''})")
    return 0


def add_decryption_option(parser: argparse.ArgumentParser) -> None:
    """``--decryption-key``: verify encrypted content against the plaintext's signature."""
    parser.add_argument(
        "--decryption-key",
        action="append",
        default=[],
        metavar="KEY",
        help="PATH is encrypted (ml-integrity encrypt): verify the plaintext, decrypted in "
        "memory with this X25519 private key or AES-256 key, never written to disk; "
        "repeatable",
    )


@contextlib.contextmanager
def decrypting(specs: Sequence[str]) -> Iterator[None]:
    """Verification inside the block reads content through the decryption keys ``specs``."""
    if not specs:
        yield
        return
    from ml_integrity.core.content import reading_through
    from ml_integrity.crypto.content import DecryptingContent
    from ml_integrity.crypto.keys import load_decryption_keys

    with reading_through(DecryptingContent(load_decryption_keys(specs))):
        yield
