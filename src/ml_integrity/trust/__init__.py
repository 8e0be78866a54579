"""Trust: who may sign, and the verdict on what they signed.

Owns keys and certificates (:mod:`.keys`); Sigstore signing
(:mod:`.sigstore_sign`), verification (:mod:`.sigstore`), identity matching
(:mod:`.sigstore_identity`) and trusted roots (:mod:`.sigstore_roots`); the
policy model (:mod:`.policy`, path patterns in :mod:`.globs`), its YAML parser
(:mod:`.policy_yaml`) and where a policy comes from (:mod:`.policy_source`);
the trust settings read from git config (:mod:`.settings`); the one resolver
that turns an entry point's inputs into an immutable ``Trust``
(:mod:`.resolver`) and the verification backends it implies
(:mod:`.backends`); and the verdict over one or several bundles
(:mod:`.verdict`).

May import: :mod:`ml_integrity.core` and :mod:`ml_integrity.errors`. Never git
(the repository is read through ``policy_source.RepositoryReader``, which the
entry point's git adapter satisfies), the scanner or an entry point; heavy
dependencies (sigstore, cryptography, yaml) are imported lazily, inside the
functions that need them.
"""
