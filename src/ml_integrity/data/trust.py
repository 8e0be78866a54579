"""The trust of the library API: keyword arguments in, the one resolver's :class:`Trust` out.

:class:`~ml_integrity.data.VerifiedDataset` takes ``key=``, ``cert_chain=``,
``identity=`` or ``policy=`` the way the command line takes ``--key``,
``--cert-chain``, ``--identity``/``--issuer`` and ``--policy``.
:func:`library_trust` checks them (naming them as the library spells them)
and describes them in a :class:`~ml_integrity.trust.resolver.TrustRequest`;
:meth:`LibraryTrust.resolve` hands it to the one resolver
(``resolve_trust(request, "model")``), whose :class:`Trust` gives the policy
and the verification backends, as for ``ml-integrity verify``. A
:class:`~ml_integrity.trust.policy.Policy` object given as ``policy=`` is
already resolved: it becomes the trust as it is.

Everything heavy (cryptography, sigstore, yaml) is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from ml_integrity.errors import UsageError

if TYPE_CHECKING:
    from ml_integrity.trust.policy import IdentityRule, Policy
    from ml_integrity.trust.resolver import Trust, TrustRequest

__all__ = ["LibraryTrust", "library_trust"]

_NO_TRUST_HINT = (
    "pass key= (the signer's public key), cert_chain= (root CA), "
    "identity= (a Sigstore identity and issuer) or policy= (a trust policy)"
)


@dataclass(frozen=True)
class LibraryTrust:
    """What the caller trusts, checked (picklable, so that worker processes re-verify)."""

    request: TrustRequest
    policy: Policy | None = None
    """A :class:`Policy` object given as ``policy=`` (the request then names no signer)."""

    def resolve(self) -> Trust:
        """The one trust these keyword arguments describe."""
        from ml_integrity.trust.resolver import Trust, resolve_trust

        if self.policy is not None:
            return Trust(policy=self.policy, roots=self.request.roots)
        return resolve_trust(self.request, "model")


def _identity(value: IdentityRule | Mapping[str, str] | None) -> dict[str, str | None]:
    """The identity fields of ``identity=``, checked with the library's spelling."""
    from ml_integrity.trust.policy import IDENTITY_FIELDS, IdentityRule, identity_rule

    if value is None:
        return {}
    if isinstance(value, IdentityRule):
        return {f.name: getattr(value, f.name) for f in fields(value) if f.name in IDENTITY_FIELDS}
    unknown = sorted(set(value) - set(IDENTITY_FIELDS))
    if unknown:
        raise UsageError(
            f"unknown identity field(s): {', '.join(unknown)}",
            hint="identity= takes " + ", ".join(IDENTITY_FIELDS),
        )
    given: dict[str, str | None] = dict(value)
    identity_rule(**given, names={f: f for f in IDENTITY_FIELDS})  # raises what is wrong
    return given


def library_trust(
    *,
    key: str | Path | None = None,
    cert_chain: str | Path | Sequence[str | Path] | None = None,
    policy: Policy | str | Path | None = None,
    identity: IdentityRule | Mapping[str, str] | None = None,
    trusted_root: str | Path | None = None,
    offline: bool = False,
) -> LibraryTrust:
    """The library API's trust keywords as one request (UsageError when they contradict)."""
    from ml_integrity.trust.resolver import SigstoreRoots, TrustRequest

    chain: tuple[str, ...]
    if cert_chain is None:
        chain = ()
    elif isinstance(cert_chain, str | Path):
        chain = (str(cert_chain),)
    else:
        chain = tuple(str(p) for p in cert_chain)
    ident = _identity(identity)
    signers = key is not None or bool(chain) or any(ident.values())
    if policy is not None and signers:
        raise UsageError(
            "give either policy= or key=/cert_chain=/identity=, not both",
            hint="put the signers into the policy",
        )
    if policy is None and not signers:
        raise UsageError("no trust material given", hint=_NO_TRUST_HINT)
    roots = SigstoreRoots(
        offline=offline, trusted_root_file=None if trusted_root is None else Path(trusted_root)
    )
    request = TrustRequest(
        **ident,  # type: ignore[arg-type]
        keys=() if key is None else (str(key),),
        cert_chain=chain,
        policy=str(policy) if isinstance(policy, str | Path) else None,
        roots=roots,
    )
    return LibraryTrust(request, None if isinstance(policy, str | Path) else policy)
