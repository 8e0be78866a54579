"""The PyTorch adapter against real torch (tests/tools/install.sh installs torch==2.13.0).

Skipped, with the reason, where torch could not be installed.
"""

from __future__ import annotations

import os
from typing import Any, cast

import pytest

from ml_integrity.data import Journal, VerifiedDataset
from ml_integrity.data.adapters import TorchDataset
from ml_integrity.errors import IntegrityError
from tests.data.conftest import Signed

torch = pytest.importorskip(
    "torch",
    reason="torch is not installed (tests/tools/install.sh installs torch==2.13.0; "
    "see .cache/torch-install.log)",
)
from torch.utils.data import DataLoader  # noqa: E402


def loader(adapter: TorchDataset[Any], **kwargs: Any) -> DataLoader[Any]:
    return DataLoader(cast(Any, adapter), **kwargs)


def test_dataloader_with_workers(signed: Signed) -> None:
    journal = Journal()
    ds = VerifiedDataset(signed.root, bundle=signed.bundle, key=signed.pub, journal=journal)
    adapter = TorchDataset(ds, lambda _path, data: torch.tensor(len(data)))
    total = sum(int(batch.sum()) for batch in loader(adapter, batch_size=2, num_workers=2))
    assert total == sum(len(ds.read_bytes(p)) for p in ds.files)
    ((_, items),) = journal.items().items()
    assert all(n == 2 for _, n in items.values())  # once in a worker, once here
    journal.close()


@pytest.mark.parametrize("batch_size", [None, 2])
def test_a_tampered_item_raises_in_the_worker_and_names_it_here(
    signed: Signed, batch_size: int | None
) -> None:
    journal = Journal()
    ds = VerifiedDataset(signed.root, bundle=signed.bundle, key=signed.pub, journal=journal)
    (signed.root / "images" / "003.bin").write_bytes(os.urandom(2000))  # same size
    adapter: TorchDataset[bytes] = TorchDataset(ds)
    got = []
    with pytest.raises(IntegrityError) as exc:
        for batch in loader(adapter, batch_size=batch_size, num_workers=2):
            got.append(batch)  # noqa: PERF402
    assert "DataLoader worker process" in str(exc.value)  # raised there, re-raised here
    assert "images/003.bin: content differs from what was signed (tampered)" in str(exc.value)
    ((_, items),) = journal.items().items()
    assert "images/003.bin" not in items  # never counted as read
    journal.close()


def test_without_workers_the_error_is_the_loaders_own(signed: Signed) -> None:
    ds = VerifiedDataset(signed.root, bundle=signed.bundle, key=signed.pub)
    (signed.root / "labels.csv").write_bytes(b"x" * (signed.root / "labels.csv").stat().st_size)
    with pytest.raises(IntegrityError, match="tampered") as exc:
        for _ in loader(TorchDataset(ds), batch_size=3, num_workers=0):
            pass
    assert exc.value.path == "labels.csv" and str(exc.value).startswith("content differs")
