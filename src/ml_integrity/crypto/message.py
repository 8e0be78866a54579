"""The message format: AWS Encryption SDK message format v2, suite 0x0478, framed.

Layout (big-endian; every byte is specified in ``docs/format.md``, "Encryption")::

    header   version=0x02 | suite=0x0478 | message id (32) | context length (2) |
             context | data-key count (2) | data keys | content type=0x02 |
             frame length (4) | commitment (32) | header tag (16)
    frame    sequence number (4) | IV (12) | ciphertext (frame length) | tag (16)
    final    0xFFFFFFFF | sequence number (4) | IV (12) | length (4) | ciphertext | tag (16)

Keys: the frame key is HKDF-SHA512(data key, salt=message id,
info=0x0478 || "DERIVEKEY"), the commitment HKDF-SHA512(data key, salt=message
id, info="COMMITKEY"), both 32 bytes. The header tag is AES-256-GCM with the
frame key over an empty plaintext, IV zero, the header (up to the commitment)
as associated data. Frame ``n`` (from 1) uses IV ``0^8 || n`` and associated
data ``message id || "AWSKMSEncryptionClient Frame" (or "... Final Frame") ||
n (4) || plaintext length (8)``: reordering, truncation and extension fail.

This module only builds and parses bytes and derives keys; streaming lives in
:mod:`.stream`. Parse errors are :class:`~ml_integrity.errors.IntegrityError`
naming the file (fail closed: what cannot be parsed is not decrypted).
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from ml_integrity.crypto.providers import EncryptedDataKey
from ml_integrity.errors import IntegrityError

VERSION = 0x02
SUITE_ID = 0x0478
"""AES_256_GCM_HKDF_SHA512_COMMIT_KEY: committing, unsigned (OMS signs the plaintext)."""
SIGNED_SUITE_ID = 0x0578
CONTENT_TYPE_FRAMED = 0x02
MESSAGE_ID_LEN = 32
KEY_LEN = 32
IV_LEN = 12
TAG_LEN = 16
COMMITMENT_LEN = 32
FINAL_MARKER = 0xFFFFFFFF
MAX_FRAMES = 0xFFFFFFFF - 1
"""Sequence numbers run from 1; the marker value itself is not a sequence number."""

MIN_FRAME = 64 << 10
MAX_FRAME = 1 << 20
DEFAULT_FRAME = 1 << 20
MAX_DATA_KEYS = 256
"""More recipients than this in one header are refused (bounded work on hostile input)."""
MAX_HEADER = 1 << 20
"""A longer header is refused (bounded memory on hostile input)."""

FRAME_AAD = b"AWSKMSEncryptionClient Frame"
FINAL_FRAME_AAD = b"AWSKMSEncryptionClient Final Frame"
MAGIC = struct.pack(">BH", VERSION, SUITE_ID)
"""The first three bytes of every message this module writes."""

PAD_KEY = "ml-integrity:pad"
"""The encryption-context key whose value pads a header to a fixed size (Git LFS)."""
_HEADER_FIXED = 1 + 2 + MESSAGE_ID_LEN + 2 + 2 + 1 + 4 + COMMITMENT_LEN + TAG_LEN
"""Header bytes other than the encryption context and the data keys."""
_FINAL_OVERHEAD = 4 + 4 + IV_LEN + 4 + TAG_LEN
_FRAME_OVERHEAD = 4 + IV_LEN + TAG_LEN

_DERIVE_INFO = struct.pack(">H", SUITE_ID) + b"DERIVEKEY"
_COMMIT_INFO = b"COMMITKEY"
_HEADER_IV = bytes(IV_LEN)


@dataclass(frozen=True)
class Header:
    """A parsed header (not yet authenticated: that needs the data key)."""

    message_id: bytes
    context: bytes
    """The serialized encryption context (empty for what ml-integrity writes)."""
    data_keys: tuple[EncryptedDataKey, ...]
    frame_length: int
    commitment: bytes
    tag: bytes
    body: bytes
    """The header bytes the tag authenticates (version through commitment)."""

    @property
    def size(self) -> int:
        return len(self.body) + TAG_LEN


def _hkdf(data_key: bytes, salt: bytes, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA512(), length=KEY_LEN, salt=salt, info=info).derive(data_key)


def frame_key(data_key: bytes, message_id: bytes) -> bytes:
    """The per-file key: HKDF-SHA512 of the data key, salted with the message id."""
    return _hkdf(data_key, message_id, _DERIVE_INFO)


def commitment(data_key: bytes, message_id: bytes) -> bytes:
    """The key commitment stored in the header."""
    return _hkdf(data_key, message_id, _COMMIT_INFO)


def frame_iv(sequence: int) -> bytes:
    return bytes(IV_LEN - 4) + struct.pack(">I", sequence)


def frame_aad(message_id: bytes, sequence: int, length: int, *, final: bool) -> bytes:
    label = FINAL_FRAME_AAD if final else FRAME_AAD
    return message_id + label + struct.pack(">IQ", sequence, length)


def _u16_field(value: bytes, what: str) -> bytes:
    if len(value) > 0xFFFF:
        raise ValueError(f"{what} is longer than 65535 bytes")
    return struct.pack(">H", len(value)) + value


def serialize_data_key(edk: EncryptedDataKey) -> bytes:
    return (
        _u16_field(edk.provider_id.encode(), "provider id")
        + _u16_field(edk.provider_info, "provider info")
        + _u16_field(edk.ciphertext, "encrypted data key")
    )


def build_header(
    data_key: bytes,
    message_id: bytes,
    data_keys: Sequence[EncryptedDataKey],
    frame_length: int,
    context: bytes = b"",
) -> tuple[bytes, bytes]:
    """The serialized header (with its tag) and the frame key."""
    if not 1 <= len(data_keys) <= MAX_DATA_KEYS:
        raise ValueError(f"between 1 and {MAX_DATA_KEYS} recipients are needed")
    check_frame_length(frame_length)
    body = b"".join(
        [
            MAGIC,
            message_id,
            _u16_field(context, "encryption context"),
            struct.pack(">H", len(data_keys)),
            *(serialize_data_key(k) for k in data_keys),
            struct.pack(">BI", CONTENT_TYPE_FRAMED, frame_length),
            commitment(data_key, message_id),
        ]
    )
    key = frame_key(data_key, message_id)
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    tag = AESGCM(key).encrypt(_HEADER_IV, b"", body)
    return body + tag, key


def padding_context(data_keys: Sequence[EncryptedDataKey], header_size: int) -> bytes:
    """The encryption context that makes the header exactly ``header_size`` bytes.

    One pair, ``ml-integrity:pad`` = a run of ``0``: the AWS format allows any
    context, and it is authenticated like the rest of the header. Raises
    ValueError when the data keys alone do not fit.
    """
    keys_size = sum(len(serialize_data_key(k)) for k in data_keys)
    pad = header_size - _HEADER_FIXED - keys_size - (2 + 2 + len(PAD_KEY) + 2)
    if pad < 0 or pad > 0xFFFF - 64:
        raise ValueError(f"{len(data_keys)} recipients do not fit in a {header_size}-byte header")
    key = PAD_KEY.encode()
    return struct.pack(">HH", 1, len(key)) + key + struct.pack(">H", pad) + b"0" * pad


def ciphertext_size(plaintext_size: int, frame_length: int, header_size: int) -> int:
    """The size of a message of ``plaintext_size`` bytes with a header of ``header_size``."""
    full, rest = divmod(plaintext_size, frame_length)
    return header_size + full * (frame_length + _FRAME_OVERHEAD) + rest + _FINAL_OVERHEAD


def check_frame_length(frame_length: int) -> None:
    if not MIN_FRAME <= frame_length <= MAX_FRAME:
        raise ValueError(f"frame length {frame_length} is outside {MIN_FRAME}..{MAX_FRAME} bytes")


class _Reader:
    """Reads the header field by field, keeping the bytes for the tag."""

    def __init__(self, stream: BinaryIO, source: str) -> None:
        self._stream = stream
        self._source = source
        self.taken = bytearray()

    def take(self, n: int, what: str) -> bytes:
        if len(self.taken) + n > MAX_HEADER:
            raise IntegrityError(
                f"encrypted file's header is longer than {MAX_HEADER} bytes ({what})",
                path=self._source,
                hint="the file is damaged or not an ml-integrity encrypted file",
            )
        data = read_exact(self._stream, n)
        if len(data) != n:
            raise IntegrityError(
                f"encrypted file ends inside its header ({what})",
                path=self._source,
                hint="the file is truncated or not an ml-integrity encrypted file",
            )
        self.taken += data
        return data

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        value: int = struct.unpack(">H", self.take(2, what))[0]
        return value

    def u32(self, what: str) -> int:
        value: int = struct.unpack(">I", self.take(4, what))[0]
        return value

    def field(self, what: str) -> bytes:
        return self.take(self.u16(what), what)


def read_exact(stream: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes: fewer only at the end of the stream."""
    chunks = []
    while n > 0:
        data = stream.read(n)
        if not data:
            break
        chunks.append(data)
        n -= len(data)
    return b"".join(chunks)


