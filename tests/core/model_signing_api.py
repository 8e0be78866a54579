"""Run model_signing 1.1.1's Python API in a child process (its import is slow and heavy).

Used by tests/core/test_oms_hashing.py as
``python tests/core/model_signing_api.py sign|verify JSON``, where JSON holds
``model``, ``signature``, ``key`` (private for sign, public for verify),
``hash`` (``sha256``, ``blake2``, ``blake3`` or null for auto-detect when
verifying), ``shard_size`` (null: files), ``ignore_paths``,
``ignore_git_paths`` and ``allow_symlinks``. Exit 0 on success; on failure
the error goes to stderr and the exit code is 1.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def hashing_config(spec: dict[str, Any]) -> Any:
    from model_signing import hashing

    config = hashing.Config()  # type: ignore[no-untyped-call]
    if spec.get("shard_size"):
        config.use_shard_serialization(
            hashing_algorithm=spec["hash"], shard_size=spec["shard_size"]
        )
    else:
        config.use_file_serialization(hashing_algorithm=spec["hash"])
    config.set_ignored_paths(
        paths=spec.get("ignore_paths", []), ignore_git_paths=spec.get("ignore_git_paths", True)
    )
    config.set_allow_symlinks(spec.get("allow_symlinks", False))
    return config


def main(verb: str, spec: dict[str, Any]) -> int:
    from model_signing import signing, verifying

    try:
        if verb == "sign":
            signing.Config().use_elliptic_key_signer(  # type: ignore[no-untyped-call]
                private_key=spec["key"]
            ).set_hashing_config(hashing_config(spec)).sign(spec["model"], spec["signature"])
        else:
            config = verifying.Config()  # type: ignore[no-untyped-call]
            config.use_elliptic_key_verifier(public_key=spec["key"])
            if spec.get("hash"):
                config.set_hashing_config(hashing_config(spec))
            config.verify(spec["model"], spec["signature"])
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], json.loads(sys.argv[2])))
