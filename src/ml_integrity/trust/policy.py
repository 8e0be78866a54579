"""The trust policy: who may sign, what must be signed, what is refused.

A policy is a YAML file (``docs/trust.md`` has the reference)::

    version: 1
    signers:
      release:                      # GitHub Actions release workflow, keyless
        sigstore:
          github:
            repository: octo-org/models
            workflow: .github/workflows/release.yml
            ref: refs/heads/main
      security-team:
        sigstore:
          identity: security@example.com
          issuer: https://accounts.google.com
      airgap:
        key: keys/airgap.pub        # a path relative to this file, or inline PEM
    require:
      all-of: [release, security-team]
    deny:
      digests: [sha256:...]
    pickle: block
    rollback:
      not-older-than: 12

Parsing is strict and fails closed: an unknown or duplicate key, a value of
the wrong type, an unknown signer name or an unreadable key is a
:class:`~ml_integrity.errors.ConfigError` naming the file and line.

Where a policy comes from, in order (:func:`resolve`): the command line (or
the Action's input), then the user's git config ``ml-integrity.policy``, then
the in-repository ``.ml-integrity/policy.yaml``, which is honoured only as
committed at a trusted base revision, never as the change under
verification has it: a change cannot bring its own signer.

This module is pure apart from reading files through a reader callback; it
knows nothing of Sigstore or git (see :class:`RepositoryReader`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Literal, NoReturn, Protocol

from ml_integrity.errors import ConfigError, UsageError

if TYPE_CHECKING:
    import yaml

__all__ = [
    "GITHUB_ISSUER",
    "GIT_CONFIG_BASE",
    "GIT_CONFIG_POLICY",
    "IDENTITY_FIELDS",
    "IN_REPO_POLICY",
    "ChainRule",
    "IdentityRule",
    "KeyRule",
    "PickleRule",
    "Policy",
    "PolicySource",
    "RepositoryReader",
    "Requirement",
    "Rollback",
    "SignerRule",
    "SigstoreInstance",
    "TrustedSigner",
    "glob_match",
    "identity_rule",
    "load_policy",
    "parse_policy",
    "resolve",
    "satisfy",
]

POLICY_VERSION = 1
IN_REPO_POLICY = ".ml-integrity/policy.yaml"
GIT_CONFIG_POLICY = "ml-integrity.policy"
GIT_CONFIG_BASE = "ml-integrity.policybase"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_REPO_RE = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")

Reader = Callable[[str], bytes]
"""Reads a file named in a policy (a path relative to the policy's folder)."""


# --- the model ----------------------------------------------------------------


@dataclass(frozen=True)
class IdentityRule:
    """A Sigstore (keyless) signer: the OIDC issuer plus identity constraints.

    Every constraint given must hold. ``identity`` is matched exactly against
    the certificate's subject alternative names, ``identity_regex`` must match
    one of them entirely. The GitHub fields match the certificate's GitHub
    Actions extensions (``github_repository``: ``OWNER/REPO``;
    ``github_ref``: ``refs/heads/main``, ``refs/tags/v1``) and the workflow
    file that signed (the SAN): ``github_workflow`` is a path in the
    repository (``.github/workflows/release.yml``, or just ``release.yml``)
    or, for a reusable workflow kept elsewhere,
    ``OWNER/REPO/.github/workflows/FILE``.
    """

    issuer: str
    identity: str | None = None
    identity_regex: str | None = None
    github_repository: str | None = None
    github_ref: str | None = None
    github_workflow: str | None = None

    @property
    def kind(self) -> str:
        return "sigstore"

    @property
    def is_github(self) -> bool:
        return bool(self.github_repository or self.github_ref or self.github_workflow)

    def workflow_path(self) -> tuple[str | None, str] | None:
        """``(repository or None, path)`` of the required workflow file."""
        wf = self.github_workflow
        if wf is None:
            return None
        if "/" not in wf:
            return self.github_repository, f".github/workflows/{wf}"
        if wf.startswith(".github/"):
            return self.github_repository, wf
        owner, repo, rest = [*wf.split("/", 2), "", ""][:3]
        return f"{owner}/{repo}", rest

    def describe(self) -> str:
        parts: list[str] = []
        if self.identity:
            parts.append(f"identity {self.identity}")
        if self.identity_regex:
            parts.append(f"identity matching /{self.identity_regex}/")
        if self.github_repository:
            parts.append(f"repository {self.github_repository}")
        if self.github_workflow:
            parts.append(f"workflow {self.github_workflow}")
        if self.github_ref:
            parts.append(f"ref {self.github_ref}")
        who = ", ".join(parts)
        if self.is_github and self.issuer == GITHUB_ISSUER:
            return f"GitHub Actions ({who})"
        return f"{who} issued by {self.issuer}"

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"kind": "sigstore", "issuer": self.issuer}
        for key in (
            "identity",
            "identity_regex",
            "github_repository",
            "github_ref",
            "github_workflow",
        ):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


IDENTITY_FIELDS = (
    "identity",
    "identity_regex",
    "issuer",
    "github_repository",
    "github_ref",
    "github_workflow",
)
"""The Sigstore identity options, as :func:`identity_rule` takes them."""


