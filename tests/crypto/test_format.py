"""Round trips of the streaming format, and the reader the loader uses."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_integrity.crypto import message, open_decrypted, stream
from ml_integrity.crypto.providers import AesKey
from ml_integrity.errors import IntegrityError
from tests.crypto.support import FRAME, KeySet, encrypt, layout, make_keys, plaintext


@pytest.fixture(scope="module")
def ks(tmp_path_factory: pytest.TempPathFactory) -> KeySet:
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.mark.parametrize("n", [0, 1, FRAME - 1, FRAME, FRAME + 1, 3 * FRAME, 3 * FRAME + 17])
def test_round_trip_at_frame_edges(ks: KeySet, n: int) -> None:
    data = plaintext(n)
    ct = encrypt(data, ks.recipients())
    assert stream.decrypt_bytes(ct, [ks.identity()]) == data
    assert stream.decrypt_bytes(ct, [ks.aes_key()]) == data
    frames = layout(ct).frames
    # n // FRAME full frames, then a final frame that is shorter (empty on an exact multiple)
    assert len(frames) == n // FRAME + 1
    assert ct[: len(message.MAGIC)] == message.MAGIC


def test_ciphertext_contains_no_plaintext(ks: KeySet) -> None:
    data = b"the secret weights " * 5000
    ct = encrypt(data, ks.recipients())
    assert b"secret weights" not in ct
    assert len(ct) < len(data) + 1024  # overhead: header + 40 bytes per frame


def test_each_file_gets_its_own_data_key_and_message_id(ks: KeySet) -> None:
    a, b = (encrypt(b"same", ks.recipients()) for _ in range(2))
    ha = message.parse_header(io.BytesIO(a), "a")
    hb = message.parse_header(io.BytesIO(b), "b")
    assert ha.message_id != hb.message_id and ha.commitment != hb.commitment
    assert a[ha.size :] != b[hb.size :]


def test_several_recipients_each_decrypt(tmp_path: Path) -> None:
    people = [make_keys(tmp_path / name, name) for name in ("ann", "bob", "cy")]
    recipients = [r for p in people for r in p.recipients()]
    ct = encrypt(b"shared model", recipients)
    assert len(message.parse_header(io.BytesIO(ct), "x").data_keys) == 6
    for p in people:
        assert stream.decrypt_bytes(ct, [p.identity()]) == b"shared model"
        assert stream.decrypt_bytes(ct, [p.aes_key()]) == b"shared model"


def test_frame_lengths_outside_the_range_are_refused(ks: KeySet) -> None:
    for bad in (message.MIN_FRAME - 1, message.MAX_FRAME + 1):
        with pytest.raises(ValueError, match="frame length"):
            encrypt(b"x", ks.recipients(), frame=bad)
    # a reader refuses them too: rewrite the frame-length field of a real header
    ct = bytearray(encrypt(b"x", ks.recipients()))
    header = message.parse_header(io.BytesIO(bytes(ct)), "x")
    offset = len(header.body) - message.COMMITMENT_LEN - 4
    struct.pack_into(">I", ct, offset, 4096)
    with pytest.raises(IntegrityError, match="frame length 4096"):
        stream.decrypt_bytes(bytes(ct), [ks.identity()])


@settings(max_examples=25, deadline=None)
@given(
    data=st.binary(max_size=3 * FRAME + 100),
    frame=st.sampled_from([message.MIN_FRAME, 100_000, message.MAX_FRAME]),
    reads=st.lists(st.integers(min_value=1, max_value=200_000), min_size=1, max_size=8),
)
def test_reader_gives_the_plaintext_in_any_read_sizes(
    data: bytes, frame: int, reads: list[int]
) -> None:
    key = AesKey(b"k" * 32, "k")
    ct = stream.encrypt_bytes(data, [key], frame_length=frame)
    reader = stream.DecryptingReader(io.BytesIO(ct), [key], "<ct>")
    got = bytearray()
    i = 0
    while chunk := reader.read(reads[i % len(reads)]):
        got += chunk
        i += 1
    assert bytes(got) == data
    reader.close()


def test_open_decrypted_streams_a_file_and_wipes_its_buffers(tmp_path: Path, ks: KeySet) -> None:
    data = plaintext(2 * FRAME + 5)
    path = tmp_path / "w.enc"
    path.write_bytes(encrypt(data, ks.recipients()))
    before = set(tmp_path.iterdir())
    with open_decrypted(path, [ks.identity()]) as reader:
        assert reader.read(10) == data[:10]
        assert reader.read() == data[10:]
        frames = reader.frames()
    assert set(tmp_path.iterdir()) == before  # nothing written beside it
    assert not any(frames._plain)  # best-effort wipe on close
    assert reader.closed


def test_reader_raises_at_the_end_of_a_truncated_file(tmp_path: Path, ks: KeySet) -> None:
    data = plaintext(2 * FRAME + 5)
    ct = encrypt(data, ks.recipients())
    cut = layout(ct).frames[-1][0]  # drop the final frame
    path = tmp_path / "cut.enc"
    path.write_bytes(ct[:cut])
    with open_decrypted(path, [ks.identity()]) as reader:
        # the two full frames authenticate and are released; the end is missing
        assert reader.read(FRAME) == data[:FRAME]
        assert reader.read(FRAME) == data[FRAME : 2 * FRAME]
        with pytest.raises(IntegrityError, match="truncated") as err:
            reader.read(FRAME)
    assert err.value.path == str(path)


def test_encrypt_file_writes_atomically(tmp_path: Path, ks: KeySet) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(plaintext(FRAME * 2))
    out = tmp_path / "out" / "model.enc"
    assert stream.encrypt_file(src, out, ks.recipients(), frame_length=FRAME) == FRAME * 2
    dec = tmp_path / "dec.bin"
    assert stream.decrypt_file(out, dec, [ks.identity()]) == FRAME * 2
    assert dec.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.enc"]
