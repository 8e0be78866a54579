"""``ml-integrity verify``: check a model folder or file against an OMS bundle."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml_integrity.cli._common import Progress, add_command, add_json_flag, print_json
from ml_integrity.cli._options import add_key_trust_options, add_walk_options
from ml_integrity.cli._trust import VERIFY_EPILOG, add_verify_options

if TYPE_CHECKING:
    from collections.abc import Callable

    from ml_integrity.cli._trust import Backends
    from ml_integrity.core.verifying import BundleVerifier
    from ml_integrity.git.repository import Repository, TreeVerdict
    from ml_integrity.git.runner import Git
    from ml_integrity.trust.policy import Policy

ORDER = 40

_EPILOG = (
    """\
examples:
  ml-integrity verify models/bert --bundle models/bert.sig --key key.pem.pub
  ml-integrity verify models/bert --bundle bert.sig --cert-chain root-ca.pem --json
  ml-integrity verify --git-repo                a git repository with LFS files
  ml-integrity verify --git-repo --rehash       ... and hash files and local objects
  ml-integrity verify --staged                  the staged LFS files against the staged
                                                signatures (the pre-commit hook
                                                ml-integrity-signed; never uses the network)
  ml-integrity verify --staged --policy ~/trust.yaml

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
        help="PATH (default: .) is a git repository: verify the Git LFS files of HEAD "
        "against .ml-integrity/*.sig (trust: see below); no download, no rehash unless --rehash",
    )
    parser.add_argument(
        "--staged",
        action="store_true",
        help="like --git-repo, for the index instead of HEAD: every staged LFS file must be "
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
    from ml_integrity.errors import UsageError

    given = [name for name, on in (("--key", args.key), ("--cert-chain", args.cert_chain)) if on]
    if not given:
        raise UsageError(
            "no trust material given",
            hint="pass the signer's public key with --key PUB, or a root CA with --cert-chain CA",
        )
    if len(given) > 1:
        raise UsageError(f"give only one of {' and '.join(given)}")
    from ml_integrity.trust.keys import CertificateVerifier, KeyVerifier

    if args.key is not None:
        return KeyVerifier(args.key)
    return CertificateVerifier(args.cert_chain)


def run(args: argparse.Namespace) -> int:
    if args.git_repo or args.staged:
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

    return run_verify(args)


def _policy_options(args: argparse.Namespace) -> bool:
    """Trust options beyond one --key or --cert-chain (identities, policies, rollback...)."""
    from ml_integrity.cli._trust import policy_options_given

    return policy_options_given(args)


class RepositoryTrust:
    """The trust for ``--git-repo`` / ``--staged``, from the command line or git config."""

    def __init__(self) -> None:
        self.kwargs: dict[str, Any] = {}
        self.policy: Policy | None = None
        self.notes: tuple[str, ...] = ()
        self.files: list[Path] = []
        """Trust files read from disk (must not be part of a staged change)."""

    def use_policy(self, policy: Policy, factory: Backends) -> None:
        from ml_integrity.trust.verdict import PolicyVerifier

        verifier = PolicyVerifier(policy, factory)
        self.policy = policy
        self.kwargs = {"verifier_factory": lambda _root: verifier}
        self.files += _policy_files(policy)

    def describe(self) -> str | None:
        return None if self.policy is None else self.policy.source.describe()


def _policy_files(policy: Policy) -> list[Path]:
    from ml_integrity.trust.policy import ChainRule, KeyRule

    out: list[Path] = []
    if policy.source.kind in ("command line", "git config") and policy.source.path:
        out.append(Path(policy.source.path))
    for signer in (*policy.signers, *policy.deny_signers):
        if isinstance(signer.rule, KeyRule) and signer.rule.path:
            out.append(Path(signer.rule.path))
        elif isinstance(signer.rule, ChainRule):
            out += [Path(p) for p in signer.rule.paths]
    label = policy.sigstore.trusted_root_label
    if policy.source.kind != "in-repo" and label and Path(label).is_file():
        out.append(Path(label))
    return out


def repository_trust(args: argparse.Namespace, git: Git, factory: Backends) -> RepositoryTrust:
    """Command line first; else git config (policy, then key or chain); else the
    in-repository policy at a trusted base. With nothing at all, the repository's
    git config decides (and reports that no trust root is configured)."""
    from ml_integrity.cli._trust import GitRepository, command_line_policy
    from ml_integrity.errors import UsageError
    from ml_integrity.trust.settings import CERT_CHAIN, PUBLIC_KEY

    trust = RepositoryTrust()
    policy_options = _policy_options(args)
    if args.trusted_root is not None:
        trust.files.append(args.trusted_root)
    if not policy_options and (args.key is not None or len(args.cert_chain) == 1):
        # the fast path: read like git config trust (no cryptography unless needed)
        if args.key is not None and args.cert_chain:
            raise UsageError("give only one of --key and --cert-chain")
        path = Path(os.path.abspath(args.key if args.key is not None else args.cert_chain[0]))
        if not path.is_file():
            raise UsageError("trust file not found", path=path)
        setting = PUBLIC_KEY if args.key is not None else CERT_CHAIN
        trust.kwargs = {"trust_settings": {setting: str(path)}}
        trust.files.append(path)
        return trust
    inline = command_line_policy(args) if (args.key or args.cert_chain or policy_options) else None
    if inline is not None:
        trust.use_policy(_with_rollback(args, inline), factory)
        return trust
    if args.policy is not None:
        from ml_integrity.trust.policy import load_policy

        trust.use_policy(_with_rollback(args, load_policy(args.policy, "command line")), factory)
        return trust
    config = git.config_matching(r"^ml-integrity\.")  # one git run for every setting
    configured = config.get("ml-integrity.policy")
    roots = [config[k] for k in (PUBLIC_KEY, CERT_CHAIN) if config.get(k)]
    base = args.policy_base or config.get("ml-integrity.policybase")
    if not configured and (roots or base is None):
        # the repository's git config trust (ml-integrity.publicKey / certChain); with
        # none, the verdict says that no trust root is configured
        trust.kwargs = {"trust_settings": config}
        trust.files += [git.root / Path(v).expanduser() for v in roots]
        return trust
    from ml_integrity.trust.policy import resolve

    resolution = resolve(explicit=None, repo=GitRepository.discover(git.root), base=base)
    if resolution.policy is not None:
        trust.use_policy(_with_rollback(args, resolution.policy), factory)
        trust.notes = resolution.notes
    return trust


def _with_rollback(args: argparse.Namespace, policy: Policy) -> Policy:
    if args.not_older_than is None and args.repository is None:
        return policy
    return policy.with_rollback(not_older_than=args.not_older_than, repository=args.repository)


def run_repository(args: argparse.Namespace) -> int:
    from ml_integrity.cli._trust import backends
    from ml_integrity.git.repository import Repository
    from ml_integrity.git.runner import Git

    staged = bool(args.staged)
    start = args.path or Path.cwd()
    git = Git.discover(start, keep_index=staged)
    with backends(args) as factory, Progress("rehashing") as progress:
        trust = repository_trust(args, git, factory)
        with Repository(git, **trust.kwargs) as repo:
            verdict = check_signatures(args, repo, trust, staged=staged, progress=progress)
    print_signatures(args, verdict, trust, staged=staged)
    return 0


def check_signatures(
    args: argparse.Namespace,
    repo: Repository,
    trust: RepositoryTrust,
    *,
    staged: bool,
    progress: Callable[[int, int], None] | None = None,
) -> TreeVerdict:
    """The LFS files of the index (``staged``) or HEAD against their signatures;
    raises the failure (IntegrityError, or ConfigError for trust the change brings)."""
    from ml_integrity.errors import IntegrityError
    from ml_integrity.git.repository import check_policy_supported
    from ml_integrity.git.staged import check_trust_files, signature_error, signature_verdict

    if staged:
        args.offline = True  # a commit hook never waits for the network (TUF refresh)
    if trust.policy is not None:
        check_policy_supported(trust.policy)
    if staged:
        check_trust_files(repo.git, trust.files)
        verdict = signature_verdict(repo, trust.policy)
    else:
        verdict = repo.check_tree("HEAD", rehash=args.rehash, progress=progress, worktree=False)
        if trust.policy is not None:
            verdict.apply_policy(trust.policy)
    if verdict.ok:
        return verdict
    if staged:
        error = signature_error(verdict)
    elif verdict.verified.error and set(verdict.refused) == set(verdict.pointers):
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


def signatures_json(
    verdict: TreeVerdict, trust: RepositoryTrust, *, staged: bool
) -> dict[str, Any]:
    from ml_integrity.git.repository import INDEX

    doc = verdict.to_json()
    doc["source"] = INDEX if staged else "HEAD"
    doc["policy"] = None if trust.policy is None else trust.policy.source.to_json()
    doc["accepted_unsigned"] = sorted(verdict.unsigned_extra)
    doc["notes"] = list(trust.notes)
    return doc


def print_signatures(
    args: argparse.Namespace, verdict: TreeVerdict, trust: RepositoryTrust, *, staged: bool
) -> None:
    if args.json:
        print_json(signatures_json(verdict, trust, staged=staged))
        return
    n = len(verdict.pointers)
    signers = ", ".join(sorted(set(verdict.verified.signers))) or "nobody (no LFS files)"
    if n and not verdict.verified.signers:
        signers = "nobody: accepted unsigned by the policy"
    files = f"{n} LFS file{'s' if n != 1 else ''}"
    what = f"staged {files}" if staged else f"{files} of HEAD"
    print(f"OK: {what} verified (signed by {signers})")
    policy_line = trust.describe()
    if policy_line:
        print(f"policy: {policy_line}")
    if verdict.unsigned_extra:
        shown = sorted(verdict.unsigned_extra)
        more = f" ... and {len(shown) - 10} more" if len(shown) > 10 else ""
        print(f"unsigned files accepted by the policy: {', '.join(shown[:10])}{more}")
    for note in trust.notes:
        print(f"note: {note}")
