"""Sigstore identities: what a Fulcio certificate says, and whether a policy's rule matches it.

:func:`certificate_facts` reads the certificate's identities (SANs), issuer
and GitHub Actions extensions; :func:`rule_policy` turns one policy
:class:`~ml_integrity.trust.policy.IdentityRule` into a sigstore-python
verification policy (exact identity, a regular expression that must match
entirely, GitHub repository / ref / workflow file); :class:`TrustedIdentities`
is the policy handed to sigstore for a set of named rules plus deny rules.
sigstore and cryptography are imported when a check runs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ml_integrity.trust.policy import IdentityRule

if TYPE_CHECKING:
    from cryptography.x509 import Certificate
    from sigstore.verify.policy import VerificationPolicy

__all__ = ["CertificateFacts", "TrustedIdentities", "certificate_facts", "rule_policy"]

_OID = {
    "issuer": "1.3.6.1.4.1.57264.1.1",
    "trigger": "1.3.6.1.4.1.57264.1.2",
    "sha": "1.3.6.1.4.1.57264.1.3",
    "workflow_name": "1.3.6.1.4.1.57264.1.4",
    "repository": "1.3.6.1.4.1.57264.1.5",
    "ref": "1.3.6.1.4.1.57264.1.6",
    "othername": "1.3.6.1.4.1.57264.1.7",
    "issuer_v2": "1.3.6.1.4.1.57264.1.8",
    "build_signer_uri": "1.3.6.1.4.1.57264.1.9",
    "source_repository_uri": "1.3.6.1.4.1.57264.1.12",
    "source_repository_ref": "1.3.6.1.4.1.57264.1.14",
}

_WORKFLOW_SAN = re.compile(r"https://github\.com/([^/]+/[^/]+)/(.+)@(.+)")


def _der_utf8(value: bytes) -> str:
    """Decode a DER UTF8String (Fulcio's v2 extensions); raw text otherwise (v1)."""
    if len(value) >= 2 and value[0] == 0x0C:
        length = value[1]
        start = 2
        if length & 0x80:
            n = length & 0x7F
            length = int.from_bytes(value[2 : 2 + n], "big")
            start = 2 + n
        return value[start : start + length].decode("utf-8", "replace")
    return value.decode("utf-8", "replace")


@dataclass(frozen=True)
class CertificateFacts:
    """What a Fulcio certificate says about its holder."""

    identities: tuple[str, ...]
    issuer: str | None
    github_repository: str | None = None
    github_ref: str | None = None
    github_workflow_name: str | None = None
    github_trigger: str | None = None
    github_sha: str | None = None

    @property
    def identity(self) -> str:
        return self.identities[0] if self.identities else "(no identity)"

    def describe(self) -> str:
        who = ", ".join(self.identities) or "(none)"
        out = f"identity {who} issued by {self.issuer or '(no issuer)'}"
        extra = [
            f"{label} {value}"
            for label, value in (
                ("repository", self.github_repository),
                ("ref", self.github_ref),
                ("workflow name", self.github_workflow_name),
                ("trigger", self.github_trigger),
            )
            if value
        ]
        return out + (f" ({', '.join(extra)})" if extra else "")

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"identity": self.identity, "issuer": self.issuer}
        github = {
            k: v
            for k, v in (
                ("repository", self.github_repository),
                ("ref", self.github_ref),
                ("workflow_name", self.github_workflow_name),
                ("trigger", self.github_trigger),
                ("sha", self.github_sha),
            )
            if v
        }
        if github:
            out["github"] = github
        return out


def certificate_facts(cert: Certificate) -> CertificateFacts:
    from cryptography import x509

    def ext(key: str) -> bytes | None:
        try:
            value = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(_OID[key])).value
        except x509.ExtensionNotFound:
            return None
        return value.value if isinstance(value, x509.UnrecognizedExtension) else None

    def text(*keys: str) -> str | None:
        for key in keys:
            raw = ext(key)
            if raw is not None:
                return _der_utf8(raw)
        return None

    identities: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        identities.extend(san.get_values_for_type(x509.RFC822Name))
        identities.extend(san.get_values_for_type(x509.UniformResourceIdentifier))
        identities.extend(
            _der_utf8(o.value)
            for o in san.get_values_for_type(x509.OtherName)
            if o.type_id.dotted_string == _OID["othername"]
        )
    except x509.ExtensionNotFound:
        pass
    repo = text("repository")
    if repo is None:
        uri = text("source_repository_uri")
        if uri and uri.startswith("https://github.com/"):
            repo = uri.removeprefix("https://github.com/")
    return CertificateFacts(
        identities=tuple(identities),
        issuer=text("issuer", "issuer_v2"),
        github_repository=repo,
        github_ref=text("ref", "source_repository_ref"),
        github_workflow_name=text("workflow_name"),
        github_trigger=text("trigger"),
        github_sha=text("sha"),
    )


