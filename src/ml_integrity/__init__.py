"""ml-integrity: integrity for the ML supply chain.

Checksums, signatures and safety checks for models and datasets, where ML
teams already work: Git, Git LFS, pre-commit and GitHub Actions.

Public modules:

- :mod:`ml_integrity.manifest`: what a model or repository contains
  (paths, sizes, SHA-256 digests) as a canonical, versioned document.
- :mod:`ml_integrity.hashing`: the parallel, incremental SHA-256 engine.
- :mod:`ml_integrity.signing`: sign a model folder or file as an OpenSSF
  Model Signing (OMS) v1.0 bundle.
- :mod:`ml_integrity.verifying`: verify such a bundle: signature, then trust,
  then digests.
- :mod:`ml_integrity.errors`: the one error hierarchy and the exit codes.

Example::

    from pathlib import Path
    from ml_integrity import signing, verifying

    signing.sign_with_key(Path("model"), Path("key.pem"), Path("model.sig"))
    verifying.verify_with_key(Path("model"), Path("model.sig"), Path("key.pem.pub"))
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