def identity_rule(
    *,
    identity: str | None = None,
    identity_regex: str | None = None,
    issuer: str | None = None,
    github_repository: str | None = None,
    github_ref: str | None = None,
    github_workflow: str | None = None,
    names: Mapping[str, str],
) -> IdentityRule | None:
    """The Sigstore signer that command-line options or Action inputs describe.

    None when no identity option is given. ``names`` maps each field of
    :data:`IDENTITY_FIELDS` to how the caller spells it in messages
    (``--identity`` on the command line, ``identity`` for an Action input).
    Empty strings count as not given. Contradictory or too weak options (an
    issuer alone would trust every account it issues) are a
    :class:`~ml_integrity.errors.UsageError`. The policy file's ``sigstore:``
    signers are checked by the parser, which names the line.
    """
    n = {f: names.get(f, f) for f in IDENTITY_FIELDS}
    github = bool(github_repository or github_ref or github_workflow)
    if not (identity or identity_regex or issuer or github):
        return None
    if identity and identity_regex:
        raise UsageError(f"give {n['identity']} or {n['identity_regex']}, not both")
    if not (identity or identity_regex or github):
        raise UsageError(
            f"{n['issuer']} alone would trust every identity of that issuer",
            hint=f"add {n['identity']} (or {n['identity_regex']}, or {n['github_repository']})",
        )
    issuer = issuer or (GITHUB_ISSUER if github else None)
    if not issuer:
        given = n["identity_regex"] if identity_regex else n["identity"]
        raise UsageError(
            f"{given} needs {n['issuer']} (the OIDC provider that vouched for it)",
            hint="for example https://accounts.google.com or " + GITHUB_ISSUER,
        )
    if identity_regex:
        try:
            re.compile(identity_regex)
        except re.error as exc:
            raise UsageError(
                f"{n['identity_regex']} is not a valid regular expression: {exc}"
            ) from None
    wf = github_workflow
    if wf and "@" in wf:
        raise UsageError(
            f"{n['github_workflow']} is a file path; give the ref with {n['github_ref']}"
        )
    if wf and not github_repository and ("/" not in wf or wf.startswith(".github/")):
        raise UsageError(
            f"{n['github_workflow']} needs {n['github_repository']} (OWNER/REPO)",
            hint="a workflow file is named within its repository",
        )
    if github_ref and not github_ref.startswith("refs/"):
        raise UsageError(
            f"{n['github_ref']} {github_ref!r} is not a full ref name",
            hint=f"write refs/heads/{github_ref} or refs/tags/{github_ref}",
        )
    return IdentityRule(
        issuer=issuer,
        identity=identity or None,
        identity_regex=identity_regex or None,
        github_repository=github_repository or None,
        github_ref=github_ref or None,
        github_workflow=wf or None,
    )


@dataclass(frozen=True)
class KeyRule:
    """A public key (PEM) whose signatures are trusted."""

    pem: bytes
    label: str
    """Where the key came from, for messages (a path, or 'inline key at FILE:LINE')."""
    fingerprint: str = ""
    """The OMS key hint: hex SHA-256 of the key's PEM SubjectPublicKeyInfo."""
    path: str | None = None
    """The key file on disk, when it came from one (not inline, not from git)."""

    @property
    def kind(self) -> str:
        return "key"

    def describe(self) -> str:
        return f"public key {self.fingerprint[:16]} ({self.label})"

    def to_json(self) -> dict[str, object]:
        return {"kind": "key", "source": self.label, "key_hint": self.fingerprint}


@dataclass(frozen=True)
class ChainRule:
    """Trusted root certificate(s) for certificate-method bundles."""

    pem: bytes
    label: str
    subjects: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    """The certificate files on disk, when they came from files."""

    @property
    def kind(self) -> str:
        return "certificate-chain"

    def describe(self) -> str:
        roots = ", ".join(self.subjects) or "?"
        return f"certificates issued under {roots} ({self.label})"

    def to_json(self) -> dict[str, object]:
        return {"kind": "certificate-chain", "source": self.label, "roots": list(self.subjects)}


SignerRule = IdentityRule | KeyRule | ChainRule


@dataclass(frozen=True)
class TrustedSigner:
    """A named signer of the policy (or an entry of the deny list)."""

    name: str
    rule: SignerRule
    where: str = ""
    """``FILE:LINE`` of its definition."""

    def describe(self) -> str:
        return f"{self.name}: {self.rule.describe()}"


@dataclass(frozen=True)
class Requirement:
    """How many of which signers must have signed (each in its own bundle)."""

    mode: Literal["any-of", "all-of", "k-of-n"]
    signers: tuple[str, ...]
    k: int

    def describe(self) -> str:
        names = ", ".join(self.signers)
        if self.mode == "any-of":
            return f"at least one of {names} must sign"
        if self.mode == "all-of":
            if len(self.signers) == 1:
                return f"{names} must sign"
            return f"each of {names} must sign (one bundle each)"
        return f"at least {self.k} of {names} must sign (one bundle each)"

    def to_json(self) -> dict[str, object]:
        return {"mode": self.mode, "signers": list(self.signers), "k": self.k}


@dataclass(frozen=True)
class PickleRule:
    """The pickle rule the scanner applies (``scanning.ScanPolicy`` consumes it).

    ``block`` refuses every pickle; ``allowlist`` accepts pickles that only
    use allowlisted globals. ``allowed_digests`` are reviewed files accepted
    by their SHA-256 either way.
    """

    mode: Literal["block", "allowlist"] = "block"
    allowed_digests: frozenset[str] = frozenset()

    def describe(self) -> str:
        base = (
            "every pickle is refused"
            if self.mode == "block"
            else "pickles are accepted only when every global they load is on the allowlist"
        )
        if self.allowed_digests:
            base += f"; {len(self.allowed_digests)} reviewed file(s) allowed by digest"
        return base


@dataclass(frozen=True)
class Rollback:
    """Rollback protection: the signed manifest's version and repository."""

    not_older_than: int | None = None
    repository: str | None = None

    def describe(self) -> list[str]:
        out = []
        if self.not_older_than is not None:
            out.append(f"the signed version must be {self.not_older_than} or newer")
        if self.repository is not None:
            out.append(f"the signature must be bound to repository {self.repository}")
        return out


@dataclass(frozen=True)
class SigstoreInstance:
    """Which Sigstore instance keyless signatures must come from."""

    instance: Literal["production", "staging"] = "production"
    trusted_root: bytes | None = None
    trusted_root_label: str | None = None

    def describe(self) -> str:
        if self.trusted_root is not None:
            return f"the trusted root in {self.trusted_root_label}"
        return f"Sigstore {self.instance} (public-good instance)"


