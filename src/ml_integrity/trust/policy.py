"""The trust policy model: who may sign, what must be signed, what is refused.

A :class:`Policy` names trusted signers (Sigstore identities, public keys,
certificate chains), how many of them must sign (:class:`Requirement`),
denied and allowed digests and signers, which paths are artifacts and must
be signed, the pickle rule, rollback protection and the Sigstore instance;
its :class:`PolicySource` says where it came from (every verdict names it).

The YAML form is read by :mod:`.policy_yaml` (``docs/trust.md`` is the
reference); where a policy comes from (command line, git config, the
in-repository policy at a trusted base) is :mod:`.policy_source`. This
module is pure: no files, no git, no Sigstore.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ml_integrity.errors import ConfigError, UsageError
from ml_integrity.trust.globs import glob_match

__all__ = [
    "GITHUB_ISSUER",
    "GIT_CONFIG_BASE",
    "GIT_CONFIG_POLICY",
    "IDENTITY_FIELDS",
    "IN_REPO_POLICY",
    "POLICY_VERSION",
    "ChainRule",
    "IdentityRule",
    "KeyRule",
    "PickleRule",
    "Policy",
    "PolicySource",
    "Requirement",
    "Rollback",
    "SignerRule",
    "SigstoreInstance",
    "TrustedSigner",
    "glob_match",
    "identity_rule",
    "inline",
    "satisfy",
]

POLICY_VERSION = 1
IN_REPO_POLICY = ".ml-integrity/policy.yaml"
GIT_CONFIG_POLICY = "ml-integrity.policy"
GIT_CONFIG_BASE = "ml-integrity.policybase"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"


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
