"""The committed vectors (tests/crypto/vectors/) decrypt to their plaintexts, with every key."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ml_integrity.crypto import message, stream
from ml_integrity.crypto.providers import AesKey, KeyProvider, X25519Identity, aes_key_name
from ml_integrity.errors import IntegrityError

VECTORS = Path(__file__).parent / "vectors"
DOC: dict[str, Any] = json.loads((VECTORS / "vectors.json").read_text())


def provider(name: str) -> KeyProvider:
    key = DOC["keys"][name]
    if "aes256" in key:
        raw = bytes.fromhex(key["aes256"])
        return AesKey(raw, aes_key_name(raw))
    private = X25519PrivateKey.from_private_bytes(bytes.fromhex(key["x25519_private"]))
    return X25519Identity(private)


@pytest.mark.parametrize("vector", DOC["vectors"], ids=[v["name"] for v in DOC["vectors"]])
def test_vector_decrypts_with_each_recipient(vector: dict[str, Any]) -> None:
    data = (VECTORS / vector["file"]).read_bytes()
    for who in vector["recipients"]:
        plain = stream.decrypt_bytes(data, [provider(who)], vector["file"])
        assert len(plain) == vector["plaintext_length"]
        assert hashlib.sha256(plain).hexdigest() == vector["plaintext_sha256"]
        assert plain == bytes((i * 7 + 3) % 256 for i in range(len(plain)))
    header = message.parse_header(io.BytesIO(data), vector["file"])
    assert header.frame_length == vector["frame_length"]
    if "data_key" in vector:
        data_key = bytes.fromhex(vector["data_key"])
        assert header.message_id.hex() == vector["message_id"]
        assert message.commitment(data_key, header.message_id).hex() == vector["commitment"]
        assert message.frame_key(data_key, header.message_id).hex() == vector["frame_key"]
        assert header.commitment.hex() == vector["commitment"]


@pytest.mark.parametrize("vector", DOC["vectors"], ids=[v["name"] for v in DOC["vectors"]])
def test_vector_refuses_a_key_it_was_not_made_for(vector: dict[str, Any]) -> None:
    data = (VECTORS / vector["file"]).read_bytes()
    outsiders = [n for n in DOC["keys"] if n not in vector["recipients"]]
    for who in outsiders:
        with pytest.raises(IntegrityError, match="not a recipient"):
            stream.decrypt_bytes(data, [provider(who)], vector["file"])


def test_public_keys_in_the_vectors_match_the_private_keys() -> None:
    for key in DOC["keys"].values():
        if "x25519_private" in key:
            identity = X25519Identity(
                X25519PrivateKey.from_private_bytes(bytes.fromhex(key["x25519_private"]))
            )
            assert identity.key_id == hashlib.sha256(bytes.fromhex(key["x25519_public"])).digest()
