"""Write the encryption test vectors (tests/crypto/vectors/), independently of ml_integrity.

This script builds messages from the primitives alone (struct, hashlib and
``cryptography``'s AESGCM, HKDF, X25519), following docs/format.md, with fixed
keys, message ids, IVs and ephemeral keys, so that the vectors are a second
implementation the tests hold ml_integrity.crypto to. The ``aws-sdk-*`` vector
is made by the AWS Encryption SDK itself (random, so it changes on every run).

Run it only to change the format on purpose:  python tests/crypto/make_vectors.py
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

OUT = Path(__file__).parent / "vectors"


def pattern(n: int) -> bytes:
    """The plaintext of every vector: byte i is (i * 7 + 3) mod 256."""
    return bytes((i * 7 + 3) % 256 for i in range(n))


def fixed(label: str, n: int = 32) -> bytes:
    return hashlib.sha256(label.encode()).digest()[:n]


def hkdf(alg: hashes.HashAlgorithm, ikm: bytes, salt: bytes | None, info: bytes, n: int) -> bytes:
    return HKDF(algorithm=alg, length=n, salt=salt, info=info).derive(ikm)


def u16(b: bytes) -> bytes:
    return struct.pack(">H", len(b)) + b


def raw_pub(priv: X25519PrivateKey) -> bytes:
    return priv.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def x25519_edk(recipient: X25519PrivateKey, ephemeral: X25519PrivateKey, data_key: bytes) -> bytes:
    r, e = raw_pub(recipient), raw_pub(ephemeral)
    shared = ephemeral.exchange(recipient.public_key())
    w = hkdf(hashes.SHA256(), shared, e + r, b"ml-integrity/x25519 v1", 32)
    sealed = AESGCM(w).encrypt(bytes(12), data_key, b"")
    return u16(b"ml-integrity/x25519") + u16(hashlib.sha256(r).digest()) + u16(e + sealed)


def aes_edk(key: bytes, iv: bytes, data_key: bytes) -> bytes:
    name = "aes256-" + hkdf(hashes.SHA256(), key, None, b"ml-integrity aes256 key id", 8).hex()
    info = name.encode() + struct.pack(">II", 128, 12) + iv
    return u16(b"ml-integrity") + u16(info) + u16(AESGCM(key).encrypt(iv, data_key, b""))


def message(data_key: bytes, message_id: bytes, edks: list[bytes], frame: int, pt: bytes) -> bytes:
    commit = hkdf(hashes.SHA512(), data_key, message_id, b"COMMITKEY", 32)
    key = hkdf(hashes.SHA512(), data_key, message_id, b"\x04\x78DERIVEKEY", 32)
    body = (
        b"\x02\x04\x78" + message_id + struct.pack(">H", 0) + struct.pack(">H", len(edks))
        + b"".join(edks) + struct.pack(">BI", 2, frame) + commit
    )  # fmt: skip
    out = [body, AESGCM(key).encrypt(bytes(12), b"", body)]
    seq, pos = 1, 0
    while len(pt) - pos >= frame:
        iv = bytes(8) + struct.pack(">I", seq)
        aad = message_id + b"AWSKMSEncryptionClient Frame" + struct.pack(">IQ", seq, frame)
        out += [struct.pack(">I", seq), iv, AESGCM(key).encrypt(iv, pt[pos : pos + frame], aad)]
        seq, pos = seq + 1, pos + frame
    rest = pt[pos:]
    iv = bytes(8) + struct.pack(">I", seq)
    aad = message_id + b"AWSKMSEncryptionClient Final Frame" + struct.pack(">IQ", seq, len(rest))
    out += [struct.pack(">II", 0xFFFFFFFF, seq), iv, struct.pack(">I", len(rest))]
    out.append(AESGCM(key).encrypt(iv, rest, aad))
    return b"".join(out)


def x25519_key(label: str) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(fixed(label))


def main() -> None:
    OUT.mkdir(exist_ok=True)
    alice, bob = x25519_key("alice"), x25519_key("bob")
    team = fixed("team aes key")
    cases = [
        ("aes-empty", 0, 65536, ["team"]),
        ("x25519-short", 1000, 65536, ["alice", "team"]),
        ("x25519-exact", 131072, 65536, ["alice"]),
        ("multi-recipient", 250000, 100000, ["alice", "bob", "team"]),
    ]
    index = []
    for name, n, frame, who in cases:
        data_key, message_id = fixed(f"{name} data key"), fixed(f"{name} message id")
        edks = []
        for i, w in enumerate(who):
            if w == "team":
                edks.append(aes_edk(team, fixed(f"{name} iv {i}", 12), data_key))
            else:
                ephemeral = x25519_key(f"{name} ephemeral {i}")
                edks.append(x25519_edk(alice if w == "alice" else bob, ephemeral, data_key))
        pt = pattern(n)
        (OUT / f"{name}.bin").write_bytes(message(data_key, message_id, edks, frame, pt))
        index.append(
            {
                "name": name,
                "file": f"{name}.bin",
                "plaintext_length": n,
                "plaintext_sha256": hashlib.sha256(pt).hexdigest(),
                "frame_length": frame,
                "recipients": who,
                "data_key": data_key.hex(),
                "message_id": message_id.hex(),
                "commitment": hkdf(hashes.SHA512(), data_key, message_id, b"COMMITKEY", 32).hex(),
                "frame_key": hkdf(
                    hashes.SHA512(), data_key, message_id, b"\x04\x78DERIVEKEY", 32
                ).hex(),
            }
        )
    index.append(aws_vector(team))
    keys = {
        "alice": {"x25519_private": fixed("alice").hex(), "x25519_public": raw_pub(alice).hex()},
        "bob": {"x25519_private": fixed("bob").hex(), "x25519_public": raw_pub(bob).hex()},
        "team": {"aes256": team.hex()},
    }
    doc = {"plaintext": "byte i is (i * 7 + 3) mod 256", "keys": keys, "vectors": index}
    (OUT / "vectors.json").write_text(json.dumps(doc, indent=2) + "\n")


def aws_vector(team: bytes) -> dict[str, object]:
    import aws_encryption_sdk
    from aws_encryption_sdk.identifiers import (
        Algorithm,
        CommitmentPolicy,
        EncryptionKeyType,
        WrappingAlgorithm,
    )
    from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
    from aws_encryption_sdk.key_providers.raw import RawMasterKey

    name = "aes256-" + hkdf(hashes.SHA256(), team, None, b"ml-integrity aes256 key id", 8).hex()
    key = RawMasterKey(
        provider_id="ml-integrity",
        key_id=name.encode(),
        wrapping_key=WrappingKey(
            WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING, team, EncryptionKeyType.SYMMETRIC
        ),
    )
    client = aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
    )
    pt = pattern(70000)
    ct, _ = client.encrypt(
        source=pt,
        key_provider=key,
        algorithm=Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
        frame_length=65536,
        encryption_context={"purpose": "test vector", "a": "first key"},
    )
    (OUT / "aws-sdk-context.bin").write_bytes(ct)
    return {
        "name": "aws-sdk-context",
        "file": "aws-sdk-context.bin",
        "plaintext_length": len(pt),
        "plaintext_sha256": hashlib.sha256(pt).hexdigest(),
        "frame_length": 65536,
        "recipients": ["team"],
        "made_by": f"aws-encryption-sdk {aws_encryption_sdk.__version__}",
    }


if __name__ == "__main__":
    main()
