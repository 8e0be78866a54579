"""The PyTorch adapter against real torch (skipped where torch is not installed)."""

from __future__ import annotations

import pytest

from ml_integrity.data import Journal, VerifiedDataset
from ml_integrity.data.adapters import TorchDataset
from tests.data.conftest import Signed

torch = pytest.importorskip("torch")


def test_dataloader_with_workers(signed: Signed) -> None:
    from torch.utils.data import DataLoader

    journal = Journal()
    ds = VerifiedDataset(signed.root, bundle=signed.bundle, key=signed.pub, journal=journal)
    adapter = TorchDataset(ds, lambda _path, data: torch.tensor(len(data)))
    loader = DataLoader(adapter, batch_size=2, num_workers=2)
    total = sum(int(batch.sum()) for batch in loader)
    assert total == sum(len(ds.read_bytes(p)) for p in ds.files)
    ((_, items),) = journal.items().items()
    assert all(n == 2 for _, n in items.values())  # once in a worker, once here