# --- identity policies ----------------------------------------------------------------


def _verification_error() -> type[Exception]:
    from sigstore.errors import VerificationError

    return VerificationError


class _IdentityRegex:
    """A sigstore verification policy: some SAN fully matches a regular expression."""

    def __init__(self, pattern: str) -> None:
        self._pattern = pattern
        self._rx = re.compile(pattern)

    def verify(self, cert: Certificate) -> None:
        facts = certificate_facts(cert)
        if not any(self._rx.fullmatch(i) for i in facts.identities):
            raise _verification_error()(
                f"no identity matches /{self._pattern}/ (the certificate holds "
                f"{', '.join(facts.identities) or 'none'})"
            )


class _WorkflowFile:
    """A sigstore verification policy: the SAN names this GitHub workflow file."""

    def __init__(self, repository: str | None, path: str) -> None:
        self._repository = repository
        self._path = path

    def verify(self, cert: Certificate) -> None:
        facts = certificate_facts(cert)
        repository = self._repository or facts.github_repository
        for identity in facts.identities:
            m = _WORKFLOW_SAN.fullmatch(identity)
            if m and m.group(1) == repository and m.group(2) == self._path:
                return
        raise _verification_error()(
            f"the signing workflow is not {repository}/{self._path} (the certificate holds "
            f"{', '.join(facts.identities) or 'no identity'})"
        )


def rule_policy(rule: IdentityRule) -> VerificationPolicy:
    """The sigstore verification policy for one identity rule (all constraints must hold)."""
    from sigstore.verify import policy as sp

    parts: list[VerificationPolicy] = [sp.OIDCIssuer(rule.issuer)]
    if rule.identity:
        parts.append(sp.Identity(identity=rule.identity))
    if rule.identity_regex:
        parts.append(_IdentityRegex(rule.identity_regex))
    if rule.github_repository:
        parts.append(sp.GitHubWorkflowRepository(rule.github_repository))
    if rule.github_ref:
        parts.append(sp.GitHubWorkflowRef(rule.github_ref))
    wf = rule.workflow_path()
    if wf is not None:
        parts.append(_WorkflowFile(*wf))
    return sp.AllOf(parts)


class TrustedIdentities:
    """The policy handed to sigstore: not denied, and matching at least one trusted rule.

    Records which named rules matched (``matched``) and the certificate's facts.
    """

    def __init__(
        self,
        signers: Sequence[tuple[str, IdentityRule]],
        deny: Sequence[IdentityRule],
    ) -> None:
        self._signers = [(name, rule, rule_policy(rule)) for name, rule in signers]
        self._deny = [(rule, rule_policy(rule)) for rule in deny]
        self.matched: list[str] = []
        self.facts: CertificateFacts | None = None
        self.denied: IdentityRule | None = None
        self.refused = False
        self.reasons: list[str] = []

    def verify(self, cert: Certificate) -> None:
        from ml_integrity.trust.keys import end_entity_problem

        verification_error = _verification_error()
        self.facts = certificate_facts(cert)
        self.matched, self.reasons, self.denied, self.refused = [], [], None, False
        problem = end_entity_problem(cert)
        if problem is not None:  # sigstore checks the usage, not that the leaf is no CA
            raise verification_error(f"the signing certificate {problem}")
        for rule, pol in self._deny:
            try:
                pol.verify(cert)
            except verification_error:
                continue
            self.denied, self.refused = rule, True
            raise verification_error("the signer is denied by the policy")
        for name, rule, pol in self._signers:
            try:
                pol.verify(cert)
            except verification_error as exc:
                self.reasons.append(f"{name}: {rule.describe()}: {exc}")
                continue
            self.matched.append(name)
        if not self.matched:
            self.refused = True
            raise verification_error("the signer is not trusted")
