"""Keyless signing and policy-based verification options for ``sign`` and ``verify``.

The ``sign`` and ``verify`` command modules stay small: they register these
options and ask :func:`make_keyless_signer` / :func:`policy_options_given` /
:func:`run_verify` for the backend. Heavy imports (sigstore, yaml, git)
happen inside the functions.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml_integrity.cli._common import Progress, print_json

if TYPE_CHECKING:
    from ml_integrity.core.signing import Signer
    from ml_integrity.core.verifying import BundleVerifier
    from ml_integrity.trust.policy import ChainRule, IdentityRule, KeyRule, Policy, RepositoryReader

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
    from ml_integrity.trust.sigstore import SigstoreSigner

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


def _identity_given(args: argparse.Namespace) -> bool:
    from ml_integrity.trust.policy import IDENTITY_FIELDS

    return any(getattr(args, f) for f in IDENTITY_FIELDS)


def policy_options_given(args: argparse.Namespace) -> bool:
    """Any trust option beyond --key / --cert-chain (identities, roots, policy, rollback)?"""
    return (
        _identity_given(args)
        or args.trusted_root is not None
        or args.offline
        or args.staging
        or args.policy is not None
        or args.policy_base is not None
        or args.not_older_than is not None
        or args.repository is not None
    )


def identity_rule_from_args(args: argparse.Namespace) -> IdentityRule | None:
    from ml_integrity.trust.policy import IDENTITY_FIELDS, identity_rule

    return identity_rule(
        **{f: getattr(args, f) for f in IDENTITY_FIELDS},
        names={f: "--" + f.replace("_", "-") for f in IDENTITY_FIELDS},
    )


def _key_rule_from_file(path: Path) -> KeyRule:
    from ml_integrity.trust.keys import key_hint, load_public_key, public_pem
    from ml_integrity.trust.policy import KeyRule

    key = load_public_key(path)
    return KeyRule(pem=public_pem(key), label=str(path), fingerprint=key_hint(key), path=str(path))


def _chain_rule_from_files(paths: Sequence[Path]) -> ChainRule:
    from ml_integrity.errors import UsageError
    from ml_integrity.trust.policy import chain_rule

    parts = []
    for p in paths:
        try:
            parts.append((p.read_bytes(), str(p)))
        except FileNotFoundError:
            raise UsageError("certificate file not found", path=p) from None
        except OSError as exc:
            raise UsageError(f"cannot read: {exc.strerror}", path=p) from None
    return chain_rule(parts, paths=[str(p) for p in paths])


def command_line_policy(args: argparse.Namespace) -> Policy | None:
    """The policy the trust options on the command line make, or None if there are none."""
    from ml_integrity.errors import UsageError
    from ml_integrity.trust.policy import TrustedSigner, inline

    signers: list[TrustedSigner] = []
    rule = identity_rule_from_args(args)
    if rule is not None:
        signers.append(TrustedSigner("identity", rule, "command line"))
    if args.key is not None:
        signers.append(TrustedSigner("key", _key_rule_from_file(args.key), "--key"))
    if args.cert_chain:
        signers.append(
            TrustedSigner("cert-chain", _chain_rule_from_files(args.cert_chain), "--cert-chain")
        )
    if not signers:
        return None
    if args.policy is not None:
        raise UsageError(
            "give either --policy or trust options (--identity, --key, ...), not both",
            hint="put the signers into the policy file",
        )
    return inline(signers)


class GitRepository:
    """The git adapter for policy resolution (``trust.policy.RepositoryReader``)."""

    def __init__(self, repo: Any) -> None:
        self._repo = repo
        self.root = Path(repo.working_tree_dir)

    @classmethod
    def discover(cls, start: Path) -> GitRepository | None:
        try:
            import git
        except ImportError:  # pragma: no cover - a declared dependency
            return None
        where = start if start.is_dir() else start.parent
        try:
            repo = git.Repo(where, search_parent_directories=True)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            return None
        except git.GitCommandNotFound:
            return None
        if repo.bare or repo.working_tree_dir is None:
            return None
        return cls(repo)

    def config_get(self, key: str) -> str | None:
        import git

        try:
            value = self._repo.git.config("--get", key)
        except git.GitCommandError:
            return None
        return str(value) or None

    def resolve_revision(self, rev: str) -> str | None:
        import git

        try:
            return str(self._repo.git.rev_parse("--verify", "--quiet", f"{rev}^{{commit}}"))
        except git.GitCommandError:
            return None

    def read_at(self, rev: str, path: str) -> bytes | None:
        import git

        try:
            obj = self._repo.commit(rev).tree / path
        except (KeyError, ValueError, git.BadName):
            return None
        if obj.type != "blob":
            return None
        data: bytes = obj.data_stream.read()
        return data


class Backends:
    """The verification backends, wired from the command line's trust-root options."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._tmp = tempfile.TemporaryDirectory(prefix="ml-integrity-")

    def close(self) -> None:
        self._tmp.cleanup()

    def trust_fingerprint(self) -> str | None:
        """What the backends add to a policy: the Sigstore root options (keys the cache)."""
        import hashlib

        h = hashlib.sha256(b"ml-integrity cli backends v1\0")
        h.update(f"staging={bool(self.args.staging)} offline={bool(self.args.offline)}\0".encode())
        if self.args.trusted_root is not None:
            try:
                h.update(hashlib.sha256(Path(self.args.trusted_root).read_bytes()).digest())
            except OSError:
                return None
        return h.hexdigest()

    def _material_file(self, pem: bytes, name: str) -> Path:
        p = Path(self._tmp.name) / name
        p.write_bytes(pem)
        return p

    def keyless(
        self,
        signers: Sequence[tuple[str, IdentityRule]],
        deny: Sequence[IdentityRule],
        policy: Policy,
    ) -> BundleVerifier:
        from ml_integrity.errors import UsageError
        from ml_integrity.trust.sigstore import SigstoreTrust, SigstoreVerifier

        args = self.args
        if args.trusted_root is not None:
            if args.staging:
                raise UsageError("give either --trusted-root or --staging")
            trust = SigstoreTrust.from_file(args.trusted_root)
        elif policy.sigstore.trusted_root is not None and not args.staging:
            trust = SigstoreTrust(
                trusted_root=policy.sigstore.trusted_root,
                trusted_root_label=policy.sigstore.trusted_root_label,
            )
        else:
            instance = "staging" if args.staging else policy.sigstore.instance
            trust = SigstoreTrust(instance=instance, offline=args.offline)
        return SigstoreVerifier(signers, trust=trust, deny=deny)

    def key(self, rule: KeyRule) -> BundleVerifier:
        from ml_integrity.trust.keys import KeyVerifier

        if rule.path is not None:
            return KeyVerifier(Path(rule.path))
        verifier = KeyVerifier(self._material_file(rule.pem, f"key-{rule.fingerprint[:16]}.pem"))
        verifier.key_path = Path(rule.label)
        return verifier

    def chain(self, rule: ChainRule) -> BundleVerifier:
        from ml_integrity.trust.keys import CertificateVerifier

        if rule.paths:
            return CertificateVerifier([Path(p) for p in rule.paths])
        import hashlib

        name = f"chain-{hashlib.sha256(rule.pem).hexdigest()[:16]}.pem"
        verifier = CertificateVerifier([self._material_file(rule.pem, name)])
        verifier.anchor_paths = [Path(rule.label)]
        return verifier


