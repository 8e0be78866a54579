"""``ml-integrity verify``: check a model folder or file against an OMS bundle."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml_integrity.cli._common import Progress, add_command, add_json_flag, print_json
from ml_integrity.cli._options import add_key_trust_options, add_walk_options
from ml_integrity.cli._trust import VERIFY_EPILOG, add_verify_options
from ml_integrity.cli.decrypt import add_decryption_option, decrypting

if TYPE_CHECKING:
    from collections.abc import Callable

    from ml_integrity.git.repository import Repository
    from ml_integrity.git.verification import TreeVerdict
    from ml_integrity.trust.resolver import Trust

ORDER = 40

_EPILOG = (
    """\
examples:
  ml-integrity verify models/bert --bundle models/bert.sig --key key.pem.pub
  ml-integrity verify models/bert --bundle bert.sig --cert-chain root-ca.pem --json
  ml-integrity verify data/ --bundle data.sig --key key.pem.pub --paths train/0001.jpg
                                                only the named files (partial verification)
  ml-integrity verify --git-repo                every file of a git repository (LFS too)
  ml-integrity verify --git-repo --rehash       ... and hash files and local objects
  ml-integrity verify --staged                  the staged files against the staged
                                                signatures (the pre-commit hook
                                                ml-integrity-signed; never uses the network)
  ml-integrity verify --staged --policy ~/trust.yaml
  ml-integrity verify models/bert.enc --bundle bert.sig --key key.pem.pub \
      --decryption-key ~/.keys/me.x25519      an encrypted folder, decrypted in memory

Repository trust (--git-repo, --staged), in order: --key / --cert-chain /
--policy / identity options; else git config ml-integrity.policy, then
ml-integrity.publicKey or ml-integrity.certChain; else the in-repository
policy as committed at --policy-base REV (or ml-integrity.policyBase). With
--staged, a key or policy file inside the repository must not be part of
the change being committed.

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
        help="PATH (default: .) is a git repository: verify every file of HEAD (LFS files "
        "by their pointers, other files by their content) "
        "against .ml-integrity/*.sig (trust: see below); no download, no rehash unless --rehash",
    )
    parser.add_argument(
        "--staged",
        action="store_true",
        help="like --git-repo, for the index instead of HEAD: every staged file must be "
        "covered by a valid signature staged in .ml-integrity/ (offline: Sigstore bundles "
        "are checked against --trusted-root or the cached/shipped root)",
    )
    parser.add_argument(
        "--bundle",
        action="append",
        type=Path,
        metavar="FILE",
        help="the signature bundle; repeat it for policies that need several signers",
    )
    add_key_trust_options(parser, "key-based trust")
    parser.add_argument(
        "--paths",
        nargs="+",
        action="extend",
        metavar="P",
        help="verify only these files of PATH (relative to it) against the bundle: nothing "
        "else is listed or hashed; for a sharded dataset only their shards are read",
    )
    parser.add_argument(
        "--ignore-unsigned-files",
        action="store_true",
        help="accept files that the bundle does not list",
    )
    add_decryption_option(parser)
    add_verify_options(parser)
    add_walk_options(parser)
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.git_repo or args.staged:
        if args.paths:
            from ml_integrity.errors import UsageError

            raise UsageError("--paths verifies a folder against --bundle, not --git-repo/--staged")
        if args.decryption_key:
            from ml_integrity.errors import UsageError

            raise UsageError(
                "--decryption-key verifies an encrypted folder or file; a repository's "
                "encrypted LFS files use git config ml-integrity.decryptionKey"
            )
        if args.bundle:
            from ml_integrity.errors import UsageError

            raise UsageError(
                "--git-repo and --staged verify the repository's own signatures "
                "(.ml-integrity/*.sig): give no --bundle"
            )
        return run_repository(args)
    if args.path is None or not args.bundle:
        from ml_integrity.errors import UsageError

        raise UsageError("give PATH and --bundle FILE (or --git-repo)")
    from ml_integrity.cli._trust import run_verify

    with decrypting(args.decryption_key):
        return run_verify(args)