@dataclass(frozen=True)
class PolicySource:
    """Where a policy came from; every verdict names it."""

    kind: Literal["command line", "git config", "in-repo", "action input"]
    path: str | None = None
    revision: str | None = None
    """For the in-repo policy: the trusted base revision it was read at."""

    def describe(self) -> str:
        if self.kind == "command line" and self.path is None:
            return "command-line options"
        where = self.path or "?"
        if self.kind == "in-repo":
            rev = (self.revision or "?")[:12]
            return f"{where} at trusted base {rev} (in-repository policy)"
        if self.kind == "git config":
            return f"{where} (from git config {GIT_CONFIG_POLICY})"
        return f"{where} ({self.kind})"

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "path": self.path, "revision": self.revision}


@dataclass(frozen=True)
class Policy:
    signers: tuple[TrustedSigner, ...] = ()
    requirement: Requirement | None = None
    """None: any one of the signers suffices."""
    deny_digests: frozenset[str] = frozenset()
    deny_signers: tuple[TrustedSigner, ...] = ()
    deny_paths: tuple[str, ...] = ()
    """Path patterns refused even when signed (globs, as ``artifacts.paths``)."""
    allow_digests: frozenset[str] = frozenset()
    artifact_paths: tuple[str, ...] = ()
    must_sign: tuple[str, ...] = ("**",)
    pickle: PickleRule = field(default_factory=PickleRule)
    rollback: Rollback = field(default_factory=Rollback)
    sigstore: SigstoreInstance = field(default_factory=SigstoreInstance)
    source: PolicySource = field(default_factory=lambda: PolicySource("command line"))
    warnings: tuple[str, ...] = ()

    @property
    def effective_requirement(self) -> Requirement:
        if self.requirement is not None:
            return self.requirement
        names = tuple(s.name for s in self.signers)
        return Requirement("any-of", names, 1 if names else 0)

    def signer(self, name: str) -> TrustedSigner:
        for s in self.signers:
            if s.name == name:
                return s
        raise KeyError(name)

    def denies(self, path: str, digest: str | None) -> str | None:
        """Why the policy refuses the file ``path`` with ``digest`` (None: it does not)."""
        if digest is not None and digest in self.deny_digests:
            return "denied digest"
        for pattern in self.deny_paths:
            if glob_match(pattern, path):
                return f"denied path {pattern}"
        return None

    def must_be_signed(self, path: str) -> bool:
        return any(glob_match(p, path) for p in self.must_sign)

    def is_artifact(self, path: str) -> bool:
        return any(glob_match(p, path) for p in self.artifact_paths)

    def with_rollback(
        self, *, not_older_than: int | None = None, repository: str | None = None
    ) -> Policy:
        """This policy, with command-line rollback options added (stricter wins)."""
        from dataclasses import replace

        current = self.rollback
        n = current.not_older_than
        if not_older_than is not None:
            n = not_older_than if n is None else max(n, not_older_than)
        repo = current.repository
        if repository is not None:
            if repo is not None and repo != repository:
                raise ConfigError(
                    f"the policy binds repository {repo!r}, the command line {repository!r}",
                    hint="give one repository identity",
                )
            repo = repository
        return replace(self, rollback=Rollback(n, repo))

    def explain(self) -> list[str]:
        """The policy in plain words, one statement per line."""
        out = [f"Policy: {self.source.describe()}"]
        if self.signers:
            out.append(f"Trusted signers ({len(self.signers)}):")
            out.extend(f"  {s.describe()}" for s in self.signers)
        else:
            out.append("Trusted signers: none (every signature will be refused)")
        if self.signers:
            out.append(f"Requirement: {self.effective_requirement.describe()}.")
        if any(isinstance(s.rule, IdentityRule) for s in self.signers):
            out.append(f"Keyless signatures are checked against {self.sigstore.describe()}.")
        if self.deny_signers:
            out.append("Never trusted, even when a rule above matches:")
            out.extend(f"  {s.rule.describe()}" for s in self.deny_signers)
        if self.deny_digests:
            out.append(
                f"Refused content: {len(self.deny_digests)} digest(s), "
                "even when a trusted signer signed it."
            )
        if self.deny_paths:
            out.append("Refused paths, even when signed: " + ", ".join(self.deny_paths) + ".")
        if self.allow_digests:
            out.append(
                f"Accepted without a signature: files with one of {len(self.allow_digests)} "
                "reviewed digest(s)."
            )
        if self.artifact_paths:
            out.append("Artifacts (besides Git LFS files): " + ", ".join(self.artifact_paths) + ".")
        if self.must_sign == ("**",):
            out.append("Every file must be covered by the signature.")
        else:
            out.append(
                "Files that must be covered by the signature: "
                + (", ".join(self.must_sign) if self.must_sign else "none")
                + "; other files may be unsigned."
            )
        out.append(f"Pickles: {self.pickle.describe()}.")
        rollback = self.rollback.describe()
        if rollback:
            out.extend(f"Rollback: {line}." for line in rollback)
        else:
            out.append("Rollback: no version or repository binding is required.")
        out.extend(f"warning: {w}" for w in self.warnings)
        return out

    def fingerprint(self) -> str:
        """A digest of everything that decides what this policy accepts.

        Where the policy came from and its warnings are left out; the key and
        certificate material, identities, lists and rules are in. Keys caches
        of verification results (see ``verifying.trust_fingerprint``).
        """
        import hashlib
        import json

        def rule(r: SignerRule) -> object:
            if isinstance(r, KeyRule | ChainRule):
                return [r.kind, hashlib.sha256(r.pem).hexdigest()]
            return [r.kind, r.to_json()]

        root = self.sigstore.trusted_root
        doc = {
            "signers": [[s.name, rule(s.rule)] for s in self.signers],
            "require": self.effective_requirement.to_json(),
            "deny_digests": sorted(self.deny_digests),
            "deny_signers": [rule(s.rule) for s in self.deny_signers],
            **({"deny_paths": list(self.deny_paths)} if self.deny_paths else {}),
            "allow_digests": sorted(self.allow_digests),
            "artifacts": list(self.artifact_paths),
            "must_sign": list(self.must_sign),
            "pickle": [self.pickle.mode, sorted(self.pickle.allowed_digests)],
            "rollback": [self.rollback.not_older_than, self.rollback.repository],
            "sigstore": [
                self.sigstore.instance,
                None if root is None else hashlib.sha256(root).hexdigest(),
            ],
        }
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(b"ml-integrity policy v1\0" + text.encode()).hexdigest()

    def to_json(self) -> dict[str, object]:
        return {
            "source": self.source.to_json(),
            "signers": {s.name: s.rule.to_json() for s in self.signers},
            "require": self.effective_requirement.to_json(),
            "deny": {
                "digests": sorted(self.deny_digests),
                "signers": [s.rule.to_json() for s in self.deny_signers],
                "paths": list(self.deny_paths),
            },
            "allow": {"digests": sorted(self.allow_digests)},
            "artifacts": {"paths": list(self.artifact_paths), "must_sign": list(self.must_sign)},
            "pickle": {
                "mode": self.pickle.mode,
                "allowed_digests": sorted(self.pickle.allowed_digests),
            },
            "rollback": {
                "not_older_than": self.rollback.not_older_than,
                "repository": self.rollback.repository,
            },
            "sigstore": {
                "instance": self.sigstore.instance,
                "trusted_root": self.sigstore.trusted_root_label,
            },
            "warnings": list(self.warnings),
        }