def not_encrypted(source: str, detail: str) -> IntegrityError:
    return IntegrityError(
        f"not an ml-integrity encrypted file ({detail})",
        path=source,
        hint="decrypt only files made by 'ml-integrity encrypt' (AWS Encryption SDK "
        "message v2, suite 0x0478); a plaintext file needs no --key",
    )


def parse_header(stream: BinaryIO, source: str) -> Header:
    """Read and check the header's structure (the tag is checked once the key is known)."""
    r = _Reader(stream, source)
    version = read_exact(stream, 1)
    if not version:
        raise not_encrypted(source, "empty file")
    r.taken += version
    if version[0] != VERSION:
        raise not_encrypted(source, f"message version {version[0]:#04x}, expected 0x02")
    suite = r.u16("algorithm suite")
    if suite != SUITE_ID:
        detail = (
            "suite 0x0578 signs the ciphertext; ml-integrity signs the plaintext with OMS "
            "and reads only the unsigned committing suite 0x0478"
            if suite == SIGNED_SUITE_ID
            else f"algorithm suite {suite:#06x}, expected 0x0478 (AES-256-GCM, key commitment)"
        )
        raise not_encrypted(source, detail)
    message_id = r.take(MESSAGE_ID_LEN, "message id")
    context = r.field("encryption context")
    _check_context(context, source)
    count = r.u16("data key count")
    if not 1 <= count <= MAX_DATA_KEYS:
        raise IntegrityError(
            f"header lists {count} encrypted data keys (1 to {MAX_DATA_KEYS} accepted)",
            path=source,
        )
    keys = []
    for _ in range(count):
        provider = r.field("key provider id")
        try:
            provider_id = provider.decode("utf-8")
        except UnicodeDecodeError:
            raise IntegrityError("key provider id is not UTF-8", path=source) from None
        keys.append(EncryptedDataKey(provider_id, r.field("key provider info"), r.field("key")))
    content_type = r.u8("content type")
    if content_type != CONTENT_TYPE_FRAMED:
        raise not_encrypted(source, f"content type {content_type}, expected 2 (framed)")
    frame_length = r.u32("frame length")
    try:
        check_frame_length(frame_length)
    except ValueError as exc:
        raise IntegrityError(str(exc), path=source) from None
    commit = r.take(COMMITMENT_LEN, "key commitment")
    body = bytes(r.taken)
    tag = r.take(TAG_LEN, "header tag")
    return Header(message_id, context, tuple(keys), frame_length, commit, tag, body)


