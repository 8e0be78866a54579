"""The scanner: is an artifact safe to load?

Owns format validation and containers (:mod:`.formats`), the pickle analysis
(:mod:`.pickles`), the scan of files, folders and streams (:mod:`.scanner`)
and its SARIF output (:mod:`.sarif`).

May import: :mod:`ml_integrity.core` and :mod:`ml_integrity.errors`. Never git
(a staged blob reaches the scanner as a stream), trust or an entry point.
"""
