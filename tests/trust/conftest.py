"""Fixtures for the Sigstore and policy tests: the loopback doubles and signed vectors."""

from __future__ import annotations

from tests.support.sigstore_fixtures import (  # noqa: F401
    fake_sigstore,
    oidc_secret,
    oidc_server,
    sigstore_trust_config,
)