@contextlib.contextmanager
def backends(args: argparse.Namespace) -> Iterator[Backends]:
    b = Backends(args)
    try:
        yield b
    finally:
        b.close()


def resolve_policy(args: argparse.Namespace) -> tuple[Policy, tuple[str, ...]]:
    """The policy for this verification, by precedence, with notes for the verdict."""
    from ml_integrity.errors import UsageError
    from ml_integrity.trust.policy import resolve

    inline_policy = command_line_policy(args)
    if inline_policy is not None:
        return inline_policy, ()
    repo: RepositoryReader | None = GitRepository.discover(args.path.resolve())
    resolution = resolve(explicit=args.policy, repo=repo, base=args.policy_base)
    if resolution.policy is None:
        raise UsageError(
            "no trust material given",
            hint="pass the signer's public key with --key PUB, a root CA with --cert-chain CA, "
            "a Sigstore identity with --identity SAN --issuer URL (or --github-repository), "
            "or a policy with --policy FILE (or git config ml-integrity.policy FILE)",
        )
    return resolution.policy, resolution.notes


def run_verify(args: argparse.Namespace) -> int:
    """``verify``: every verification goes through a policy, which the verdict names.

    The policy is the command line's trust options (--key, --cert-chain, a
    Sigstore identity), else --policy, git config or the in-repository policy.
    """
    from ml_integrity.trust import verdict

    policy, notes = resolve_policy(args)
    if args.not_older_than is not None or args.repository is not None:
        policy = policy.with_rollback(
            not_older_than=args.not_older_than, repository=args.repository
        )
    with backends(args) as factory, Progress("verifying") as progress:
        result = verdict.verify(
            args.path,
            args.bundle,
            policy,
            factory,
            ignore_paths=args.ignore_path,
            allow_symlinks=args.allow_symlinks,
            ignore_unsigned=args.ignore_unsigned_files,
            workers=args.workers,
            rehash=args.rehash,
            progress=progress,
            notes=notes,
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
    "keyless_requested",
    "make_keyless_signer",
    "policy_options_given",
    "run_verify",
]
