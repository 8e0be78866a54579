"""The library API's trust goes through the one resolver (issue 9), as verify's does."""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path
from typing import Any

import pytest

from ml_integrity.data import VerifiedDataset
from ml_integrity.errors import UsageError
from ml_integrity.trust import resolver
from tests.data.conftest import Signed


def test_there_is_no_second_resolver() -> None:
    assert importlib.util.find_spec("ml_integrity.data.backends") is None


def test_the_dataset_asks_the_one_resolver(signed: Signed, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[resolver.TrustRequest, str]] = []
    real = resolver.resolve_trust

    def spy(request: resolver.TrustRequest, purpose: Any, **kw: Any) -> resolver.Trust:
        calls.append((request, purpose))
        return real(request, purpose, **kw)

    monkeypatch.setattr(resolver, "resolve_trust", spy)
    ds = VerifiedDataset(signed.root, bundle=signed.bundle, key=signed.pub)
    assert [(r.keys, p) for r, p in calls] == [((str(signed.pub),), "model")]
    assert ds.policy.signers[0].rule.kind == "key"
    pickle.loads(pickle.dumps(ds._trust))  # worker processes resolve it again


def test_the_keywords_are_named_as_the_library_spells_them(signed: Signed, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\n")
    with pytest.raises(UsageError, match="give either policy= or key="):
        VerifiedDataset(signed.root, bundle=signed.bundle, key=signed.pub, policy=policy)
    with pytest.raises(UsageError, match="unknown identity field"):
        VerifiedDataset(signed.root, bundle=signed.bundle, identity={"subject": "me"})
    with pytest.raises(UsageError, match="give identity or identity_regex, not both"):
        VerifiedDataset(
            signed.root,
            bundle=signed.bundle,
            identity={"identity": "a@b", "identity_regex": ".*", "issuer": "https://x"},
        )
    with pytest.raises(UsageError) as no_trust:
        VerifiedDataset(signed.root, bundle=signed.bundle)
    assert "key=" in (no_trust.value.hint or "") and "--key" not in (no_trust.value.hint or "")
