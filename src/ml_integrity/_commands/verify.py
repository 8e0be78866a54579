"""``ml-integrity verify``: check a model folder or file against an OMS bundle."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import Progress, add_command, add_json_flag, print_json
from ._options import add_walk_options
from ._trust import VERIFY_EPILOG, add_verify_options

if TYPE_CHECKING:
    from ..verifying import BundleVerifier

ORDER = 40

_EPILOG = (
    """\
examples:
  ml-integrity verify models/bert --bundle models/bert.sig --key key.pem.pub
  ml-integrity verify models/bert --bundle bert.sig --cert-chain root-ca.pem --json

Order of checks: the signature, then trust (the key or certificate chain you
give; never material taken from the bundle alone), then every file's digest.
Exit 0 verified; 1 tampered, unsigned, extra/missing files or untrusted signer
(the changed, missing and extra paths are listed); 2 usage error; 3 I/O error.

"""
    + VERIFY_EPILOG
)


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "verify",
        help="verify a model folder or file against a bundle",
        description="Verify an OpenSSF Model Signing bundle: signature, signer, then digests.",
        epilog=_EPILOG,
    )
    parser.add_argument("path", type=Path, metavar="PATH", help="model folder or file")
    parser.add_argument(
        "--bundle",
        required=True,
        action="append",
        type=Path,
        metavar="FILE",
        help="the signature bundle; repeat it for policies that need several signers",
    )
    trust = parser.add_argument_group("key-based trust")
    trust.add_argument("--key", type=Path, metavar="PUB", help="the signer's public key (PEM)")
    trust.add_argument(
        "--cert-chain",
        action="append",
        default=[],
        type=Path,
        metavar="CA",
        help="trusted root certificate(s) (PEM) for certificate-method bundles; repeatable",
    )
    parser.add_argument(
        "--ignore-unsigned-files",
        action="store_true",
        help="accept files that the bundle does not list",
    )
    add_verify_options(parser)
    add_walk_options(parser)
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def make_verifier(args: argparse.Namespace) -> BundleVerifier:
    """The trust the command line gives."""
    from ..errors import UsageError

    given = [name for name, on in (("--key", args.key), ("--cert-chain", args.cert_chain)) if on]
    if not given:
        raise UsageError(
            "no trust material given",
            hint="pass the signer's public key with --key PUB, or a root CA with --cert-chain CA",
        )
    if len(given) > 1:
        raise UsageError(f"give only one of {' and '.join(given)}")
    from .._keys import CertificateVerifier, KeyVerifier

    if args.key is not None:
        return KeyVerifier(args.key)
    return CertificateVerifier(args.cert_chain)


def run(args: argparse.Namespace) -> int:
    from .. import verifying
    from ._trust import run_verify, wants_policy

    if wants_policy(args):
        return run_verify(args)
    verifier = make_verifier(args)
    with Progress("verifying") as progress:
        result = verifying.verify_model(
            args.path,
            args.bundle[0],
            verifier,
            ignore_paths=args.ignore_path,
            allow_symlinks=args.allow_symlinks,
            ignore_unsigned=args.ignore_unsigned_files,
            workers=args.workers,
            rehash=args.rehash,
            progress=progress,
        )
    if args.json:
        print_json(result.to_json())
    else:
        print(
            f"OK: {args.path} verified ({result.files} file{'s' if result.files != 1 else ''}, "
            f"signed by {result.signer})"
        )
    return 0
