"""Where verification takes its trust roots from: never from the repository alone.

Trust for the transparent checks (filter, transfer agent, hooks) comes from
the user's git configuration, which an attacker with write access to the
repository cannot change:

- ``ml-integrity.publicKey``: path to a PEM public key (key-based bundles);
- ``ml-integrity.certChain``: path to trusted root certificate(s) (PEM).

:func:`verifier_from_settings` turns those settings into a
:class:`~ml_integrity.core.verifying.BundleVerifier`; relative paths are resolved
against ``base`` (the repository's work tree).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ml_integrity.errors import ConfigError

if TYPE_CHECKING:  # importing verifying (oms, hashing...) would slow down every hook
    from ml_integrity.core.verifying import BundleVerifier

PUBLIC_KEY = "ml-integrity.publickey"
CERT_CHAIN = "ml-integrity.certchain"


def verifier_from_settings(settings: Mapping[str, str], *, base: Path) -> BundleVerifier:
    """A verifier for the trust named in ``settings`` (git config keys, lower-case)."""
    from ml_integrity.trust.keys import CertificateVerifier, KeyVerifier

    key = settings.get(PUBLIC_KEY)
    chain = settings.get(CERT_CHAIN)
    if key and chain:
        raise ConfigError(
            f"both {PUBLIC_KEY} and {CERT_CHAIN} are set",
            hint="keep one: git config --unset ml-integrity.certChain (or publicKey)",
        )
    if key:
        return KeyVerifier(_resolve(key, base))
    if chain:
        return CertificateVerifier([_resolve(chain, base)])
    raise ConfigError(
        "no trust configured for this repository",
        hint="git config ml-integrity.publicKey /path/to/signer.pub "
        "(or ml-integrity.certChain /path/to/root-ca.pem)",
    )


def _resolve(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path
