"""The policy's YAML form: a strict parser that names the file and line of every error.

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
:class:`~ml_integrity.errors.ConfigError` naming the file and line. Files a
policy names are read through a reader callback (the caller decides where
from); yaml and cryptography are imported when a policy is parsed.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Literal, NoReturn

from ml_integrity.errors import ConfigError
from ml_integrity.trust.policy import (
    GITHUB_ISSUER,
    POLICY_VERSION,
    ChainRule,
    IdentityRule,
    KeyRule,
    PickleRule,
    Policy,
    PolicySource,
    Requirement,
    Rollback,
    SignerRule,
    SigstoreInstance,
    TrustedSigner,
)

if TYPE_CHECKING:
    import yaml

__all__ = ["Reader", "parse_policy"]

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_REPO_RE = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")

MAX_POLICY_BYTES = 1 << 20
"""A policy larger than this (1 MiB) is refused before it is parsed."""
MAX_POLICY_DEPTH = 32
"""Collections nested deeper than this are refused (a real policy nests about 5 deep)."""
MAX_POLICY_NODES = 100_000
"""At most this many YAML values (aliases included) in a policy."""

Reader = Callable[[str], bytes]
"""Reads a file named in a policy (a path relative to the policy's folder)."""


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


def _key_rule(doc: _Doc, node: yaml.Node, reader: Reader) -> KeyRule:
    value = doc.string(node, "key")
    from ml_integrity.trust.keys import key_rule

    pem, label = _read_material(doc, node, value, reader, "public key")
    try:
        return key_rule(pem, label)
    except ConfigError as exc:
        doc.fail(node, exc.message, hint=exc.hint)


def _chain_rule(doc: _Doc, node: yaml.Node, reader: Reader) -> ChainRule:
    from ml_integrity.trust.keys import chain_rule

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


def _compose(text: bytes, label: str) -> yaml.Node | None:
    """The YAML node tree of a policy, within the size and nesting limits."""
    import yaml

    if len(text) > MAX_POLICY_BYTES:
        raise ConfigError(
            f"policy is {len(text):,} bytes, more than the {MAX_POLICY_BYTES:,} a policy may have",
            path=label,
            hint="a policy is a short YAML file: name key and certificate files instead of "
            "inlining large material",
        )
    try:
        decoded = text.decode("utf-8")
        depth = nodes = 0
        # the event stream first (no recursion): PyYAML's composer recurses per level
        for event in yaml.parse(decoded, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            nodes += isinstance(event, yaml.NodeEvent)
            if depth > MAX_POLICY_DEPTH or nodes > MAX_POLICY_NODES:
                what = f"nested more than {MAX_POLICY_DEPTH} levels deep"
                if depth <= MAX_POLICY_DEPTH:
                    what = f"made of more than {MAX_POLICY_NODES:,} values"
                mark = event.start_mark
                raise ConfigError(
                    f"policy is {what}",
                    path=f"{label}:{mark.line + 1}" if mark else label,
                    hint="a policy is a short YAML file; this one cannot be a real policy",
                )
        return yaml.compose(decoded, Loader=yaml.SafeLoader)
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
    root = _compose(text, label)
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
