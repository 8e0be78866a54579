"""Keys and messages for the encryption tests, made with the real key files."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from ml_integrity.crypto import keys, message, stream
from ml_integrity.crypto.providers import KeyProvider

FRAME = message.MIN_FRAME


@dataclass(frozen=True)
class KeySet:
    """One X25519 key pair and one AES-256 key, as files and as providers."""

    private: Path
    public: Path
    aes: Path

    def recipients(self) -> list[KeyProvider]:
        return keys.load_recipients([self.public, self.aes])

    def identity(self) -> KeyProvider:
        return keys.load_decryption_key(self.private)

    def aes_key(self) -> KeyProvider:
        return keys.load_decryption_key(self.aes)


def make_keys(root: Path, name: str = "alice") -> KeySet:
    root.mkdir(parents=True, exist_ok=True)
    private, public = keys.generate_x25519(root / f"{name}.x25519")
    aes = keys.generate_aes256(root / f"{name}.aes")
    return KeySet(private, public, aes)


def plaintext(n: int, seed: int = 0) -> bytes:
    """Deterministic, incompressible-looking bytes."""
    return bytes((i * 131 + seed * 7 + (i >> 8)) % 251 for i in range(n))


def encrypt(data: bytes, recipients: list[KeyProvider], frame: int = FRAME) -> bytes:
    return stream.encrypt_bytes(data, recipients, frame_length=frame)


@dataclass(frozen=True)
class Layout:
    """Where the frames of a message start and end (offsets into the bytes)."""

    header_end: int
    frames: list[tuple[int, int]]
    """(start, end) of each frame record, the final one last."""


def layout(ct: bytes) -> Layout:
    import io

    header = message.parse_header(io.BytesIO(ct), "<test>")
    pos = header.size
    frames = []
    while pos < len(ct):
        (marker,) = struct.unpack_from(">I", ct, pos)
        if marker == message.FINAL_MARKER:
            (length,) = struct.unpack_from(">I", ct, pos + 4 + 4 + 12)
            end = pos + 24 + length + 16
        else:
            end = pos + 4 + 12 + header.frame_length + 16
        frames.append((pos, end))
        pos = end
    return Layout(header.size, frames)
