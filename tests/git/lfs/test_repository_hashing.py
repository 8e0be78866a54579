"""Repository mode trusts only SHA-256-over-files bundles: their digests are the LFS oids."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from ml_integrity.trust.keys import KeySigner
from tests.git.lfs.lfs_support import World, git, mi


def test_a_blake3_claim_is_not_taken_for_an_lfs_oid(world: World, good: Path) -> None:
    """The signer's statement, relabelled blake3 (same hex digests) and re-signed by the
    same key: the digests still equal the oids, but the signer never vouched for SHA-256."""
    (sig,) = (good / ".ml-integrity").glob("*.sig")
    doc = json.loads(sig.read_text())
    statement = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    statement["predicate"]["serialization"]["hash_type"] = "blake3"
    for res in statement["predicate"]["resources"]:
        res["algorithm"] = "blake3"
    sig.write_text(KeySigner(world.key).sign_statement(json.dumps(statement).encode()))
    git("commit", "-q", "-am", "relabel the signature", cwd=good)
    r = mi("verify", "--git-repo", cwd=good)
    assert r.returncode == 1, r.output
    assert "not sha256 files" in r.output
