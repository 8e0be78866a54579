"""Hostile and broken ciphertext: each case is refused naming the file, exit 1, nothing written.

The cases of issue 14: every byte of a small ciphertext flipped in turn,
truncation at every frame boundary, frames swapped, a header from another
file, extension; the key cases (wrong type, private for public and the
reverse) are in test_cli.py.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest

from ml_integrity.cli.main import main
from ml_integrity.crypto import message, stream
from ml_integrity.crypto.providers import KeyProvider
from ml_integrity.errors import IntegrityError
from tests.crypto.support import FRAME, KeySet, encrypt, layout, make_keys, plaintext


@pytest.fixture(scope="module")
def ks(tmp_path_factory: pytest.TempPathFactory) -> KeySet:
    return make_keys(tmp_path_factory.mktemp("keys"))


def refused(
    tmp_path: Path, ct: bytes, keys: list[KeyProvider], match: str | None = None
) -> IntegrityError:
    """Decrypting ``ct`` to a file fails with an IntegrityError naming it; nothing is left."""
    src = tmp_path / "in.enc"
    src.write_bytes(ct)
    out_dir = tmp_path / "out"
    out_dir.mkdir(exist_ok=True)
    with pytest.raises(IntegrityError, match=match) as err:
        stream.decrypt_file(src, out_dir / "plain.bin", keys)
    assert err.value.path == str(src)
    assert list(out_dir.iterdir()) == []  # no output, no temporary file
    return err.value


def test_every_byte_flipped_is_refused(tmp_path: Path, ks: KeySet) -> None:
    data = b"0123456789" * 10
    ct = encrypt(data, ks.recipients())
    reasons: set[str] = set()
    src = tmp_path / "flip.enc"
    for i in range(len(ct)):
        bad = bytearray(ct)
        bad[i] ^= 0xFF
        src.write_bytes(bytes(bad))
        for key in (ks.identity(), ks.aes_key()):
            with pytest.raises(IntegrityError) as err:
                stream.decrypt_file(src, tmp_path / "plain.bin", [key])
            assert err.value.path == str(src)
            reasons.add(err.value.message.split(":")[0].split(" (")[0])
    assert not (tmp_path / "plain.bin").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["flip.enc"]
    # the checks that fired: parsing, recipients, commitment, header tag, frames
    assert {"key commitment does not match the data key", "header authentication failed"} <= (
        reasons
    )
    assert "final frame failed authentication" in reasons
    assert "not a recipient" in reasons


def test_flips_in_a_multi_frame_message(tmp_path: Path, ks: KeySet) -> None:
    """Every framing byte (header, sequence numbers, IVs, lengths, tags), a stride of the rest."""
    ct = encrypt(plaintext(2 * FRAME + 50), [ks.recipients()[1]])
    lay = layout(ct)
    positions = set(range(lay.header_end))
    for start, end in lay.frames:
        positions |= set(range(start, start + 24)) | set(range(end - 16, end))
        positions |= set(range(start, end, 509))
    src = tmp_path / "flip.enc"
    for i in sorted(positions):
        bad = bytearray(ct)
        bad[i] ^= 0x01
        src.write_bytes(bytes(bad))
        with pytest.raises(IntegrityError):
            stream.decrypt_bytes(bytes(bad), [ks.aes_key()], str(src))


def test_truncation_at_every_frame_boundary(tmp_path: Path, ks: KeySet) -> None:
    ct = encrypt(plaintext(3 * FRAME + 10), ks.recipients())
    lay = layout(ct)
    cuts = [0, 1, lay.header_end - 1, lay.header_end]
    for start, end in lay.frames:
        cuts += [start + 1, start + 4, start + 20, end - 1]
        if end < len(ct):
            cuts.append(end)  # a clean cut after a whole regular frame
    for cut in cuts:
        err = refused(tmp_path, ct[:cut], [ks.identity()])
        assert "truncated" in err.message or "empty file" in err.message or "ends" in err.message


def test_truncation_to_a_frame_boundary_names_the_missing_final_frame(
    tmp_path: Path, ks: KeySet
) -> None:
    ct = encrypt(plaintext(2 * FRAME), ks.recipients())
    lay = layout(ct)
    refused(tmp_path, ct[: lay.frames[1][1]], [ks.identity()], "ends at frame 3 before its final")


def test_frames_swapped(tmp_path: Path, ks: KeySet) -> None:
    ct = encrypt(plaintext(3 * FRAME + 10), ks.recipients())
    (a0, a1), (b0, b1) = layout(ct).frames[:2]
    swapped = ct[:a0] + ct[b0:b1] + ct[a0:a1] + ct[b1:]
    refused(tmp_path, swapped, [ks.identity()], "frame 1 is out of order")
    # renumbered (sequence numbers and IVs rewritten to look in order): the tag still fails
    renumbered = bytearray(swapped)
    for n, start in ((1, a0), (2, a0 + (b1 - b0))):
        struct.pack_into(">I", renumbered, start, n)
        renumbered[start + 4 : start + 16] = message.frame_iv(n)
    refused(tmp_path, bytes(renumbered), [ks.identity()], "frame 1 failed authentication")


def test_a_frame_replayed_from_another_position(tmp_path: Path, ks: KeySet) -> None:
    ct = encrypt(plaintext(3 * FRAME + 10), ks.recipients())
    (a0, a1), (b0, b1) = layout(ct).frames[:2]
    duplicated = ct[:b0] + ct[a0:a1] + ct[b1:]
    refused(tmp_path, duplicated, [ks.identity()], "frame 2 is out of order")


def test_header_from_another_file(tmp_path: Path, ks: KeySet) -> None:
    one = encrypt(plaintext(FRAME + 10, seed=1), ks.recipients())
    two = encrypt(plaintext(FRAME + 10, seed=2), ks.recipients())
    h1, h2 = layout(one).header_end, layout(two).header_end
    refused(tmp_path, one[:h1] + two[h2:], [ks.identity()], "frame 1 failed authentication")
    # a frame of the other file, spliced in after a genuine first frame
    f1 = layout(one).frames[0][1]
    f2 = layout(two).frames[0][1]
    refused(tmp_path, one[:f1] + two[f2:], [ks.identity()], "final frame failed")


def test_data_keys_moved_between_headers_fail_the_commitment(tmp_path: Path, ks: KeySet) -> None:
    """Header A with the data keys of header B: the recipient unwraps B's key, A's commitment
    does not match it."""
    a = encrypt(b"a" * 100, ks.recipients())
    b = encrypt(b"b" * 100, ks.recipients())
    ha = message.parse_header(io.BytesIO(a), "a")
    hb = message.parse_header(io.BytesIO(b), "b")
    start = len(message.MAGIC) + message.MESSAGE_ID_LEN + 2 + 2
    keys_a = len(ha.body) - start - 5 - message.COMMITMENT_LEN
    keys_b = len(hb.body) - start - 5 - message.COMMITMENT_LEN
    mixed = a[:start] + b[start : start + keys_b] + a[start + keys_a :]
    refused(tmp_path, mixed, [ks.identity()], "key commitment does not match")


def test_extension_after_the_final_frame(tmp_path: Path, ks: KeySet) -> None:
    ct = encrypt(plaintext(FRAME + 10), ks.recipients())
    refused(tmp_path, ct + b"\0", [ks.identity()], "data follows the final frame")
    refused(tmp_path, ct + ct, [ks.identity()], "data follows the final frame")


def test_not_encrypted_and_other_suites(tmp_path: Path, ks: KeySet) -> None:
    refused(tmp_path, b"", [ks.identity()], "empty file")
    refused(tmp_path, b"PK\x03\x04 a zip", [ks.identity()], "not an ml-integrity encrypted file")
    ct = encrypt(b"x", ks.recipients())
    signed_suite = ct[:1] + struct.pack(">H", message.SIGNED_SUITE_ID) + ct[3:]
    refused(tmp_path, signed_suite, [ks.identity()], "suite 0x0578 signs the ciphertext")
    v1 = b"\x01" + ct[1:]
    refused(tmp_path, v1, [ks.identity()], "message version 0x01")


def test_too_many_data_keys(tmp_path: Path, ks: KeySet) -> None:
    ct = bytearray(encrypt(b"x", ks.recipients()))
    offset = len(message.MAGIC) + message.MESSAGE_ID_LEN + 2
    struct.pack_into(">H", ct, offset, 0)
    refused(tmp_path, bytes(ct), [ks.identity()], "lists 0 encrypted data keys")
    struct.pack_into(">H", ct, offset, 60000)
    refused(tmp_path, bytes(ct), [ks.identity()], "lists 60000 encrypted data keys")


def test_cli_exit_1_names_the_file_and_leaves_no_folder(
    tmp_path: Path, ks: KeySet, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "a.bin").write_bytes(plaintext(FRAME + 3))
    (src / "sub" / "b.bin").write_bytes(plaintext(500, seed=3))
    enc = tmp_path / "model.enc"
    assert main(["encrypt", str(src), "--recipient", str(ks.public), "-o", str(enc)]) == 0
    target = enc / "sub" / "b.bin"
    bad = bytearray(target.read_bytes())
    bad[-1] ^= 1
    target.write_bytes(bytes(bad))
    capsys.readouterr()
    out = tmp_path / "plain"
    assert main(["decrypt", str(enc), "--key", str(ks.private), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{target}: final frame failed authentication" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "model.enc"]


def test_a_huge_header_is_refused_before_it_is_read(tmp_path: Path, ks: KeySet) -> None:
    """256 data keys of 3 x 65535 bytes would be 48 MiB of header: refused at 1 MiB."""
    head = message.MAGIC + bytes(32) + struct.pack(">HH", 0, 256)
    key = struct.pack(">H", 65535) + b"x" * 65535
    refused(tmp_path, head + key * 3 * 8, [ks.identity()], "header is longer than 1048576")
