"""``ml-integrity keygen``: make a signing key pair, or an encryption key."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ml_integrity.cli._common import add_command, add_json_flag, print_json

ORDER = 10

_SIGNING = ("ec-p256", "ec-p384", "ec-p521", "ed25519")
_ENCRYPTION = ("x25519", "aes256")

_EPILOG = """\
examples:
  ml-integrity keygen --out ~/.keys/models.pem
  ml-integrity keygen --out release.pem --type ec-p384
  ml-integrity keygen --out ~/.keys/me.x25519 --type x25519   an encryption recipient
  ml-integrity keygen --out team.aes --type aes256            a shared symmetric key

Signing keys (ec-*, ed25519): the private key (mode 0600) is written to OUT and
the public key to OUT.pub. Give OUT.pub to the people who verify. EC keys verify
with model_signing too; Ed25519 bundles verify with ml-integrity only
(model_signing 1.1.1 checks EC keys).

Encryption keys: x25519 writes the private key to OUT (0600) and the public key
to OUT.pub; others encrypt for you with 'ml-integrity encrypt --recipient OUT.pub'
and you decrypt with '--key OUT'. aes256 writes one symmetric key (0600) that
both encrypts and decrypts: keep it in a secret store.
"""


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "keygen",
        help="create a signing key pair or an encryption key",
        description="Create a private key and its public key for key-based signing, "
        "or an encryption key (X25519 recipient key pair, AES-256 symmetric key).",
        epilog=_EPILOG,
    )
    parser.add_argument("--out", required=True, type=Path, metavar="KEY", help="private key file")
    parser.add_argument(
        "--type",
        default="ec-p256",
        choices=_SIGNING + _ENCRYPTION,
        help="key type (default: ec-p256); x25519 and aes256 are encryption keys",
    )
    parser.add_argument("--force", action="store_true", help="overwrite existing key files")
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.out.is_dir():
        from ml_integrity.errors import UsageError

        raise UsageError(
            "cannot write: is a folder, not a key file",
            path=args.out,
            hint=f"--out names the key file to write, for example --out {args.out / 'key.pem'}",
        )
    if args.type in _ENCRYPTION:
        return _run_encryption(args)
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


def _run_encryption(args: argparse.Namespace) -> int:
    from ml_integrity.crypto import keys

    if args.type == "x25519":
        private, public = keys.generate_x25519(args.out, force=args.force)
        described = keys.load_recipient(public).describe()
        doc: dict[str, object] = {"private_key": str(private), "public_key": str(public)}
        text = (
            f"wrote private key {private} (keep it secret) and public key {public}\n"
            f"recipient: {described}; encrypt for it with --recipient {public}"
        )
    else:
        private = keys.generate_aes256(args.out, force=args.force)
        described = keys.load_recipient(private).describe()
        doc = {"key": str(private), "public_key": None}
        text = (
            f"wrote AES-256 key {private} (keep it secret: it encrypts and decrypts)\n"
            f"key: {described}"
        )
    if args.json:
        print_json({"ok": True, "type": args.type, "key_id": described, **doc})
    else:
        print(text)
    return 0
