"""The core: what a model or repository is, and the OMS format that signs it.

Owns the manifest and its paths (:mod:`.manifest`), format labels
(:mod:`.sniff`), the hashing engine (:mod:`.hashing`; one file:
:mod:`.hashing_read`; algorithms: :mod:`.hashing_algorithms`; shards:
:mod:`.hashing_shards`; the stat cache: :mod:`.hashing_cache`), the LFS
pointer format and store layout (:mod:`.lfs`), the OMS statement, DSSE and
bundle format (:mod:`.oms`, :mod:`.oms_predicate`; model_signing 0.2.0's
legacy bundles: :mod:`.legacy_v02`), and the signer/verifier protocols with
the folder sign and verify flows (:mod:`.signing`, :mod:`.verifying`), plus
atomic file writes (:mod:`.fileio`).

May import: the standard library, :mod:`ml_integrity.errors`, and ``blake3``
(imported only when BLAKE3 is asked for). Nothing else of ours (import-linter
enforces this in ``make lint``).
"""
