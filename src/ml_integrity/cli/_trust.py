"""Keyless signing and policy-based verification options for ``sign`` and ``verify``.

The ``sign`` and ``verify`` command modules stay small: they register these
options and ask :func:`make_keyless_signer` / :func:`run_verify` for the
backend; :func:`trust_request` turns the verify options into the request
the trust resolver (``trust.resolver``) takes. Heavy imports (sigstore, yaml)
happen inside the functions.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ml_integrity.cli._common import Progress, print_json

if TYPE_CHECKING:
    from ml_integrity.core.signing import Signer
    from ml_integrity.git.runner import Git
    from ml_integrity.trust.resolver import TrustRequest

IDENTITY_TOKEN_ENV = "ML_INTEGRITY_IDENTITY_TOKEN"

SIGN_EPILOG = """\
keyless (Sigstore):
  ml-integrity sign models/bert --sigstore --bundle bert.sig
      in GitHub Actions (needs 'permissions: id-token: write') and the other CI
      systems sigstore knows, the job's OIDC identity signs; on a terminal, a
      browser sign-in; --identity-token TOKEN (or ML_INTEGRITY_IDENTITY_TOKEN)
      gives a token explicitly. --staging signs with Sigstore's staging instance,
      --trust-config FILE with a private one (a ClientTrustConfig).
"""

VERIFY_EPILOG = """\
keyless (Sigstore) and policies:
  ml-integrity verify models/bert --bundle bert.sig \\
      --identity alice@example.com --issuer https://accounts.google.com
  ml-integrity verify models/bert --bundle bert.sig \\
      --github-repository octo-org/models --github-workflow release.yml \\
      --github-ref refs/heads/main
  ml-integrity verify models/bert --bundle bert.sig --identity-regex '.*@example\\.com' \\
      --issuer https://accounts.google.com --offline
  ml-integrity verify models/bert --bundle release.sig --bundle security.sig \\
      --policy trust.yaml
Without trust options, the policy comes from git config ml-integrity.policy, else
from the repository's .ml-integrity/policy.yaml as committed at --policy-base REV
(never from the change being verified). --offline and --trusted-root FILE verify
with no network at all.
"""


# --- sign -----------------------------------------------------------------------------


def add_sign_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("keyless signing (Sigstore)")
    group.add_argument(
        "--sigstore",
        action="store_true",
        help="sign keylessly with Sigstore: an OIDC identity instead of a key",
    )
    group.add_argument(
        "--identity-token",
        metavar="TOKEN",
        help=f"OIDC identity token to sign with (env: {IDENTITY_TOKEN_ENV}); default: the CI "
        "system's ambient credential, else the browser sign-in on a terminal",
    )
    group.add_argument(
        "--staging", action="store_true", help="use Sigstore's staging instance (for tests)"
    )
    group.add_argument(
        "--trust-config",
        type=Path,
        metavar="FILE",
        help="a Sigstore ClientTrustConfig (trusted root + signing config) of a private instance",
    )


def make_key_signer(key: Path, cert_chain: Sequence[Path]) -> Signer:
    """A key signer; an encrypted key's password comes from ML_INTEGRITY_KEY_PASSWORD."""
    from ml_integrity.trust.keys import KeySigner

    password = os.environ.get("ML_INTEGRITY_KEY_PASSWORD")
    return KeySigner(
        key, cert_chain=cert_chain, password=password.encode("utf-8") if password else None
    )


def make_keyless_signer(args: argparse.Namespace) -> Signer:
    from ml_integrity.errors import UsageError

    if args.key is not None:
        raise UsageError(
            "give either --key or --sigstore",
            hint="--key signs with a key you hold; --sigstore signs with an OIDC identity",
        )
    if args.cert:
        raise UsageError("--cert goes with --key, not with --sigstore")
    if args.staging and args.trust_config is not None:
        raise UsageError("give either --staging or --trust-config")
    from ml_integrity.trust.sigstore_sign import SigstoreSigner

    return SigstoreSigner(
        identity_token=args.identity_token or os.environ.get(IDENTITY_TOKEN_ENV) or None,
        staging=args.staging,
        trust_config=args.trust_config,
    )


def keyless_requested(args: argparse.Namespace) -> bool:
    """Did the command line ask for keyless signing (directly or via its options)?"""
    from ml_integrity.errors import UsageError

    keyless = bool(args.sigstore)
    implied = [
        flag
        for flag, on in (
            ("--staging", args.staging),
            ("--trust-config", args.trust_config is not None),
            ("--identity-token", args.identity_token is not None),
        )
        if on
    ]
    if implied and not keyless:
        verb = "needs" if len(implied) == 1 else "need"
        raise UsageError(f"{' and '.join(implied)} {verb} --sigstore")
    return keyless


# --- verify ---------------------------------------------------------------------------


