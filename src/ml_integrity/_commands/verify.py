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
  ml-integrity verify --git-repo                a git repository with LFS files
  ml-integrity verify --git-repo --rehash       ... and hash files and local objects

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
    parser.add_argument(
        "path", type=Path, nargs="?", metavar="PATH", help="model folder or file (or repository)"
    )
    parser.add_argument(
        "--git-repo",
        action="store_true",
        help="PATH (default: .) is a git repository: verify the Git LFS files of HEAD "
        "against .ml-integrity/*.sig (trust from --key, --cert-chain or git config "
        "ml-integrity.publicKey); no download, no rehash unless --rehash",
    )
    parser.add_argument(
        "--bundle",
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
    """The trust --key or --cert-chain gives (for --git-repo)."""
    from ..errors import UsageError

    given = [name for name, on in (("--key", args.key), ("--cert-chain", args.cert_chain)) if on]
    if len(given) > 1:
        raise UsageError(f"give only one of {' and '.join(given)}")
    from .._keys import CertificateVerifier, KeyVerifier

    if args.key is not None:
        return KeyVerifier(args.key)
    return CertificateVerifier(args.cert_chain)


def run(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from ._trust import policy_options_given, run_verify

    if args.git_repo:
        if policy_options_given(args):
            raise UsageError(
                "--git-repo takes its trust from --key, --cert-chain or git config "
                "(ml-integrity.publicKey / ml-integrity.certChain); policy and Sigstore "
                "options are not supported with it yet"
            )
        return run_repository(args)
    if args.path is None or not args.bundle:
        raise UsageError("give PATH and --bundle FILE (or --git-repo)")
    return run_verify(args)


def run_repository(args: argparse.Namespace) -> int:
    from ..repository import verify_repository

    verifier = make_verifier(args) if (args.key or args.cert_chain) else None
    with Progress("rehashing") as progress:
        verdict = verify_repository(
            args.path or Path.cwd(), verifier=verifier, rehash=args.rehash, progress=progress
        )
    if args.json:
        print_json(verdict.to_json())
    else:
        n = len(verdict.pointers)
        signers = ", ".join(sorted(set(verdict.verified.signers))) or "nobody (no LFS files)"
        print(f"OK: {n} LFS file{'s' if n != 1 else ''} of HEAD verified (signed by {signers})")
    return 0
