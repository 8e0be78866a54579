"""Where verification reads content: the files as they are, or through a reader.

By default :func:`ml_integrity.core.verifying.check_content` hashes the files
on disk (with the stat cache). A caller whose files are stored in another form
(encrypted at rest: :mod:`ml_integrity.crypto.content`) installs a
:class:`ContentReader` for the duration of one verification with
:func:`reading_through`; the digest check then asks the reader for the SHA-256
of each file's content (no stat cache: its keys describe the stored form) and
reads bundles through it. The reader is held in a :class:`~contextvars.ContextVar`,
so it applies to the installing thread (or task) only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Protocol

__all__ = ["ContentReader", "current", "reading_through"]


class ContentReader(Protocol):
    """Gives the content that was signed for files stored in another form."""

    def sha256_files(
        self,
        root: Path,
        paths: Sequence[str],
        *,
        workers: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, str]:
        """Hex SHA-256 of the content of each relative path under ``root``.

        Raises an :class:`~ml_integrity.errors.Error` naming the file when the
        stored form cannot be read back (tampered, wrong key).
        """
        ...

    def read_bytes(self, path: Path) -> bytes:
        """The whole content of a small file (a bundle), as :meth:`Path.read_bytes`."""
        ...


_current: ContextVar[ContentReader | None] = ContextVar("ml_integrity_content", default=None)


def current() -> ContentReader | None:
    """The reader installed by :func:`reading_through`, or None (read files as they are)."""
    return _current.get()


@contextlib.contextmanager
def reading_through(reader: ContentReader) -> Iterator[ContentReader]:
    """Verify through ``reader`` inside the ``with`` block."""
    token = _current.set(reader)
    try:
        yield reader
    finally:
        _current.reset(token)
