"""The journal's item lists: canonical JSON lines and their Merkle root.

Each item a journal records is one line, the canonical JSON (keys sorted, no
spaces, UTF-8) of ``{"dataset": i, "path": p, "reads": n, "sha256": d}``.
Lines are ordered by dataset index, then by path (Unicode code points, which
is UTF-8 byte order). A dataset's ``merkleRoot`` is the RFC 6962 (Certificate
Transparency) Merkle tree hash over its lines: leaf ``SHA-256(0x00 || line)``,
node ``SHA-256(0x01 || left || right)``, the split at the largest power of two
below the count, ``SHA-256("")`` for no line. A journal with many items keeps
the lines in a JSON-lines sidecar whose SHA-256 the signed predicate records;
a single item can then be proven with an inclusion path of log2(n) hashes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

__all__ = ["item_line", "merkle_root", "parse_line"]


def item_line(dataset: int, path: str, reads: int, sha256: str) -> bytes:
    """The canonical line of one item (no trailing newline)."""
    doc = {"dataset": dataset, "path": path, "reads": reads, "sha256": sha256}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def parse_line(line: bytes) -> tuple[int, str, int, str] | None:
    """``(dataset, path, reads, sha256)`` of a canonical line, None when it is not one."""
    try:
        doc = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or set(doc) != {"dataset", "path", "reads", "sha256"}:
        return None
    ds, path, reads, digest = doc["dataset"], doc["path"], doc["reads"], doc["sha256"]
    if not (
        type(ds) is int
        and ds >= 0
        and isinstance(path, str)
        and type(reads) is int
        and reads >= 1
        and isinstance(digest, str)
        and len(digest) == 64
        and all(c in "0123456789abcdef" for c in digest)
    ):
        return None
    if item_line(ds, path, reads, digest) != line:
        return None  # not canonical: the same item could be written two ways
    return ds, path, reads, digest


def merkle_root(lines: Sequence[bytes]) -> str:
    """The RFC 6962 Merkle tree hash of ``lines`` (hex)."""
    if not lines:
        return hashlib.sha256(b"").hexdigest()
    level = [hashlib.sha256(b"\x00" + line).digest() for line in lines]
    return _root(level).hex()


def _root(leaves: list[bytes]) -> bytes:
    # Bottom-up, carrying an odd last node up unchanged: the same tree as the
    # recursive RFC 6962 definition (split at the largest power of two < n).
    level = leaves
    while len(level) > 1:
        nxt = [
            hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest()
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]