def add_verify_options(parser: argparse.ArgumentParser) -> None:
    ident = parser.add_argument_group("keyless trust (Sigstore identity)")
    ident.add_argument(
        "--identity",
        metavar="SAN",
        help="the signer's exact identity (email, or a workflow/URI identity)",
    )
    ident.add_argument(
        "--identity-regex",
        metavar="RE",
        help="a regular expression the signer's identity must match entirely",
    )
    ident.add_argument(
        "--issuer", metavar="URL", help="the OIDC issuer that vouched for the identity"
    )
    ident.add_argument(
        "--github-repository",
        metavar="OWNER/REPO",
        help="signed by a GitHub Actions workflow of this repository",
    )
    ident.add_argument(
        "--github-ref",
        metavar="REF",
        help="... running for this ref (refs/heads/main, refs/tags/v1)",
    )
    ident.add_argument(
        "--github-workflow",
        metavar="FILE",
        help="... in this workflow file (release.yml, .github/workflows/release.yml, or "
        "OWNER/REPO/.github/workflows/FILE for a reusable workflow)",
    )
    roots = parser.add_argument_group("Sigstore trust root")
    roots.add_argument(
        "--trusted-root",
        type=Path,
        metavar="FILE",
        help="verify against this trusted_root.json (or a ClientTrustConfig's root); no network",
    )
    roots.add_argument(
        "--offline",
        action="store_true",
        help="no network: use the trust root cached or shipped with sigstore-python",
    )
    roots.add_argument(
        "--staging", action="store_true", help="Sigstore's staging instance (for tests)"
    )
    pol = parser.add_argument_group("policy")
    pol.add_argument(
        "--policy",
        type=Path,
        metavar="FILE",
        help="a trust policy (YAML); see 'ml-integrity policy check --help'",
    )
    pol.add_argument(
        "--policy-base",
        metavar="REV",
        default=os.environ.get("ML_INTEGRITY_POLICY_BASE") or None,
        help="trusted base revision at which the in-repository policy is read "
        "(env: ML_INTEGRITY_POLICY_BASE; git config ml-integrity.policyBase)",
    )
    pol.add_argument(
        "--not-older-than",
        type=_non_negative,
        metavar="N",
        help="refuse a signature whose manifest version is older than N (rollback)",
    )
    pol.add_argument(
        "--repository",
        metavar="ID",
        help="require the signature to be bound to this repository identity",
    )


def _non_negative(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return n


def trust_request(args: argparse.Namespace) -> TrustRequest:
    """The trust options of ``verify`` and ``check-staged``, for the resolver."""
    from ml_integrity.trust.policy import IDENTITY_FIELDS
    from ml_integrity.trust.resolver import SigstoreRoots, TrustRequest

    key = getattr(args, "key", None)
    return TrustRequest(
        **{f: getattr(args, f) for f in IDENTITY_FIELDS},
        keys=(str(key),) if key is not None else (),
        cert_chain=tuple(str(p) for p in getattr(args, "cert_chain", None) or ()),
        policy=str(args.policy) if args.policy is not None else None,
        policy_base=args.policy_base,
        not_older_than=args.not_older_than,
        repository=args.repository,
        roots=SigstoreRoots(
            instance="staging" if args.staging else "",
            offline=bool(args.offline),
            trusted_root_file=args.trusted_root,
        ),
    )


def discover_git(start: Path) -> Git | None:
    """The git work tree around ``start`` (a folder or a file), or None outside one."""
    from ml_integrity.errors import UsageError
    from ml_integrity.git.runner import Git

    where = start if start.is_dir() else start.parent
    if not where.is_dir():
        return None
    try:
        return Git.discover(where)
    except UsageError:
        return None


def run_verify(args: argparse.Namespace) -> int:
    """``verify``: every verification goes through a policy, which the verdict names.

    The policy is the command line's trust options (--key, --cert-chain, a
    Sigstore identity), else --policy, git config or the in-repository policy.
    """
    from ml_integrity.trust import verdict
    from ml_integrity.trust.resolver import resolve_trust

    trust = resolve_trust(trust_request(args), "model", repo=discover_git(args.path.resolve()))
    assert trust.policy is not None
    paths = None
    if getattr(args, "paths", None):
        from ml_integrity.core.partial import normalize_paths

        paths = normalize_paths(args.path, args.paths)
    with Progress("verifying") as progress:
        result = verdict.verify(
            args.path,
            args.bundle,
            trust.policy,
            trust.backends(),
            ignore_paths=args.ignore_path,
            ignore_git_paths=args.ignore_git_paths,
            allow_symlinks=args.allow_symlinks,
            ignore_unsigned=args.ignore_unsigned_files,
            workers=args.workers,
            rehash=args.rehash,
            progress=progress,
            notes=trust.notes,
            paths=paths,
        )
    if args.json:
        print_json(result.to_json())
    else:
        for line in result.lines():
            print(line)
    return 0


__all__ = [
    "SIGN_EPILOG",
    "VERIFY_EPILOG",
    "add_sign_options",
    "add_verify_options",
    "discover_git",
    "keyless_requested",
    "make_keyless_signer",
    "run_verify",
    "trust_request",
]
