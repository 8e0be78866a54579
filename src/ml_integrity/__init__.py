"""ml-integrity: integrity for the ML supply chain.

Checksums, signatures and safety checks for models and datasets, where ML
teams already work: Git, Git LFS, pre-commit and GitHub Actions.

Public modules:

- :mod:`ml_integrity.core.manifest`: what a model or repository contains
  (paths, sizes, SHA-256 digests) as a canonical, versioned document.
- :mod:`ml_integrity.core.hashing`: the parallel, incremental SHA-256 engine.
- :mod:`ml_integrity.core.signing`: sign a model folder or file as an OpenSSF
  Model Signing (OMS) v1.0 bundle.
- :mod:`ml_integrity.core.verifying`: verify such a bundle: signature, then trust,
  then digests. :func:`ml_integrity.core.verifying.verify_model` is the simple
  API: one bundle, one verifier (a key, a certificate chain).
- :mod:`ml_integrity.trust.verdict`: verify one or several bundles under a trust
  policy (:mod:`ml_integrity.trust.policy`); what the command line and the Action use.
- :mod:`ml_integrity.errors`: the one error hierarchy and the exit codes.

Example::

    from pathlib import Path
    from ml_integrity.trust import keys
    from ml_integrity.core import signing
    from ml_integrity.core import verifying

    signer = keys.KeySigner(Path("key.pem"))
    signing.sign(Path("model"), signer, Path("model.sig"))
    result = verifying.verify_model(
        Path("model"), Path("model.sig"), keys.KeyVerifier(Path("key.pem.pub"))
    )
    print(result.signer, result.files)
"""

__version__ = "0.2.0"

__all__ = ["__version__"]
