"""``VerifiedDataset.verify_all``: every allowed item checked, one error for all differences.

A bundle of SHA-256 files (plain items) is checked on the threaded hashing
engine with the stat cache; any other (BLAKE2b, BLAKE3, shards, encrypted
items) item by item through the dataset's own reads, in the bundle's terms.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ml_integrity.core import hashing
from ml_integrity.data.prefetch import MAX_ITEM
from ml_integrity.errors import IntegrityError, ManifestDiff, OperationalError

if TYPE_CHECKING:
    from ml_integrity.data.dataset import VerifiedDataset

__all__ = ["verify_all"]


def verify_all(ds: VerifiedDataset, workers: int | None) -> int:
    """Check every allowed item of ``ds``; return how many, or raise naming every difference."""
    resources = ds._resources
    changed: list[str] = []
    missing: list[str] = []
    if ds._decrypt is not None or not ds._check.sha256_files:
        log, ds._log = ds._log, None  # a check, not a read for training: not journaled
        try:
            for rel in resources:
                try:
                    if ds._decrypt is None and ds._sizes.get(rel, MAX_ITEM + 1) <= MAX_ITEM:
                        ds.read_bytes(rel)
                    else:
                        with ds.open(rel) as f:
                            while f.read(1 << 20):
                                pass
                except IntegrityError as exc:
                    if exc.path != rel:
                        raise
                    (missing if exc.diff.missing else changed).append(rel)
        finally:
            ds._log = log
        _raise(ds, changed, missing)
        return len(resources)
    root = ds._root_str
    missing = [
        rel
        for rel in resources
        if not os.path.isfile(os.path.join(root, rel)) or os.path.islink(os.path.join(root, rel))
    ]
    absent = set(missing)
    present = [rel for rel in resources if rel not in absent]
    try:
        digests = hashing.hash_files(
            ds.root, present, workers=workers, cache=ds._cache, rehash=False
        )
    except OperationalError as exc:
        raise IntegrityError(
            f"an item could not be verified: {exc.message}", path=exc.path, hint=exc.hint
        ) from None
    changed = [rel for rel in present if digests[rel].sha256 != resources[rel]]
    ds._save_cache()
    _raise(ds, changed, missing)
    return len(present)


def _raise(ds: VerifiedDataset, changed: list[str], missing: list[str]) -> None:
    if changed or missing:
        raise IntegrityError(
            f"{ds.root} does not match what {ds.signer} signed "
            f"({len(changed)} changed, {len(missing)} missing)",
            path=ds.bundle,
            diff=ManifestDiff(changed=tuple(sorted(changed)), missing=tuple(sorted(missing))),
            hint="restore the listed items, or re-sign if the change is intended",
        )