def _check_context(context: bytes, source: str) -> None:
    """The encryption context must be well formed: count, then sorted unique UTF-8 pairs."""
    if not context:
        return
    bad = IntegrityError("malformed encryption context in the header", path=source)
    if len(context) < 2:
        raise bad
    (count,) = struct.unpack_from(">H", context)
    pos, seen = 2, []
    for _ in range(count):
        pair = []
        for _part in range(2):
            if pos + 2 > len(context):
                raise bad
            (n,) = struct.unpack_from(">H", context, pos)
            pos += 2
            if pos + n > len(context):
                raise bad
            try:
                context[pos : pos + n].decode("utf-8")
            except UnicodeDecodeError:
                raise bad from None
            pair.append(context[pos : pos + n])
            pos += n
        seen.append(pair[0])
    if pos != len(context) or count == 0 or seen != sorted(set(seen)):
        raise bad


def authenticate_header(header: Header, data_key: bytes, source: str) -> bytes:
    """Check the commitment and the header tag; return the frame key."""
    if not hmac.compare_digest(commitment(data_key, header.message_id), header.commitment):
        raise IntegrityError(
            "key commitment does not match the data key",
            path=source,
            hint="the header was altered or assembled from another file",
        )
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key = frame_key(data_key, header.message_id)
    try:
        AESGCM(key).decrypt(_HEADER_IV, header.tag, header.body)
    except InvalidTag:
        raise IntegrityError(
            "header authentication failed",
            path=source,
            hint="the header was altered after encryption",
        ) from None
    return key
