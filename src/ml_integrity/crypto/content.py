"""The plaintext digests of encrypted files, for ``verify PATH --decryption-key KEY``.

:class:`DecryptingContent` is a :class:`ml_integrity.core.content.ContentReader`:
installed with :func:`ml_integrity.core.content.reading_through`, it makes the
ordinary digest check hash each file's plaintext as it is decrypted, frame by
frame, in memory. No plaintext is written anywhere. Every file must be
encrypted (a plaintext file in an encrypted folder is refused); a bundle is
read as it is when it is not encrypted, and decrypted in memory when it is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ml_integrity.crypto import stream
from ml_integrity.crypto.providers import KeyProvider
from ml_integrity.errors import UsageError

MAX_BUNDLE = 64 << 20


def sha256_plaintext(path: Path, keys: Sequence[KeyProvider]) -> tuple[str, int]:
    """The SHA-256 (hex) and size of the plaintext of one encrypted file."""
    digest = hashlib.sha256()
    size = 0
    with stream.open_decrypted(path, keys) as reader:
        frames = reader.frames()
        while (frame := frames.next_frame()) is not None:
            digest.update(frame)
            size += len(frame)
    return digest.hexdigest(), size


class DecryptingContent:
    """Reads encrypted files' plaintext for verification, with the given keys."""

    def __init__(self, keys: Sequence[KeyProvider]) -> None:
        self._keys = list(keys)

    def sha256_files(
        self,
        root: Path,
        paths: Sequence[str],
        *,
        workers: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, str]:
        sizes = {p: (root / p).stat().st_size for p in paths}
        total = sum(sizes.values())
        done = 0

        def one(rel: str) -> tuple[str, str]:
            return rel, sha256_plaintext(root / rel, self._keys)[0]

        out: dict[str, str] = {}
        n = max(1, min(workers or 2, len(paths) or 1))
        with ThreadPoolExecutor(max_workers=n) as pool:
            for rel, hex_digest in pool.map(one, paths):
                out[rel] = hex_digest
                done += sizes[rel]
                if progress is not None:
                    progress(done, total)
        return out

    def read_bytes(self, path: Path) -> bytes:
        if not stream.is_encrypted(path):
            return path.read_bytes()
        chunks: list[bytes] = []
        size = 0
        with stream.open_decrypted(path, self._keys) as reader:
            frames = reader.frames()
            while (frame := frames.next_frame()) is not None:
                size += len(frame)
                if size > MAX_BUNDLE:
                    raise UsageError("encrypted bundle is too large", path=path)
                chunks.append(bytes(frame))
        return b"".join(chunks)
