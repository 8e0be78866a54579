"""Streaming encryption and decryption, frame by frame, in bounded memory.

- :func:`encrypt_stream` writes a message: header, then one frame per
  ``frame_length`` bytes of plaintext, then the final (shorter, possibly
  empty) frame.
- :func:`open_decrypted` returns a :class:`DecryptingReader`: a read-only
  binary stream that authenticates each frame before it releases a byte of
  it, and raises :class:`~ml_integrity.errors.IntegrityError` on a tampered,
  reordered, truncated or extended message. The plaintext lives only in the
  reader's one-frame buffer, never on disk. A truncation shows only at the
  end, so a consumer must read to the end (``read()`` returning ``b""``)
  before it trusts what it read.
- :func:`encrypt_file` and :func:`decrypt_file` write through a temporary
  file in the destination's folder, renamed over the destination only after
  the last frame verified; on any failure (Ctrl-C included) the temporary
  file is removed, so no partial plaintext is left behind.

Zeroing: :meth:`DecryptingReader.close` overwrites its buffers. Python copies
bytes in places we do not control (the caller's own buffers, ``bytes``
objects returned by ``read``), so wiping is best effort, not a promise.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from ml_integrity.crypto import message as msg
from ml_integrity.crypto.providers import KeyProvider
from ml_integrity.errors import IntegrityError, OperationalError, UsageError

_REGULAR_HEAD = 4 + msg.IV_LEN
"""Sequence number and IV."""
_FINAL_HEAD = 4 + 4 + msg.IV_LEN + 4
"""Marker, sequence number, IV and content length."""


def _readinto_exact(stream: BinaryIO, view: memoryview) -> int:
    """Fill ``view``; fewer bytes only at the end of the stream."""
    done = 0
    size = len(view)
    while done < size:
        n = stream.readinto(view[done:])  # type: ignore[attr-defined]
        if not n:
            break
        done += n
    return done


def encrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    recipients: Sequence[KeyProvider],
    *,
    frame_length: int = msg.DEFAULT_FRAME,
    header_size: int | None = None,
) -> int:
    """Encrypt ``src`` to ``dst`` for ``recipients``; return the plaintext length.

    With ``header_size`` the header is padded to exactly that many bytes, so
    that the ciphertext's size is a function of the plaintext's alone
    (:func:`~.message.ciphertext_size`; what the Git LFS transfer needs).
    """
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not recipients:
        raise UsageError("no recipient given", hint="pass --recipient PUB")
    data_key = os.urandom(msg.KEY_LEN)
    message_id = os.urandom(msg.MESSAGE_ID_LEN)
    context = b""
    wrapped = [r.wrap(data_key, context) for r in recipients]
    if header_size is not None:
        # the data keys are bound to the context: measure them, then wrap for the real one
        context = msg.padding_context(wrapped, header_size)
        wrapped = [r.wrap(data_key, context) for r in recipients]
    header, key = msg.build_header(data_key, message_id, wrapped, frame_length, context)
    if header_size is not None and len(header) != header_size:
        raise ValueError("a key provider wrapped the data key to two different sizes")
    dst.write(header)
    aead = AESGCM(key)
    plain = memoryview(bytearray(frame_length))
    record = memoryview(bytearray(16 + frame_length + msg.TAG_LEN))
    total = 0
    sequence = 1
    while True:
        n = _readinto_exact(src, plain)
        total += n
        if n < frame_length:
            break
        if sequence > msg.MAX_FRAMES:
            raise UsageError("file too large for one message (2^32-2 frames)")
        iv = msg.frame_iv(sequence)
        record[:4] = sequence.to_bytes(4, "big")
        record[4:16] = iv
        aad = msg.frame_aad(message_id, sequence, n, final=False)
        aead.encrypt_into(iv, plain, aad, record[16:])
        dst.write(record)
        sequence += 1
    iv = msg.frame_iv(sequence)
    head = struct.pack(">II12sI", msg.FINAL_MARKER, sequence, iv, n)
    sealed = aead.encrypt(iv, plain[:n], msg.frame_aad(message_id, sequence, n, final=True))
    dst.write(head + sealed)
    return total


class _Frames:
    """Decrypts the frames after an authenticated header, one at a time."""

    def __init__(self, stream: BinaryIO, header: msg.Header, key: bytes, source: str) -> None:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._invalid_tag = InvalidTag
        self._stream = stream
        self._header = header
        self._aead = AESGCM(key)
        self._source = source
        self._record = bytearray(_FINAL_HEAD + header.frame_length + msg.TAG_LEN)
        self._plain = bytearray(header.frame_length)
        self.sequence = 1
        self.done = False
        self.verified = False
        """True once the final frame authenticated and nothing followed it."""

    def _fail(self, message: str, hint: str) -> IntegrityError:
        self.done = True
        return IntegrityError(message, path=self._source, hint=hint)

    def _truncated(self) -> IntegrityError:
        return self._fail(
            f"encrypted file is truncated: it ends at frame {self.sequence} before its final frame",
            "the download or copy was cut short; fetch the file again",
        )

    def next_frame(self) -> memoryview | None:
        """The next frame's plaintext (valid until the next call), None after the last.

        One read per frame: a regular frame's record (sequence number, IV,
        ciphertext, tag) has a fixed size; a final frame's record is at most 8
        bytes longer, so what was read tells which one it is.
        """
        if self.done:
            return None
        record = memoryview(self._record)
        regular = _REGULAR_HEAD + self._header.frame_length + msg.TAG_LEN
        n = _readinto_exact(self._stream, record[:regular])
        if n < 4:
            raise self._truncated()
        (number,) = struct.unpack_from(">I", record)
        final = number == msg.FINAL_MARKER
        if final:
            if n < _FINAL_HEAD:
                raise self._truncated()
            number, iv, length = struct.unpack_from(">I12sI", record, 4)
            if length > self._header.frame_length:
                raise self._fail(
                    f"final frame claims {length} bytes, more than the frame length",
                    "the file was altered",
                )
            need = _FINAL_HEAD + length + msg.TAG_LEN
            if n == regular and need > n:  # the longest final frames: read the rest
                n += _readinto_exact(self._stream, record[n:need])
            if n < need:
                raise self._truncated()
            if n > need or self._stream.read(1):
                raise self._fail(
                    "data follows the final frame",
                    "bytes were appended to the encrypted file",
                )
            body = record[_FINAL_HEAD:need]
        else:
            if n < regular:
                raise self._truncated()
            length = self._header.frame_length
            iv = bytes(record[4:_REGULAR_HEAD])
            body = record[_REGULAR_HEAD:regular]
        if number != self.sequence:
            raise self._fail(
                f"frame {self.sequence} is out of order (it carries sequence number {number})",
                "frames were reordered, dropped or copied from another file",
            )
        if iv != msg.frame_iv(self.sequence):
            raise self._fail(f"frame {self.sequence} has a wrong IV", "the file was altered")
        aad = msg.frame_aad(self._header.message_id, self.sequence, length, final=final)
        out = memoryview(self._plain)[:length]
        try:
            self._aead.decrypt_into(iv, body, aad, out)
        except self._invalid_tag:
            what = "final frame" if final else f"frame {self.sequence}"
            raise self._fail(
                f"{what} failed authentication",
                "the ciphertext was altered, reordered or taken from another file",
            ) from None
        if final:
            self.done = self.verified = True
        else:
            self.sequence += 1
        return out

    def wipe(self) -> None:
        for buf in (self._plain, self._record):
            buf[:] = bytes(len(buf))


def read_header(
    stream: BinaryIO, keys: Sequence[KeyProvider], source: str
) -> tuple[msg.Header, bytes]:
    """Parse the header, unwrap the data key with one of ``keys``, authenticate it."""
    header = msg.parse_header(stream, source)
    for edk in header.data_keys:
        for key in keys:
            data_key = key.unwrap(edk, header.context)
            if data_key is not None and len(data_key) == msg.KEY_LEN:
                return header, msg.authenticate_header(header, data_key, source)
    listed = ", ".join(sorted({edk.describe() for edk in header.data_keys}))
    tried = ", ".join(k.describe() for k in keys)
    raise IntegrityError(
        f"not a recipient: encrypted for {listed}; tried {tried}",
        path=source,
        hint="ask whoever encrypted it to add your public key "
        "(ml-integrity encrypt --recipient YOUR-KEY.pub), or pass the key it was encrypted for",
    )


class DecryptingReader(io.RawIOBase):
    """A read-only stream of the plaintext; every frame is authenticated before use."""

    def __init__(
        self,
        stream: BinaryIO,
        keys: Sequence[KeyProvider],
        source: str,
        *,
        close_stream: bool = True,
    ) -> None:
        super().__init__()
        self._stream = stream
        self._close_stream = close_stream
        self.source = source
        self.header, key = read_header(stream, keys, source)
        self._frames = _Frames(stream, self.header, key, source)
        self._current = memoryview(b"")
        self.position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        out = memoryview(buffer).cast("B")
        while not self._current:
            frame = self._frames.next_frame()
            if frame is None:
                return 0
            self._current = frame
        n = min(len(out), len(self._current))
        out[:n] = self._current[:n]
        self._current = self._current[n:]
        self.position += n
        return n

    def finish(self) -> None:
        """Raise unless the whole message was read and its final frame verified."""
        if not self._frames.verified or self._current:
            raise IntegrityError(
                "encrypted file was not read to its final frame",
                path=self.source,
                hint="read until read() returns b'' before trusting the content",
            )

    def frames(self) -> _Frames:
        """The frame decryptor (for consumers that take whole frames, without a copy)."""
        return self._frames

    def close(self) -> None:
        if not self.closed:
            self._current = memoryview(b"")
            self._frames.wipe()
            if self._close_stream:
                self._stream.close()
        super().close()


def _open_source(path: Path) -> BinaryIO:
    try:
        return open(path, "rb", buffering=0)
    except FileNotFoundError:
        raise UsageError("no such file", path=path) from None
    except IsADirectoryError:
        raise UsageError("is a directory, expected a file", path=path) from None
    except OSError as exc:
        raise OperationalError(f"cannot read: {exc.strerror}", path=path) from None


def open_decrypted(path: str | Path, key: object) -> DecryptingReader:
    """Open an encrypted file for reading its plaintext (the loader's API).

    ``key`` is a decryption key in any form
    :func:`ml_integrity.crypto.keys.as_decryption_keys` accepts: a key file
    path, its bytes, 32 raw AES-256 key bytes, a ``KeyProvider``, or a list of
    them. Raises :class:`IntegrityError` when no key is a recipient or the
    header is wrong (at once), and when a frame fails (while reading). Read to
    the end, then call :meth:`DecryptingReader.finish`, before trusting the
    content: truncation shows only at the end.
    """
    from ml_integrity.crypto.keys import as_decryption_keys

    keys = as_decryption_keys(key)
    path = Path(path)
    stream = _open_source(path)
    try:
        return DecryptingReader(stream, keys, str(path))
    except BaseException:
        stream.close()
        raise


def is_encrypted(path: Path) -> bool:
    """Whether ``path`` starts like a message this module writes (a hint, not a proof)."""
    try:
        with path.open("rb") as f:
            return f.read(len(msg.MAGIC)) == msg.MAGIC
    except OSError:
        return False


@contextlib.contextmanager
def _atomic_output(dst: Path, *, force: bool, private: bool):  # type: ignore[no-untyped-def]
    if (dst.exists() or dst.is_symlink()) and not force:
        raise UsageError("output already exists", path=dst, hint="pass --force to replace it")
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".partial", dir=dst.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        if not private:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def encrypt_file(
    src: Path,
    dst: Path,
    recipients: Sequence[KeyProvider],
    *,
    frame_length: int = msg.DEFAULT_FRAME,
    force: bool = False,
) -> int:
    """Encrypt the file ``src`` into ``dst`` (atomically); return the plaintext size."""
    with _open_source(src) as source, _atomic_output(dst, force=force, private=False) as out:
        try:
            return encrypt_stream(source, out, recipients, frame_length=frame_length)
        except OSError as exc:
            raise OperationalError(f"cannot encrypt: {exc.strerror}", path=src) from None


def decrypt_to(src: Path, out: BinaryIO, keys: Sequence[KeyProvider]) -> int:
    """Decrypt ``src`` into the open stream ``out``; return the plaintext size."""
    with open_decrypted(src, keys) as reader:
        frames = reader.frames()
        total = 0
        while (frame := frames.next_frame()) is not None:
            out.write(frame)
            total += len(frame)
        return total


def decrypt_file(src: Path, dst: Path, keys: Sequence[KeyProvider], *, force: bool = False) -> int:
    """Decrypt ``src`` into ``dst``, renamed into place only after the final frame verified."""
    with _atomic_output(dst, force=force, private=False) as out:
        try:
            return decrypt_to(src, out, keys)
        except OSError as exc:
            raise OperationalError(f"cannot decrypt: {exc.strerror}", path=src) from None


def encrypt_bytes(data: bytes, recipients: Sequence[KeyProvider], **kw: int) -> bytes:
    out = io.BytesIO()
    encrypt_stream(io.BytesIO(data), out, recipients, **kw)
    return out.getvalue()


def decrypt_bytes(data: bytes, keys: Sequence[KeyProvider], source: str = "<bytes>") -> bytes:
    with DecryptingReader(io.BytesIO(data), keys, source) as reader:
        return reader.read()