# --- globs ----------------------------------------------------------------------


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                i += 2
                if i < n and pattern[i] == "/":
                    out.append("(?:.*/)?")
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i + 2)
            if j == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"(?!/)[{body.replace(chr(92), chr(92) * 2)}]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out))


_GLOB_CACHE: dict[str, re.Pattern[str]] = {}


def glob_match(pattern: str, path: str) -> bool:
    """Match a POSIX ``path`` against a glob.

    ``*`` and ``?`` stay within one path component, ``**`` spans any number
    of components, ``[abc]`` is a character class. A pattern without ``/``
    matches the file name at any depth (as in ``.gitattributes``); a trailing
    ``/`` matches everything below a folder.
    """
    pat = pattern.strip()
    if pat.endswith("/"):
        pat += "**"
    if "/" not in pat:
        pat = "**/" + pat
    pat = pat.lstrip("/")
    rx = _GLOB_CACHE.get(pat)
    if rx is None:
        rx = _GLOB_CACHE[pat] = _glob_regex(pat)
    return rx.fullmatch(path) is not None


# --- thresholds -----------------------------------------------------------------


def satisfy(
    requirement: Requirement, signatures: Mapping[str, set[str]]
) -> tuple[bool, dict[str, str]]:
    """Whether the signatures meet the requirement, and which signer counted for which name.

    ``signatures`` maps each distinct actual signer (a certificate identity,
    a key) to the policy names it matches. One actual signer counts for at
    most one name (a maximum bipartite matching), so one person holding two
    roles cannot satisfy a two-person rule alone.
    """
    wanted = set(requirement.signers)
    match_of_name: dict[str, str] = {}

    def augment(actual: str, seen: set[str]) -> bool:
        for name in sorted(signatures[actual] & wanted):
            if name in seen:
                continue
            seen.add(name)
            holder = match_of_name.get(name)
            if holder is None or augment(holder, seen):
                match_of_name[name] = actual
                return True
        return False

    for actual in sorted(signatures):
        augment(actual, set())
    count = len(match_of_name)
    if requirement.mode == "any-of":
        ok = count >= 1
    elif requirement.mode == "all-of":
        ok = count == len(wanted)
    else:
        ok = count >= requirement.k
    return ok, match_of_name


# --- parsing --------------------------------------------------------------------


