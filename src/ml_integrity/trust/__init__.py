"""Trust: who may sign, and the verdict on what they signed.

Owns keys and certificates (:mod:`.keys`), Sigstore signing and verification
(:mod:`.sigstore`), the policy model and its YAML parser (:mod:`.policy`), the
trust settings read from git config (:mod:`.settings`) and the verdict over one
or several bundles (:mod:`.verdict`).

May import: :mod:`ml_integrity.core` and :mod:`ml_integrity.errors`. Never git,
the scanner or an entry point; heavy dependencies (sigstore, cryptography,
yaml) are imported lazily, inside the functions that need them.
"""
