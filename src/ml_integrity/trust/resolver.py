"""The one trust resolver: an entry point's inputs become one immutable :class:`Trust`.

Every entry point (the ``verify``, ``check-staged``, ``clone``, ``pull`` and
``policy`` commands, the filter, the transfer agent, the hooks and the
Action) describes what it was told in a :class:`TrustRequest` and calls
:func:`resolve_trust` once. From there on, use cases receive the
:class:`Trust` and never see a command line or the environment.

Where trust comes from, by ``purpose``:

- ``model`` (``verify PATH --bundle``): the command line's signers
  (``--key``, ``--cert-chain``, a Sigstore identity), else ``--policy``,
  git config ``ml-integrity.policy`` or the in-repository policy at a trusted
  base revision; something must apply.
- ``repository`` (``verify --git-repo``/``--staged``, ``check-staged``): the
  same, plus the git config keys ``ml-integrity.publicKey`` and
  ``ml-integrity.certChain`` (a single ``--key`` or ``--cert-chain`` is
  used the same way, without building a policy).
- ``checkout`` (filter, transfer agent, hooks, ``pull``): the git config
  only, which an attacker with write access to the repository cannot change:
  ``ml-integrity.policy`` when set (its rules, rollback and requirements
  across signers included, apply to every checkout; the file must lie outside
  the work tree, which a checkout rewrites), else the keys
  ``ml-integrity.publicKey`` and ``ml-integrity.certChain``. The
  in-repository policy is not read here: it needs a trusted base revision,
  which only the command line and the Action name.
- ``clone``: the ``--key``/``--cert-chain``/``--policy`` given, as the
  settings the new clone's git config will hold.
- ``policy`` (``policy check``): the policy that applies, by precedence.
- ``action``: the Action's inputs, read through the Action's
  :class:`MaterialReader` (a pull request's trust files come from its base).

The repository is read through :class:`~ml_integrity.trust.policy_source.RepositoryReader`,
which the entry point satisfies with its git adapter (dependency inversion:
trust never imports git). Nothing heavy is imported for ``checkout``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from ml_integrity.errors import UsageError
from ml_integrity.trust.backends import Backends, SigstoreRoots
from ml_integrity.trust.settings import CERT_CHAIN, PUBLIC_KEY

if TYPE_CHECKING:
    from ml_integrity.core.verifying import BundleVerifier
    from ml_integrity.trust.policy import (
        ChainRule,
        KeyRule,
        Policy,
        PolicySource,
        TrustedSigner,
    )
    from ml_integrity.trust.policy_source import RepositoryReader

__all__ = [
    "MaterialReader",
    "Purpose",
    "SigstoreRoots",
    "Trust",
    "TrustRequest",
    "resolve_trust",
]

Purpose = Literal["model", "repository", "checkout", "clone", "policy", "action"]

_SETTING_NAMES = {
    PUBLIC_KEY: "ml-integrity.publicKey",
    CERT_CHAIN: "ml-integrity.certChain",
    "ml-integrity.policy": "ml-integrity.policy",
}
_NO_TRUST_HINT = (
    "pass the signer's public key with --key PUB, a root CA with --cert-chain CA, "
    "a Sigstore identity with --identity SAN --issuer URL (or --github-repository), "
    "or a policy with --policy FILE (or git config ml-integrity.policy FILE)"
)


class MaterialReader(Protocol):
    """Reads trust material an entry point names (the Action's inputs)."""

    def read(self, value: str, what: str) -> tuple[bytes, str]:
        """The bytes ``value`` names (a path, or PEM text) and where they came from."""
        ...


@dataclass(frozen=True)
class TrustRequest:
    """What an entry point was told about trust, before resolution.

    Values are as given: paths (or, for the Action, paths or PEM text), the
    Sigstore identity options, the policy and its trusted base revision, the
    rollback options and the Sigstore root options. Empty means not given.
    """

    identity: str | None = None
    identity_regex: str | None = None
    issuer: str | None = None
    github_repository: str | None = None
    github_ref: str | None = None
    github_workflow: str | None = None
    keys: tuple[str, ...] = ()
    cert_chain: tuple[str, ...] = ()
    policy: str | None = None
    policy_base: str | None = None
    not_older_than: int | None = None
    repository: str | None = None
    roots: SigstoreRoots = field(default_factory=SigstoreRoots)
    trusted_root: str | None = None
    """The Action's ``trusted-root`` input (read through the reader)."""

    def identity_options(self) -> dict[str, str | None]:
        from ml_integrity.trust.policy import IDENTITY_FIELDS

        return {f: getattr(self, f) for f in IDENTITY_FIELDS}

    def policy_options(self) -> bool:
        """Any trust option beyond --key / --cert-chain (identities, roots, policy, rollback)?"""
        return (
            any(self.identity_options().values())
            or self.roots.trusted_root_file is not None
            or self.roots.offline
            or self.roots.staging
            or self.policy is not None
            or self.policy_base is not None
            or self.not_older_than is not None
            or self.repository is not None
        )


@dataclass(frozen=True)
class Trust:
    """The trust of one run: a policy (with where it came from), or git-config settings.

    ``policy`` is what every verification applies (its ``source`` says where
    it came from; every verdict names it). Without a policy, ``settings``
    decide: the ``ml-integrity.publicKey`` / ``ml-integrity.certChain``
    settings (lower-case keys, as git config lists them), which name one
    trusted key or root certificate file. ``roots`` are the Sigstore root
    options, ``notes`` go into the verdict, and ``files`` are the trust files
    read from disk (a staged change must not bring them).
    """

    policy: Policy | None = None
    settings: tuple[tuple[str, str], ...] = ()
    roots: SigstoreRoots = field(default_factory=SigstoreRoots)
    notes: tuple[str, ...] = ()
    files: tuple[Path, ...] = ()

    @property
    def source(self) -> PolicySource | None:
        return None if self.policy is None else self.policy.source

    def describe(self) -> str | None:
        """The policy's name for verdicts (None for settings trust)."""
        return None if self.policy is None else self.policy.source.describe()

    def settings_map(self) -> dict[str, str]:
        return dict(self.settings)

    def git_config(self) -> dict[str, str]:
        """The key and root-certificate settings, as ``git config`` names them."""
        return {_SETTING_NAMES.get(k, k): v for k, v in self.settings if k in _SETTING_NAMES}

    def backends(self) -> Backends:
        """The verification backends the policy's signers need."""
        return Backends(self.roots)

    def verifier(self, base: Path) -> BundleVerifier:
        """The verifier this trust implies (relative settings paths resolve against ``base``)."""
        if self.policy is not None:
            from ml_integrity.trust.verdict import PolicyVerifier

            return PolicyVerifier(self.policy, self.backends())
        from ml_integrity.trust.settings import verifier_from_settings

        return verifier_from_settings(self.settings_map(), base=base)

    def offline(self) -> Trust:
        """This trust, verified without network (a commit hook never waits for TUF)."""
        return replace(self, roots=replace(self.roots, offline=True))


def resolve_trust(
    request: TrustRequest,
    purpose: Purpose,
    *,
    repo: RepositoryReader | None = None,
    reader: MaterialReader | None = None,
) -> Trust:
    """The one trust of an entry point (see the module's docstring for ``purpose``).

    ``repo`` is the repository being verified (``None`` outside one; needed
    for ``repository`` and ``checkout``); ``reader`` reads the Action's trust
    inputs. Raises UsageError or ConfigError when the inputs contradict each
    other or name unreadable or invalid material.
    """
    if purpose == "checkout":
        if repo is None:
            raise UsageError("no repository to read the trust settings from")
        return _checkout_trust(repo, request.roots)
    if purpose == "clone":
        return _clone_trust(request)
    if purpose == "action":
        if reader is None:
            raise UsageError("the Action's trust needs a reader for its inputs")
        return _action_trust(request, reader)
    if purpose == "policy":
        return _policy_trust(request, repo)
    if purpose == "model":
        return _model_trust(request, repo)
    if repo is None:
        raise UsageError("no repository to verify")
    return _repository_trust(request, repo)


# --- the command line -----------------------------------------------------------------


def _names() -> dict[str, str]:
    from ml_integrity.trust.policy import IDENTITY_FIELDS

    return {f: "--" + f.replace("_", "-") for f in IDENTITY_FIELDS}


def _key_rule_from_file(path: Path) -> KeyRule:
    from ml_integrity.trust.keys import key_hint, load_public_key, public_pem
    from ml_integrity.trust.policy import KeyRule

    key = load_public_key(path)
    return KeyRule(pem=public_pem(key), label=str(path), fingerprint=key_hint(key), path=str(path))


def _chain_rule_from_files(paths: tuple[Path, ...]) -> ChainRule:
    from ml_integrity.trust.keys import chain_rule

    parts = []
    for p in paths:
        try:
            parts.append((p.read_bytes(), str(p)))
        except FileNotFoundError:
            raise UsageError("certificate file not found", path=p) from None
        except OSError as exc:
            raise UsageError(f"cannot read: {exc.strerror}", path=p) from None
    return chain_rule(parts, paths=[str(p) for p in paths])


def _command_line_policy(request: TrustRequest) -> Policy | None:
    """The policy the command line's signers make, or None if there are none."""
    from ml_integrity.trust.policy import TrustedSigner, identity_rule, inline

    signers: list[TrustedSigner] = []
    rule = identity_rule(**request.identity_options(), names=_names())
    if rule is not None:
        signers.append(TrustedSigner("identity", rule, "command line"))
    if request.keys:
        signers.append(TrustedSigner("key", _key_rule_from_file(Path(request.keys[0])), "--key"))
    if request.cert_chain:
        chain = _chain_rule_from_files(tuple(Path(p) for p in request.cert_chain))
        signers.append(TrustedSigner("cert-chain", chain, "--cert-chain"))
    if not signers:
        return None
    if request.policy is not None:
        raise UsageError(
            "give either --policy or trust options (--identity, --key, ...), not both",
            hint="put the signers into the policy file",
        )
    return inline(signers)


def _with_rollback(request: TrustRequest, policy: Policy) -> Policy:
    if request.not_older_than is None and request.repository is None:
        return policy
    return policy.with_rollback(
        not_older_than=request.not_older_than, repository=request.repository
    )


def _policy_files(policy: Policy) -> list[Path]:
    """The trust files a policy was read from (none for the in-repository policy)."""
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


def _policy_trust_value(
    request: TrustRequest, policy: Policy, files: list[Path], notes: tuple[str, ...] = ()
) -> Trust:
    policy = _with_rollback(request, policy)
    return Trust(
        policy=policy,
        roots=request.roots,
        notes=notes,
        files=tuple(files + _policy_files(policy)),
    )


def _model_trust(request: TrustRequest, repo: RepositoryReader | None) -> Trust:
    from ml_integrity.trust.policy_source import resolve

    inline_policy = _command_line_policy(request)
    if inline_policy is not None:
        return Trust(policy=_with_rollback(request, inline_policy), roots=request.roots)
    explicit = Path(request.policy) if request.policy is not None else None
    resolution = resolve(explicit=explicit, repo=repo, base=request.policy_base)
    if resolution.policy is None:
        raise UsageError("no trust material given", hint=_NO_TRUST_HINT)
    return Trust(
        policy=_with_rollback(request, resolution.policy),
        roots=request.roots,
        notes=resolution.notes,
    )


def _checkout_trust(repo: RepositoryReader, roots: SigstoreRoots) -> Trust:
    """The git config's policy, else its keys (see the module docstring)."""
    from ml_integrity.errors import ConfigError
    from ml_integrity.trust.policy import GIT_CONFIG_POLICY
    from ml_integrity.trust.policy_source import load_policy

    config = repo.config_matching(r"^ml-integrity\.")  # one git run for every setting
    configured = config.get(GIT_CONFIG_POLICY)
    if not configured:
        return _from_config(config, repo.root, roots, ())
    path = Path(configured).expanduser()
    path = path if path.is_absolute() else repo.root / path
    root = repo.root.resolve()
    resolved = path.resolve()
    if resolved.is_relative_to(root) and not resolved.is_relative_to(root / ".git"):
        raise ConfigError(
            "git config ml-integrity.policy names a file in the work tree, which the "
            "checkout being verified can rewrite",
            path=path,
            hint="keep the policy outside the repository (or under .git/), and point "
            "'git config ml-integrity.policy' at it",
        )
    policy = load_policy(path, "git config")
    return _policy_trust_value(TrustRequest(roots=roots), policy, [path])


def _from_config(
    config: Mapping[str, str], root: Path, roots: SigstoreRoots, files: tuple[Path, ...]
) -> Trust:
    named = [config[k] for k in (PUBLIC_KEY, CERT_CHAIN) if config.get(k)]
    return Trust(
        settings=tuple(sorted(config.items())),
        roots=roots,
        files=(*files, *(root / Path(v).expanduser() for v in named)),
    )


def _repository_trust(request: TrustRequest, repo: RepositoryReader) -> Trust:
    """Command line first; else git config (policy, then key or chain); else the
    in-repository policy at a trusted base. With nothing at all, the repository's
    git config decides (and the verdict reports that no trust root is configured)."""
    from ml_integrity.trust.policy import GIT_CONFIG_BASE, GIT_CONFIG_POLICY
    from ml_integrity.trust.policy_source import resolve, trust_config

    files: list[Path] = []
    roots = request.roots
    if roots.trusted_root_file is not None:
        files.append(roots.trusted_root_file)
    policy_options = request.policy_options()
    if not policy_options and (request.keys or len(request.cert_chain) == 1):
        # the fast path: read like git config trust (no cryptography unless needed)
        if request.keys and request.cert_chain:
            raise UsageError("give only one of --key and --cert-chain")
        given = request.keys[0] if request.keys else request.cert_chain[0]
        path = Path(os.path.abspath(given))
        if not path.is_file():
            raise UsageError("trust file not found", path=path)
        setting = PUBLIC_KEY if request.keys else CERT_CHAIN
        return Trust(settings=((setting, str(path)),), roots=roots, files=(*files, path))
    inline_policy = _command_line_policy(request)
    if inline_policy is not None:
        return _policy_trust_value(request, inline_policy, files)
    if request.policy is not None:
        from ml_integrity.trust.policy_source import load_policy

        return _policy_trust_value(
            request, load_policy(Path(request.policy), "command line"), files
        )
    config = trust_config(repo)  # one git run for every setting
    configured = config.get(GIT_CONFIG_POLICY)
    named = [config[k] for k in (PUBLIC_KEY, CERT_CHAIN) if config.get(k)]
    base = request.policy_base or config.get(GIT_CONFIG_BASE) or None
    if not configured and (named or base is None):
        return _from_config(config, repo.root, roots, tuple(files))
    resolution = resolve(explicit=None, repo=repo, base=base, config=config)
    if resolution.policy is None:
        return _from_config(config, repo.root, roots, tuple(files))
    return _policy_trust_value(request, resolution.policy, files, resolution.notes)


def _clone_trust(request: TrustRequest) -> Trust:
    settings = []
    for setting, given in (
        (PUBLIC_KEY, request.keys[0] if request.keys else None),
        (CERT_CHAIN, request.cert_chain[0] if request.cert_chain else None),
    ):
        if given is None:
            continue
        path = Path(given)
        if not path.is_file():
            raise UsageError("trust file not found", path=path, hint="give a PEM file")
        settings.append((setting, str(path.resolve())))
    if request.policy is not None:
        from ml_integrity.trust.policy import GIT_CONFIG_POLICY
        from ml_integrity.trust.policy_source import load_policy

        path = Path(request.policy).resolve()
        load_policy(path, "command line")  # refused now, not at the first checkout
        settings.append((GIT_CONFIG_POLICY, str(path)))
    return Trust(settings=tuple(settings), roots=request.roots)


def _policy_trust(request: TrustRequest, repo: RepositoryReader | None) -> Trust:
    from ml_integrity.trust.policy_source import resolve

    if request.policy is not None:
        if request.policy_base is not None:
            raise UsageError("--policy-base applies only without FILE")
        resolution = resolve(explicit=Path(request.policy), repo=None)
        assert resolution.policy is not None
        return Trust(policy=resolution.policy, roots=request.roots)
    resolution = resolve(explicit=None, repo=repo, base=request.policy_base)
    if resolution.policy is None:
        raise UsageError(
            "no policy applies here",
            hint="give a FILE, set 'git config ml-integrity.policy FILE', or commit "
            ".ml-integrity/policy.yaml and name a trusted base with --policy-base",
        )
    return Trust(policy=resolution.policy, roots=request.roots, notes=resolution.notes)


# --- the Action -----------------------------------------------------------------------


def _pem_blocks(data: bytes) -> list[bytes]:
    blocks = []
    current: list[bytes] = []
    for line in data.splitlines(keepends=True):
        if line.startswith(b"-----BEGIN"):
            current = [line]
        elif current:
            current.append(line)
            if line.startswith(b"-----END"):
                blocks.append(b"".join(current))
                current = []
    return blocks


def _action_policy(request: TrustRequest, reader: MaterialReader) -> Policy:
    """The trust policy made from the Action's inputs (never from the repository itself)."""
    from ml_integrity.trust.keys import chain_rule, key_rule
    from ml_integrity.trust.policy import (
        IDENTITY_FIELDS,
        PolicySource,
        TrustedSigner,
        identity_rule,
        inline,
    )
    from ml_integrity.trust.policy_yaml import parse_policy

    signers: list[TrustedSigner] = []
    rule = identity_rule(
        **request.identity_options(), names={f: f.replace("_", "-") for f in IDENTITY_FIELDS}
    )
    if rule is not None:
        signers.append(TrustedSigner("identity", rule, "action input"))
    for n, value in enumerate(request.keys):
        data, origin = reader.read(value, "public key")
        blocks = _pem_blocks(data) or [data]
        for m, block in enumerate(blocks):
            name = f"public-key-{n + 1}" + (f".{m + 1}" if len(blocks) > 1 else "")
            signers.append(TrustedSigner(name, key_rule(block, origin), "action input public-key"))
    if request.cert_chain:
        parts = [reader.read(value, "root certificate") for value in request.cert_chain]
        signers.append(TrustedSigner("cert-chain", chain_rule(parts), "action input cert-chain"))
    if request.policy:
        if signers:
            raise UsageError(
                "give either policy or trust inputs (public-key, cert-chain, identity...), "
                "not both",
                hint="put the signers into the policy file",
            )
        text, origin = reader.read(request.policy, "policy")
        folder = Path(request.policy).parent

        def read(rel: str) -> bytes:
            target = rel if Path(rel).is_absolute() else str(folder / rel)
            return reader.read(target, "file named by the policy")[0]

        return parse_policy(
            text, source=PolicySource("action input", origin), label=origin, reader=read
        )
    if not signers:
        raise UsageError(
            "no trust given to the Action",
            hint="set 'public-key', 'cert-chain', a Sigstore identity ('identity' + 'issuer', "
            "or 'github-repository') or 'policy'; trust never comes from the repository",
        )
    return inline(signers)


def _action_trust(request: TrustRequest, reader: MaterialReader) -> Trust:
    """The Action's trust. Its verification results are never cached: a checkout that a
    self-hosted runner reuses never answers from a verification made under other trust."""
    policy = _action_policy(request, reader)
    roots = replace(request.roots, cacheable=False)
    if request.trusted_root:
        roots = replace(
            roots, trusted_root=reader.read(request.trusted_root, "Sigstore trusted root")
        )
    return Trust(policy=policy, roots=roots)