class _Doc:
    """Walks a composed YAML node tree, with errors that name file and line."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.warnings: list[str] = []

    def where(self, node: yaml.Node) -> str:
        return f"{self.label}:{node.start_mark.line + 1}"

    def fail(self, node: yaml.Node, message: str, hint: str | None = None) -> NoReturn:
        raise ConfigError(message, path=self.where(node), hint=hint)

    def warn(self, node: yaml.Node, message: str) -> None:
        self.warnings.append(f"{self.where(node)}: {message}")

    def mapping(
        self,
        node: yaml.Node,
        what: str,
        allowed: Iterable[str],
        *,
        required: Iterable[str] = (),
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        import yaml

        if not isinstance(node, yaml.MappingNode):
            self.fail(node, f"{what} must be a mapping (key: value lines)")
        allowed = list(allowed)
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
                self.fail(key_node, f"keys in {what} must be plain names")
            key = str(key_node.value)
            if key in out:
                self.fail(
                    key_node,
                    f"duplicate key {key!r} in {what}",
                    hint=f"the first one is on line {out[key][0].start_mark.line + 1}",
                )
            if allowed and key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                self.fail(
                    key_node,
                    f"unknown key {key!r} in {what}",
                    hint=(f"did you mean {close[0]!r}? " if close else "")
                    + "allowed: "
                    + ", ".join(allowed),
                )
            out[key] = (key_node, value_node)
        missing = [k for k in required if k not in out]
        if missing:
            self.fail(node, f"{what} needs {', '.join(repr(m) for m in missing)}")
        return out

    def names(self, node: yaml.Node, what: str) -> list[tuple[yaml.Node, str]]:
        """The keys of a mapping whose keys are free-form names."""
        import yaml

        if not isinstance(node, yaml.MappingNode):
            self.fail(node, f"{what} must be a mapping of names")
        seen: dict[str, yaml.Node] = {}
        out = []
        for key_node, _ in node.value:
            name = self.string(key_node, f"a name in {what}")
            if name in seen:
                self.fail(key_node, f"{what}: {name!r} is defined twice")
            seen[name] = key_node
            out.append((key_node, name))
        return out

    def scalar(self, node: yaml.Node, what: str) -> yaml.ScalarNode:
        import yaml

        if not isinstance(node, yaml.ScalarNode):
            self.fail(node, f"{what} must be a single value")
        return node

    def string(self, node: yaml.Node, what: str) -> str:
        s = self.scalar(node, what)
        if s.tag != "tag:yaml.org,2002:str":
            kind = s.tag.rsplit(":", 1)[-1]
            self.fail(node, f"{what} must be text, not {kind} {s.value!r}", hint="quote it")
        value = str(s.value).strip() if "\n" not in str(s.value) else str(s.value)
        if not value:
            self.fail(node, f"{what} is empty")
        return value

    def integer(self, node: yaml.Node, what: str, *, minimum: int = 0) -> int:
        import yaml

        s = self.scalar(node, what)
        if s.tag != "tag:yaml.org,2002:int":
            self.fail(node, f"{what} must be a whole number, not {s.value!r}")
        value = yaml.constructor.SafeConstructor().construct_yaml_int(s)
        if not isinstance(value, int) or value < minimum:
            self.fail(node, f"{what} must be a whole number of at least {minimum}")
        return value

    def strings(self, node: yaml.Node, what: str) -> list[tuple[yaml.Node, str]]:
        """A list of strings (a single string is a list of one)."""
        import yaml

        if isinstance(node, yaml.ScalarNode):
            return [(node, self.string(node, what))]
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, f"{what} must be a list")
        return [(item, self.string(item, f"an entry of {what}")) for item in node.value]


def _digest(doc: _Doc, node: yaml.Node, what: str) -> str:
    value = doc.string(node, what)
    raw = value[len("sha256:") :] if value.lower().startswith("sha256:") else value
    raw = raw.lower()
    if not re.fullmatch(r"[0-9a-f]{64}", raw):
        doc.fail(node, f"{what} {value!r} is not a SHA-256 digest (64 hex digits)")
    return raw


def _read_material(
    doc: _Doc, node: yaml.Node, value: str, reader: Reader, what: str
) -> tuple[bytes, str]:
    """Inline PEM, or the bytes of the file the value names; and a label."""
    if value.lstrip().startswith("-----BEGIN"):
        return value.encode("ascii", "replace"), f"inline {what} at {doc.where(node)}"
    try:
        return reader(value), value
    except ConfigError as exc:
        doc.fail(node, f"cannot read {what} {value!r}: {exc.message}", hint=exc.hint)
    except OSError as exc:
        doc.fail(node, f"cannot read {what} {value!r}: {exc.strerror or exc}")


def key_rule(pem: bytes, label: str, *, path: str | None = None) -> KeyRule:
    """A key rule from PEM text; ConfigError when it is not a usable public key."""
    import hashlib

    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        hint = (
            "this is a private key: give the public key (.pub)"
            if b"PRIVATE KEY" in pem
            else "expected '-----BEGIN PUBLIC KEY-----' (SubjectPublicKeyInfo)"
        )
        raise ConfigError(f"{label}: not a PEM public key", hint=hint) from None
    if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise ConfigError(f"{label}: unsupported key type (EC P-256/P-384/P-521 or Ed25519)")
    spki = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return KeyRule(pem=spki, label=label, fingerprint=hashlib.sha256(spki).hexdigest(), path=path)


def _key_rule(doc: _Doc, node: yaml.Node, reader: Reader) -> KeyRule:
    value = doc.string(node, "key")
    pem, label = _read_material(doc, node, value, reader, "public key")
    try:
        return key_rule(pem, label)
    except ConfigError as exc:
        doc.fail(node, exc.message, hint=exc.hint)


def chain_rule(parts: Sequence[tuple[bytes, str]], *, paths: Sequence[str] = ()) -> ChainRule:
    """A certificate-chain rule from PEM texts (with labels); ConfigError if one holds none."""
    from cryptography import x509

    pems: list[bytes] = []
    subjects: list[str] = []
    for pem, label in parts:
        try:
            certs = x509.load_pem_x509_certificates(pem)
        except ValueError:
            raise ConfigError(
                f"{label}: no PEM certificate", hint="expected '-----BEGIN CERTIFICATE-----'"
            ) from None
        pems.append(pem if pem.endswith(b"\n") else pem + b"\n")
        subjects.extend(c.subject.rfc4514_string() for c in certs)
    return ChainRule(
        pem=b"".join(pems),
        label=", ".join(label for _, label in parts),
        subjects=tuple(subjects),
        paths=tuple(paths),
    )


def _chain_rule(doc: _Doc, node: yaml.Node, reader: Reader) -> ChainRule:
    parts = []
    for item, value in doc.strings(node, "certificate-chain"):
        pem, label = _read_material(doc, item, value, reader, "certificate")
        try:
            chain_rule([(pem, label)])
        except ConfigError as exc:
            doc.fail(item, exc.message, hint=exc.hint)
        parts.append((pem, label))
    return chain_rule(parts)


def _identity_rule(doc: _Doc, node: yaml.Node) -> IdentityRule:
    spec = doc.mapping(node, "sigstore", ("issuer", "identity", "identity-regex", "github"))
    issuer = doc.string(spec["issuer"][1], "issuer") if "issuer" in spec else None
    identity = doc.string(spec["identity"][1], "identity") if "identity" in spec else None
    regex = None
    if "identity-regex" in spec:
        rnode = spec["identity-regex"][1]
        regex = doc.string(rnode, "identity-regex")
        try:
            re.compile(regex)
        except re.error as exc:
            doc.fail(rnode, f"identity-regex is not a valid regular expression: {exc}")
    if identity and regex:
        doc.fail(node, "give identity or identity-regex, not both")
    repo = ref = workflow = None
    if "github" in spec:
        gnode = spec["github"][1]
        gh = doc.mapping(gnode, "github", ("repository", "ref", "workflow"))
        if not gh:
            doc.fail(gnode, "github needs repository, ref and/or workflow")
        if "repository" in gh:
            repo = doc.string(gh["repository"][1], "repository")
            if not _REPO_RE.fullmatch(repo):
                doc.fail(gh["repository"][1], f"repository {repo!r} is not OWNER/REPO")
        if "ref" in gh:
            ref = doc.string(gh["ref"][1], "ref")
            if not ref.startswith("refs/"):
                doc.fail(
                    gh["ref"][1],
                    f"ref {ref!r} is not a full ref name",
                    hint=f"write refs/heads/{ref} or refs/tags/{ref}",
                )
        if "workflow" in gh:
            workflow = doc.string(gh["workflow"][1], "workflow")
            if "@" in workflow:
                doc.fail(gh["workflow"][1], "workflow is a file path; give the ref with ref:")
            parts = workflow.split("/")
            if "/" in workflow and not workflow.startswith(".github/") and len(parts) < 4:
                doc.fail(
                    gh["workflow"][1],
                    f"workflow {workflow!r} is neither a file in .github/workflows/ nor "
                    "OWNER/REPO/.github/workflows/FILE",
                )
        if workflow and "/" in workflow and not workflow.startswith(".github/"):
            pass  # a reusable workflow in another repository: repository may be anything
        elif workflow and not repo:
            doc.fail(gnode, "workflow needs repository (whose workflow file it is)")
        if not repo and not workflow:
            doc.warn(gnode, "a GitHub rule without repository trusts every repository")
        elif repo and not workflow and not identity and not regex:
            doc.warn(
                gnode,
                f"any workflow of {repo} may sign (name the workflow file to narrow it)",
            )
        issuer = issuer or GITHUB_ISSUER
    if issuer is None:
        doc.fail(node, "a Sigstore signer needs issuer (the OIDC provider's URL)")
    if not (identity or regex or repo or workflow):
        doc.fail(
            node,
            "a Sigstore signer needs identity, identity-regex or github: "
            "an issuer alone would trust every account it issues",
        )
    if not issuer.startswith("https://"):
        doc.warn(node, f"issuer {issuer!r} is not an https:// URL")
    return IdentityRule(
        issuer=issuer,
        identity=identity,
        identity_regex=regex,
        github_repository=repo,
        github_ref=ref,
        github_workflow=workflow,
    )


def _signer_rule(doc: _Doc, node: yaml.Node, what: str, reader: Reader) -> SignerRule:
    spec = doc.mapping(node, what, ("sigstore", "key", "certificate-chain"))
    if len(spec) != 1:
        doc.fail(node, f"{what} needs exactly one of sigstore, key, certificate-chain")
    ((kind, (_, value)),) = spec.items()
    if kind == "sigstore":
        return _identity_rule(doc, value)
    if kind == "key":
        return _key_rule(doc, value, reader)
    return _chain_rule(doc, value, reader)


def _requirement(doc: _Doc, node: yaml.Node, names: set[str]) -> Requirement:
    spec = doc.mapping(node, "require", ("any-of", "all-of", "k-of-n"))
    if len(spec) != 1:
        doc.fail(node, "require needs exactly one of any-of, all-of, k-of-n")
    ((mode, (_, value)),) = spec.items()
    k_node = None
    if mode == "k-of-n":
        kn = doc.mapping(value, "k-of-n", ("k", "signers"), required=("k", "signers"))
        k_node = kn["k"][1]
        k = doc.integer(k_node, "k", minimum=1)
        value = kn["signers"][1]
    listed = doc.strings(value, mode)
    seen: set[str] = set()
    for item, name in listed:
        if name not in names:
            close = difflib.get_close_matches(name, sorted(names), n=1)
            doc.fail(
                item,
                f"{mode} names signer {name!r}, which is not defined under signers",
                hint=f"did you mean {close[0]!r}?" if close else "define it under signers:",
            )
        if name in seen:
            doc.fail(item, f"{mode} lists {name!r} twice")
        seen.add(name)
    ordered = tuple(n for _, n in listed)
    if not ordered:
        doc.fail(value, f"{mode} lists no signers")
    if mode == "any-of":
        return Requirement("any-of", ordered, 1)
    if mode == "all-of":
        return Requirement("all-of", ordered, len(ordered))
    assert k_node is not None
    if k > len(ordered):
        doc.fail(k_node, f"k is {k}, but only {len(ordered)} signers are listed")
    return Requirement("k-of-n", ordered, k)


def parse_policy(
    text: bytes,
    *,
    source: PolicySource,
    label: str,
    reader: Reader,
) -> Policy:
    """Parse and validate a policy document.

    ``label`` names the document in messages; ``reader`` reads the files it
    names (keys, certificates, a trusted root), relative to its folder.
    """
    import yaml

    doc = _Doc(label)
    try:
        root = yaml.compose(text.decode("utf-8"), Loader=yaml.SafeLoader)
    except UnicodeDecodeError:
        raise ConfigError("policy is not UTF-8 text", path=label) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{label}:{mark.line + 1}" if mark else label
        raise ConfigError(
            f"not valid YAML: {exc.problem or exc.context}",
            path=where,
            hint="check the indentation and quoting on this line",
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", path=label) from None
    if root is None:
        raise ConfigError("policy is empty", path=label, hint="start with 'version: 1'")
    top = doc.mapping(
        root,
        "the policy",
        (
            "version",
            "sigstore",
            "signers",
            "require",
            "deny",
            "allow",
            "artifacts",
            "pickle",
            "rollback",
        ),
        required=("version",),
    )
    vnode = top["version"][1]
    if doc.integer(vnode, "version") != POLICY_VERSION:
        doc.fail(vnode, f"unsupported policy version (this tool reads version {POLICY_VERSION})")

    instance = SigstoreInstance()
    if "sigstore" in top:
        snode = top["sigstore"][1]
        spec = doc.mapping(snode, "sigstore", ("instance", "trusted-root"))
        inst: Literal["production", "staging"] = "production"
        if "instance" in spec:
            value = doc.string(spec["instance"][1], "instance")
            if value not in ("production", "staging"):
                doc.fail(
                    spec["instance"][1], f"instance must be production or staging, not {value!r}"
                )
            inst = "staging" if value == "staging" else "production"
        root_bytes = root_label = None
        if "trusted-root" in spec:
            rnode = spec["trusted-root"][1]
            path = doc.string(rnode, "trusted-root")
            root_bytes, root_label = _read_material(doc, rnode, path, reader, "trusted root")
            try:
                import json

                media = json.loads(root_bytes).get("mediaType", "")
            except (ValueError, AttributeError):
                doc.fail(rnode, f"{root_label} is not a JSON trusted root")
            if "trustedroot" not in media and "clienttrustconfig" not in media:
                doc.fail(
                    rnode,
                    f"{root_label} is not a Sigstore trusted root or client trust config "
                    f"(mediaType {media!r})",
                )
        instance = SigstoreInstance(inst, root_bytes, root_label)

    signers: list[TrustedSigner] = []
    if "signers" in top:
        snode = top["signers"][1]
        for key_node, name in doc.names(snode, "signers"):
            if not _NAME_RE.fullmatch(name):
                doc.fail(
                    key_node,
                    f"signer name {name!r} may hold only letters, digits, '.', '_' and '-'",
                )
            value_node = next(v for k, v in snode.value if k is key_node)
            rule = _signer_rule(doc, value_node, f"signer {name!r}", reader)
            signers.append(TrustedSigner(name, rule, doc.where(key_node)))
    names = {s.name for s in signers}

    requirement = None
    if "require" in top:
        requirement = _requirement(doc, top["require"][1], names)
    if not signers:
        doc.warn(root, "the policy trusts no signer: every signature will be refused")
    elif requirement is not None:
        unused = sorted(names - set(requirement.signers))
        if unused:
            doc.warn(
                top["require"][0],
                f"signer(s) {', '.join(unused)} are defined but not used by require",
            )

    deny_digests: set[str] = set()
    deny_signers: list[TrustedSigner] = []
    deny_paths: list[str] = []
    if "deny" in top:
        dnode = top["deny"][1]
        spec = doc.mapping(dnode, "deny", ("digests", "signers", "paths"))
        if "digests" in spec:
            for item, _ in doc.strings(spec["digests"][1], "deny digests"):
                deny_digests.add(_digest(doc, item, "denied digest"))
        if "signers" in spec:
            lnode = spec["signers"][1]
            if not isinstance(lnode, yaml.SequenceNode):
                doc.fail(lnode, "deny signers must be a list of signer definitions")
            for i, item in enumerate(lnode.value):
                rule = _signer_rule(doc, item, "a denied signer", reader)
                deny_signers.append(TrustedSigner(f"deny[{i}]", rule, doc.where(item)))
        if "paths" in spec:
            deny_paths = [_glob(doc, n, v) for n, v in doc.strings(spec["paths"][1], "paths")]

    allow_digests: set[str] = set()
    if "allow" in top:
        spec = doc.mapping(top["allow"][1], "allow", ("digests",))
        if "digests" in spec:
            for item, _ in doc.strings(spec["digests"][1], "allow digests"):
                allow_digests.add(_digest(doc, item, "allowed digest"))
    clash = deny_digests & allow_digests
    if clash:
        doc.warn(top["allow"][1], f"{len(clash)} digest(s) are both allowed and denied (deny wins)")

    artifact_paths: list[str] = []
    must_sign: list[str] = ["**"]
    if "artifacts" in top:
        spec = doc.mapping(top["artifacts"][1], "artifacts", ("paths", "must-sign"))
        if "paths" in spec:
            artifact_paths = [_glob(doc, n, v) for n, v in doc.strings(spec["paths"][1], "paths")]
        if "must-sign" in spec:
            mnode = spec["must-sign"][1]
            if isinstance(mnode, yaml.SequenceNode) and not mnode.value:
                must_sign = []
            else:
                must_sign = [_glob(doc, n, v) for n, v in doc.strings(mnode, "must-sign")]
            if not must_sign:
                doc.warn(mnode, "must-sign is empty: unsigned files are accepted")

    pickle = PickleRule()
    if "pickle" in top:
        pnode = top["pickle"][1]
        mode_node: yaml.Node = pnode
        allowed_node: yaml.Node | None = None
        if isinstance(pnode, yaml.ScalarNode):
            pass
        else:
            spec = doc.mapping(pnode, "pickle", ("mode", "allowed-digests"), required=("mode",))
            mode_node = spec["mode"][1]
            allowed_node = spec["allowed-digests"][1] if "allowed-digests" in spec else None
        mode = doc.string(mode_node, "pickle mode")
        if mode not in ("block", "allowlist"):
            doc.fail(mode_node, f"pickle mode must be block or allowlist, not {mode!r}")
        allowed = frozenset(
            _digest(doc, n, "allowed pickle digest")
            for n, _ in (doc.strings(allowed_node, "allowed-digests") if allowed_node else [])
        )
        pickle = PickleRule("allowlist" if mode == "allowlist" else "block", allowed)

    rollback = Rollback()
    if "rollback" in top:
        spec = doc.mapping(top["rollback"][1], "rollback", ("not-older-than", "repository"))
        n = (
            doc.integer(spec["not-older-than"][1], "not-older-than")
            if "not-older-than" in spec
            else None
        )
        repo = doc.string(spec["repository"][1], "repository") if "repository" in spec else None
        rollback = Rollback(n, repo)

    return Policy(
        signers=tuple(signers),
        requirement=requirement,
        deny_digests=frozenset(deny_digests),
        deny_signers=tuple(deny_signers),
        deny_paths=tuple(deny_paths),
        allow_digests=frozenset(allow_digests),
        artifact_paths=tuple(artifact_paths),
        must_sign=tuple(must_sign),
        pickle=pickle,
        rollback=rollback,
        sigstore=instance,
        source=source,
        warnings=tuple(doc.warnings),
    )


def _glob(doc: _Doc, node: yaml.Node, value: str) -> str:
    if value.startswith("/") or ".." in PurePosixPath(value).parts or "\\" in value:
        doc.fail(node, f"path pattern {value!r} must be relative, with '/' and no '..'")
    return value


# --- loading and precedence -------------------------------------------------------


def _file_reader(base: Path) -> Reader:
    def read(rel: str) -> bytes:
        p = Path(rel).expanduser()
        p = p if p.is_absolute() else base / p
        try:
            return p.read_bytes()
        except FileNotFoundError:
            raise ConfigError("file not found", path=p) from None
        except IsADirectoryError:
            raise ConfigError("is a directory, expected a file", path=p) from None

    return read


def load_policy(path: Path, kind: Literal["command line", "git config", "action input"]) -> Policy:
    """Read and validate a policy file given from outside the repository."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            "policy file not found",
            path=path,
            hint="check the path (ml-integrity policy check FILE validates a policy)",
        ) from None
    except IsADirectoryError:
        raise ConfigError("policy is a directory, expected a YAML file", path=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the policy: {exc.strerror}", path=path) from None
    return parse_policy(
        text,
        source=PolicySource(kind, str(path)),
        label=str(path),
        reader=_file_reader(path.parent),
    )


class RepositoryReader(Protocol):
    """What policy resolution reads from the repository.

    The entry point passes its git adapter (``ml_integrity.git.runner.Git``
    satisfies this), so trust never imports git.
    """

    @property
    def root(self) -> Path: ...

    def config_matching(self, regexp: str) -> dict[str, str]:
        """Every git config key matching ``regexp`` (lower-case) -> its value."""
        ...

    def rev_parse(self, rev: str) -> str | None:
        """The object id ``rev`` names, or None."""
        ...

    def blob_at(self, rev: str, path: str) -> bytes | None:
        """The content of ``path`` in commit ``rev``, or None if it has no such file."""
        ...


def trust_config(repo: RepositoryReader) -> dict[str, str]:
    """The ``ml-integrity.*`` git config (lower-case keys), in one git run."""
    return repo.config_matching(r"^ml-integrity\.")


def _in_repo_reader(repo: RepositoryReader, rev: str, folder: str) -> Reader:
    def read(rel: str) -> bytes:
        raw = PurePosixPath(folder) / rel
        if PurePosixPath(rel).is_absolute() or ".." in PurePosixPath(rel).parts:
            raise ConfigError(
                f"an in-repository policy may only name files inside the repository: {rel!r}"
            )
        data = repo.blob_at(rev, raw.as_posix())
        if data is None:
            raise ConfigError(
                f"{raw} is not in the trusted base revision {rev[:12]}",
                hint="files a policy names are read at the same trusted base revision",
            )
        return data

    return read


@dataclass(frozen=True)
class Resolution:
    """The policy that applies, and notes for the verdict."""

    policy: Policy | None
    notes: tuple[str, ...] = ()


def resolve(
    *,
    explicit: Path | None,
    explicit_kind: Literal["command line", "action input"] = "command line",
    repo: RepositoryReader | None,
    base: str | None = None,
    config: Mapping[str, str] | None = None,
) -> Resolution:
    """Find the policy by precedence: explicit > git config > in-repo at a trusted base.

    The in-repository ``.ml-integrity/policy.yaml`` is read at the trusted
    base revision (``base``, else git config ``ml-integrity.policyBase``), as
    are the keys and certificates it names; the working tree's copy is never
    used for trust. Without a base it is refused (ConfigError), so that a
    change can never trust the signer it brings along. ``config`` is the
    repository's ``ml-integrity.*`` git config when the caller has read it.
    """
    if explicit is not None:
        policy = load_policy(explicit, explicit_kind)
        return Resolution(policy, _inside_note(explicit, repo, explicit_kind))
    if repo is None:
        return Resolution(None)
    config = trust_config(repo) if config is None else config
    configured = config.get(GIT_CONFIG_POLICY)
    if configured:
        p = Path(configured).expanduser()
        if not p.is_absolute():
            p = repo.root / p
        return Resolution(load_policy(p, "git config"), _inside_note(p, repo, "git config"))
    in_tree = (repo.root / IN_REPO_POLICY).is_file()
    base = base or config.get(GIT_CONFIG_BASE) or None
    if base is None:
        if in_tree:
            raise ConfigError(
                "the repository has an in-repository policy, but it is only honoured as "
                "committed at a trusted base revision, and none was given",
                path=repo.root / IN_REPO_POLICY,
                hint="pass --policy-base REV (for a pull request: its base commit), or set "
                "'git config ml-integrity.policyBase REV'; or give a policy from outside the "
                "repository with --policy FILE or 'git config ml-integrity.policy FILE'",
            )
        return Resolution(None)
    commit = repo.rev_parse(f"{base}^{{commit}}")
    if commit is None:
        raise ConfigError(
            f"trusted base revision {base!r} does not exist in this repository",
            path=repo.root,
            hint="fetch it first (git fetch), or name another commit",
        )
    text = repo.blob_at(commit, IN_REPO_POLICY)
    if text is None and not in_tree:
        return Resolution(None)
    if text is None:
        raise ConfigError(
            f"there is no {IN_REPO_POLICY} at the trusted base {commit[:12]} "
            "(this change introduces it, so it cannot be trusted yet)",
            path=repo.root / IN_REPO_POLICY,
            hint="give a policy from outside the repository (--policy FILE), or a base "
            "revision that has the policy",
        )
    label = f"{IN_REPO_POLICY}@{commit[:12]}"
    policy = parse_policy(
        text,
        source=PolicySource("in-repo", IN_REPO_POLICY, commit),
        label=label,
        reader=_in_repo_reader(repo, commit, str(PurePosixPath(IN_REPO_POLICY).parent)),
    )
    notes: list[str] = []
    if in_tree and (repo.root / IN_REPO_POLICY).read_bytes() != text:
        notes.append(
            f"{IN_REPO_POLICY} differs from the trusted base {commit[:12]}; the changes are "
            "not honoured until they are part of a trusted base"
        )
    elif not in_tree:
        notes.append(f"{IN_REPO_POLICY} was removed in the work tree; the base's copy applies")
    return Resolution(policy, tuple(notes))


def _inside_note(path: Path, repo: RepositoryReader | None, kind: str) -> tuple[str, ...]:
    """A warning when a policy given from outside lives in the work tree it protects."""
    if repo is None:
        return ()
    try:
        Path(path).resolve().relative_to(repo.root.resolve())
    except ValueError:
        return ()
    return (
        f"the policy given by {kind} ({path}) is inside the repository being verified, where "
        "a change under review can edit it; keep it outside, or use the in-repository policy "
        "with --policy-base",
    )


def inline(
    signers: Sequence[TrustedSigner],
    *,
    sigstore: SigstoreInstance | None = None,
    rollback: Rollback | None = None,
) -> Policy:
    """A policy made of command-line options (trust exactly these signers)."""
    return Policy(
        signers=tuple(signers),
        sigstore=sigstore or SigstoreInstance(),
        rollback=rollback or Rollback(),
        source=PolicySource("command line"),
    )
