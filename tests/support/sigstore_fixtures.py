"""Pytest fixtures for the loopback Sigstore doubles (see :mod:`tests.support.sigstore_doubles`).

Use them from a conftest.py::

    from tests.support.sigstore_fixtures import (  # noqa: F401
        fake_sigstore, oidc_secret, oidc_server, sigstore_trust_config,
    )

``fake_sigstore`` needs Node and ``@sigstore/mock`` (``tests/tools/install.sh``
installs both). Where they are missing the tests that need them are skipped,
except under CI (``CI=true``), where a missing double is a failure.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.sigstore_doubles import (
    FakeSigstore,
    OIDCTokenServer,
    mock_unavailable_reason,
)


@pytest.fixture(scope="session")
def oidc_secret() -> str:
    """The HS256 secret the OIDC stand-in signs with and the fake Fulcio checks."""
    return secrets.token_hex(32)


@pytest.fixture
def oidc_server(oidc_secret: str) -> Iterator[OIDCTokenServer]:
    """A fresh stand-in for GitHub Actions' OIDC token endpoint."""
    server = OIDCTokenServer(secret=oidc_secret).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def fake_sigstore(oidc_secret: str) -> Iterator[FakeSigstore]:
    """One fake Fulcio + Rekor v1 (Node, @sigstore/mock) for the whole session."""
    reason = mock_unavailable_reason()
    if reason:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"the Sigstore test double is required in CI: {reason}")
        pytest.skip(reason)
    fake = FakeSigstore(oidc_secret).start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def sigstore_trust_config(fake_sigstore: FakeSigstore, tmp_path: Path) -> Path:
    """A ClientTrustConfig file pointing at the fake (for --trust-config / --trusted-root)."""
    return fake_sigstore.write_trust_config(tmp_path / "fake-trust-config.json")
