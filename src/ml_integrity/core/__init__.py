"""The core: what a model or repository is, and the OMS format that signs it.

Owns the manifest and its paths (:mod:`.manifest`), format labels
(:mod:`.sniff`), the hashing engine and stat cache (:mod:`.hashing`), the LFS
pointer format and store layout (:mod:`.lfs`), the OMS statement, DSSE and
bundle format (:mod:`.oms`), and the signer/verifier protocols with the folder
sign and verify flows (:mod:`.signing`, :mod:`.verifying`), plus atomic file
writes (:mod:`.fileio`).

May import: the standard library and :mod:`ml_integrity.errors`. Nothing else
of ours (import-linter enforces this in ``make lint``).
"""
