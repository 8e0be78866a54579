"""Differential: the AWS Encryption SDK decrypts what we write, and we decrypt what it writes."""

from __future__ import annotations

import io
import os
import warnings
from typing import Any

import pytest

from ml_integrity.crypto import message, stream
from ml_integrity.crypto.providers import AesKey, aes_key_name
from ml_integrity.errors import IntegrityError
from tests.crypto.support import make_keys

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import aws_encryption_sdk
    from aws_encryption_sdk.identifiers import (
        Algorithm,
        CommitmentPolicy,
        EncryptionKeyType,
        WrappingAlgorithm,
    )
    from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
    from aws_encryption_sdk.key_providers.raw import RawMasterKey

KEY = os.urandom(32)
OURS = AesKey(KEY, aes_key_name(KEY))


def aws_key(key: bytes = KEY) -> Any:
    return RawMasterKey(
        provider_id="ml-integrity",
        key_id=aes_key_name(key).encode(),
        wrapping_key=WrappingKey(
            WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING, key, EncryptionKeyType.SYMMETRIC
        ),
    )


def client() -> Any:
    return aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
    )


SIZES = [0, 1, 65535, 65536, 65537, 3 * 65536 + 5]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("frame", [message.MIN_FRAME, 300_000, message.MAX_FRAME])
def test_aws_sdk_decrypts_ours(n: int, frame: int, tmp_path: Any) -> None:
    data = os.urandom(n)
    # an X25519 recipient too: the SDK skips the data key it has no keyring for
    ct = stream.encrypt_bytes(
        data, [*make_keys(tmp_path).recipients()[:1], OURS], frame_length=frame
    )
    plain, header = client().decrypt(source=ct, key_provider=aws_key())
    assert plain == data
    assert header.algorithm == Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY
    assert header.frame_length == frame


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize(
    "context", [{}, {"purpose": "model", "a": "b"}], ids=["no-context", "context"]
)
def test_we_decrypt_the_aws_sdk(n: int, context: dict[str, str]) -> None:
    data = os.urandom(n)
    ct, _ = client().encrypt(
        source=data,
        key_provider=aws_key(),
        algorithm=Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
        frame_length=65536,
        encryption_context=context,
    )
    assert stream.decrypt_bytes(ct, [OURS]) == data
    # and the SDK's tampering is ours too: a flipped tag byte
    bad = bytearray(ct)
    bad[-1] ^= 1
    with pytest.raises(IntegrityError, match="final frame failed authentication"):
        stream.decrypt_bytes(bytes(bad), [OURS])


def test_aws_messages_we_do_not_accept_are_refused_with_the_reason() -> None:
    small, _ = client().encrypt(
        source=b"x",
        key_provider=aws_key(),
        algorithm=Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
        frame_length=4096,
    )
    with pytest.raises(IntegrityError, match="frame length 4096 is outside"):
        stream.decrypt_bytes(small, [OURS])
    signed, _ = client().encrypt(
        source=b"x",
        key_provider=aws_key(),
        algorithm=Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384,
        frame_length=65536,
    )
    with pytest.raises(IntegrityError, match="suite 0x0578"):
        stream.decrypt_bytes(signed, [OURS])


def test_aws_sdk_refuses_our_message_under_another_key() -> None:
    ct = stream.encrypt_bytes(b"secret", [OURS])
    from aws_encryption_sdk.exceptions import DecryptKeyError

    with pytest.raises(DecryptKeyError):
        client().decrypt(source=ct, key_provider=aws_key(os.urandom(32)))


def test_padded_lfs_headers_are_plain_aws_messages() -> None:
    """The Git LFS profile pads the header with an encryption-context pair; the SDK reads it."""
    data = os.urandom(70_000)
    out = io.BytesIO()
    stream.encrypt_stream(io.BytesIO(data), out, [OURS], header_size=8192)
    ct = out.getvalue()
    assert len(ct) == message.ciphertext_size(len(data), message.DEFAULT_FRAME, 8192)
    plain, header = client().decrypt(source=ct, key_provider=aws_key())
    assert plain == data
    assert set(header.encryption_context) == {message.PAD_KEY}