def run_repository(args: argparse.Namespace) -> int:
    from ml_integrity.cli._trust import trust_request
    from ml_integrity.errors import IntegrityError
    from ml_integrity.git.repository import Repository
    from ml_integrity.git.runner import Git
    from ml_integrity.trust.resolver import resolve_trust

    staged = bool(args.staged)
    start = args.path or Path.cwd()
    git = Git.discover(start, keep_index=staged)
    with Progress("rehashing") as progress:
        trust = resolve_trust(trust_request(args), "repository", repo=git)
        if staged:
            trust = trust.offline()  # a commit hook never waits for the network (TUF refresh)
        with Repository(git, trust=trust) as repo:
            try:
                verdict = check_signatures(
                    repo, trust, staged=staged, rehash=args.rehash, progress=progress
                )
            except IntegrityError as err:
                if staged and trust.policy is None and not trust.git_config():
                    from ml_integrity.git.staged import without_trust

                    raise without_trust(err) from None  # the fix is the trust, not a signature
                raise
    print_signatures(args, verdict, trust, staged=staged)
    return 0


def check_signatures(
    repo: Repository,
    trust: Trust,
    *,
    staged: bool,
    rehash: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> TreeVerdict:
    """Every path of the index (``staged``) or HEAD against its signatures;
    raises the failure (IntegrityError, or ConfigError for trust the change brings).
    With ``staged``, ``trust`` is offline (:meth:`Trust.offline`)."""
    from ml_integrity.errors import IntegrityError
    from ml_integrity.git.staged import check_trust_files, signature_error, signature_verdict
    from ml_integrity.git.verification import check_tree

    if staged:
        check_trust_files(repo.git, list(trust.files))
        verdict = signature_verdict(repo, trust.policy)
    else:
        verdict = check_tree(
            repo,
            "HEAD",
            rehash=rehash,
            progress=progress,
            worktree=False,
            policy=trust.policy,
            require_signature=True,
        )
    if verdict.ok:
        return verdict
    if staged:
        error = signature_error(verdict)
    elif verdict.verified.error and set(verdict.refused) == set(verdict.files):
        error = IntegrityError(
            f"HEAD cannot be verified: {verdict.verified.error}",
            path=repo.root,
            hint="trust comes from --key/--cert-chain/--policy or git config "
            "ml-integrity.publicKey; sign with `ml-integrity sign-repo --key KEY`",
        )
    else:
        error = verdict.error()
    policy_line = trust.describe()
    if policy_line:
        error.hint = f"{error.hint}; policy: {policy_line}" if error.hint else policy_line
    raise error


def signatures_json(verdict: TreeVerdict, trust: Trust, *, staged: bool) -> dict[str, Any]:
    from ml_integrity.git.repository import INDEX

    doc = verdict.to_json()
    doc["source"] = INDEX if staged else "HEAD"
    doc["policy"] = None if trust.policy is None else trust.policy.source.to_json()
    doc["accepted_unsigned"] = sorted(verdict.unsigned_extra)
    doc["notes"] = list(trust.notes)
    return doc


def print_signatures(
    args: argparse.Namespace, verdict: TreeVerdict, trust: Trust, *, staged: bool
) -> None:
    if args.json:
        print_json(signatures_json(verdict, trust, staged=staged))
        return
    import sys

    signers = ", ".join(verdict.signers) or "nobody (nothing is signed here)"
    if verdict.files and not verdict.signers:
        signers = "nobody: accepted unsigned by the policy"
    files = verdict.describe()
    what = f"staged {files}" if staged else f"{files} of HEAD"
    print(f"OK: {what} verified (signed by {signers})")
    for note in verdict.notes:
        print(f"ml-integrity: note: {note}", file=sys.stderr)
    policy_line = trust.describe()
    if policy_line:
        print(f"policy: {policy_line}")
    if verdict.unsigned_extra:
        shown = sorted(verdict.unsigned_extra)
        more = f" ... and {len(shown) - 10} more" if len(shown) > 10 else ""
        print(f"unsigned files accepted by the policy: {', '.join(shown[:10])}{more}")
    for note in trust.notes:
        print(f"note: {note}")
