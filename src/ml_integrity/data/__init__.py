"""Training data: a loader that verifies before it reads, the signed journal of
what training read, and the ML-BOM that ties a model to its datasets.

Owns the verifying loader (:mod:`.dataset`: :class:`VerifiedDataset`, with the
streaming reader of :mod:`.reader` that withholds a file's last chunk until its
digest matches), the training journal (:mod:`.journal`: :class:`Journal`, its
in-toto predicate, the Merkle root and JSON-lines sidecar of :mod:`.merkle`,
and :mod:`.journal_check`, which verifies a sealed journal), the ML-BOM
writers (:mod:`.bom`: CycloneDX 1.6 and SPDX 3.0), the framework adapters
(:mod:`.adapters`: a PyTorch map-style dataset, tar-style shards), the seam
for encrypted datasets (:mod:`.decryption`) and the library API's trust
keywords, resolved by the one trust resolver (:mod:`.trust`).

May import: the standard library, :mod:`ml_integrity.core`,
:mod:`ml_integrity.trust` and :mod:`ml_integrity.errors` (a use case beside
:mod:`ml_integrity.git`, which it never imports). Nothing heavy at import:
trust (cryptography, sigstore) is imported inside the functions that verify,
and no framework (torch, webdataset) is ever imported by this package unless
an adapter asks for it. The optional :mod:`ml_integrity.crypto` package
(decryption) is looked up only when ``decryption_key`` is given.
"""

from __future__ import annotations

from ml_integrity.data.dataset import VerifiedDataset
from ml_integrity.data.journal import JOURNAL_PREDICATE_TYPE, Journal

__all__ = ["JOURNAL_PREDICATE_TYPE", "Journal", "VerifiedDataset"]
