"""Manifests of millions of files in bounded memory: walk, hash and write as a stream.

:func:`walk` yields every file under a root in the manifest's canonical order
(:func:`~ml_integrity.core.manifest.path_sort_key`: by path component) without
ever holding the whole tree: a depth-first walk whose children are visited in
name order produces exactly that order, so only one directory listing per
level is in memory. A directory with more than :data:`SPILL_NAMES` entries is
sorted on disk instead (sorted runs of names, then a k-way merge), so one huge
flat directory does not grow memory either. The walk applies the rules of
:func:`~ml_integrity.core.manifest.list_files` (ignores, NFC names, symbolic
links refused or kept inside the root, special files refused).

An :class:`Engine` turns that stream of files into a stream of
:class:`FileRecord` (path, size, sha256, format), in the same order; the
engines live in :mod:`ml_integrity.engines` and are injected by the entry
point (core never imports them). :func:`write_canonical` writes the records
as the exact bytes :meth:`Manifest.to_json` gives for the same entries, one
entry at a time. :func:`build_to_file` is the three together.

This is a core module: it imports only ``core`` and ``errors``.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import os
import stat
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, NamedTuple, Protocol

from ml_integrity.core import sniff
from ml_integrity.core.manifest import (
    DEFAULT_IGNORES,
    FORMAT_VERSION,
    Entry,
    Manifest,
    normalize_path,
)
from ml_integrity.errors import ManifestError, OperationalError, UsageError

__all__ = [
    "SPILL_NAMES",
    "Engine",
    "FileRecord",
    "TreeEngine",
    "WalkedFile",
    "build_to_file",
    "build_to_path",
    "records_to_manifest",
    "sniff_head",
    "walk",
    "write_canonical",
]

SPILL_NAMES = 100_000
"""A directory listing longer than this is sorted on disk (runs of this many
names, merged), so that memory does not grow with the size of one directory."""


class WalkedFile(NamedTuple):
    """A regular file found by :func:`walk`: its manifest path and where it is."""

    rel: str
    full: str


class FileRecord(NamedTuple):
    """One manifest entry as an engine returns it.

    ``sha256`` is the digest of the algorithm the engine was asked for: SHA-256
    (the manifest's) unless ``hash_stream`` got another ``algorithm``; only
    SHA-256 records are ever written as a manifest.
    """

    path: str
    size: int
    sha256: str
    format: str | None = None


class Engine(Protocol):
    """Hashes a stream of files; the threaded engine is the default.

    ``files`` arrive in canonical order and the records must come back in the
    same order, one per file, with nothing held beyond a bounded window.
    ``algorithm`` (an OMS name: ``sha256``, ``blake2b``, ``blake3``) is what
    the records' digests are.
    Failures raise :class:`~ml_integrity.errors.OperationalError` naming the
    file (missing, unreadable, not regular, changed while it was hashed);
    then no record after the failing file is yielded.
    """

    def hash_stream(
        self,
        root: Path,
        files: Iterable[WalkedFile],
        *,
        follow_symlinks: bool,
        algorithm: str = "sha256",
    ) -> Iterator[FileRecord]: ...


class TreeEngine(Engine, Protocol):
    """An engine that can also list, hash and format whole directories itself.

    :func:`build_to_file` uses ``tree_chunks`` when the walk follows no
    symbolic links: it yields ``(text, files, bytes)`` chunks of formatted
    entries (:func:`entry_text`) in canonical order, with the walk's rules.
    """

    def tree_chunks(self, root: Path, ignore: Sequence[str]) -> Iterator[tuple[str, int, int]]: ...


# --- the walk ---------------------------------------------------------------------


# kinds of directory entries, from d_type (no stat system call on most file systems)
_DIR, _FILE, _LINK, _OTHER = "d", "f", "l", "o"


def _kind(item: os.DirEntry[str]) -> str:
    try:
        if item.is_file(follow_symlinks=False):  # the common case first: one call
            return _FILE
        if item.is_dir(follow_symlinks=False):
            return _DIR
        if item.is_symlink():
            return _LINK
    except OSError:
        pass
    return _OTHER


_Name = tuple[str, str, str]  # normalised name, raw name, kind


def _sorted_names(directory: str) -> Iterator[_Name]:
    """A directory's entries sorted by normalised name, in bounded memory."""
    runs: list[tempfile._TemporaryFileWrapper[str]] = []
    chunk: list[_Name] = []
    nfc = unicodedata.normalize
    try:
        with os.scandir(directory) as it:
            for item in it:
                name = item.name
                chunk.append((name if name.isascii() else nfc("NFC", name), name, _kind(item)))
                if len(chunk) >= SPILL_NAMES:
                    runs.append(_spill(chunk))
                    chunk = []
    except PermissionError as exc:
        raise OperationalError(
            f"cannot list directory: {exc.strerror}",
            path=directory,
            hint="check the directory's permissions",
        ) from None
    except OSError as exc:
        raise OperationalError(f"cannot list directory: {exc.strerror}", path=directory) from None
    chunk.sort()
    if not runs:
        yield from chunk
        return
    try:
        runs.append(_spill(chunk))
        yield from heapq.merge(*(_read_run(r) for r in runs))
    finally:
        for run in runs:
            run.close()


def _spill(chunk: list[_Name]) -> tempfile._TemporaryFileWrapper[str]:
    chunk.sort()
    run = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed by _sorted_names
        "w+", encoding="utf-8", prefix="ml-integrity-run-"
    )
    # one JSON line per name (ASCII escapes): any character, a newline or a surrogate, survives
    run.writelines(f"{json.dumps(item)}\n" for item in chunk)
    run.seek(0)
    return run


def _read_run(run: tempfile._TemporaryFileWrapper[str]) -> Iterator[_Name]:
    for line in run:
        n, r, k = json.loads(line)
        yield n, r, k


def _plain(name: str, top: bool) -> bool:
    """True when ``name`` needs none of :func:`normalize_path`'s refusals or changes."""
    return (
        name.isascii()
        and "\\" not in name
        and name != ".."
        and not (top and len(name) >= 2 and name[1] == ":" and name[0].isalpha())
    )


def ignored_set(ignore: Iterable[str]) -> set[str]:
    """The paths a walk leaves out: :data:`DEFAULT_IGNORES` and the caller's."""
    ignored = {normalize_path(p) for p in ignore}
    ignored.update(DEFAULT_IGNORES)
    return ignored


def list_entries(
    directory: str,
    prefix: str,
    ignored: set[str],
    *,
    allow_symlinks: bool,
    root_real: str,
) -> Iterator[tuple[bool, str, str]]:
    """One directory's entries in canonical order, as ``(is_dir, rel, full)``
    (``rel`` of a directory ends in ``/``); raises the walk's refusals."""
    last = ""
    for name, raw, kind in _sorted_names(directory):
        full = f"{directory}/{raw}"
        rel = prefix + name
        if rel in ignored or (raw != name and prefix + raw in ignored):
            continue
        if last == name:
            raise ManifestError(
                f"two names normalise to the same path: {rel!r}",
                path=full,
                hint="rename one of them; manifest paths are NFC-normalised",
            )
        last = name
        if not (prefix and name.isascii() and "\\" not in name) and not _plain(name, not prefix):
            try:
                rel = normalize_path(rel, source=full)
            except ManifestError as exc:
                raise ManifestError(exc.message, path=full, hint=exc.hint) from None
        if kind == _FILE:
            yield False, rel, full
            continue
        if kind == _DIR:
            yield True, rel + "/", full
            continue
        try:
            mode = _follow(full, root_real) if allow_symlinks else os.lstat(full).st_mode
        except OSError as exc:
            raise OperationalError(f"cannot stat: {exc.strerror}", path=full) from None
        if stat.S_ISLNK(mode):
            raise ManifestError(
                "symbolic link in the model",
                path=full,
                hint="replace it with the file, or pass --allow-symlinks to follow it",
            )
        if stat.S_ISDIR(mode):
            yield True, rel + "/", full
        elif stat.S_ISREG(mode):
            yield False, rel, full
        else:
            raise ManifestError(
                "not a regular file (socket, FIFO or device)",
                path=full,
                hint="remove it from the model, or pass --ignore-path",
            )


def walk(
    root: Path,
    *,
    allow_symlinks: bool = False,
    ignore: Iterable[str] = (),
    start: tuple[str, str] | None = None,
) -> Iterator[WalkedFile]:
    """Every regular file under ``root``, in canonical manifest order, as a stream.

    The same files and refusals as :func:`~ml_integrity.core.manifest.list_files`;
    two names of one directory that normalise alike are refused here (the
    in-memory manifest refuses them as duplicate paths). ``start`` is
    ``(directory, prefix)``: walk only that subtree of ``root`` (an engine
    that lists directories itself hands such a subtree back).
    """
    root_real = os.path.realpath(root)
    ignored = ignored_set(ignore)
    visited: set[tuple[int, int]] = set()
    # one open listing per level
    stack: list[Iterator[tuple[bool, str, str]]] = []

    def enter(directory: str, prefix: str) -> None:
        try:
            st = os.stat(directory)
        except OSError as exc:
            raise OperationalError(f"cannot stat: {exc.strerror}", path=directory) from None
        key = (st.st_dev, st.st_ino)
        if key in visited:
            raise ManifestError(
                "symbolic link cycle", path=directory, hint="remove the looping link"
            )
        visited.add(key)
        stack.append(
            list_entries(
                directory, prefix, ignored, allow_symlinks=allow_symlinks, root_real=root_real
            )
        )

    enter(*(start or (os.fspath(root), "")))
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
            continue
        is_dir, rel, full = item
        if is_dir:
            enter(full, rel)
        else:
            yield WalkedFile(rel, full)


def _follow(full: str, root_real: str) -> int:
    """The mode of what ``full`` is, following a link only when it stays inside the root."""
    st = os.lstat(full)
    if not stat.S_ISLNK(st.st_mode):
        return st.st_mode
    target = os.path.realpath(full)
    if not (target == root_real or target.startswith(root_real.rstrip("/") + "/")):
        raise ManifestError(
            f"symbolic link points outside the root (to {target})",
            path=full,
            hint="copy the target into the model instead",
        )
    if not os.path.exists(target):
        raise ManifestError("broken symbolic link", path=full)
    return os.stat(full).st_mode


# --- the content format, from the first bytes -------------------------------------


def sniff_head(head: bytes) -> str | None:
    """The manifest's ``format`` label for a file starting with ``head`` (its first
    512 bytes), as :func:`~ml_integrity.core.manifest.sniff_file` gives it."""
    if not head:
        return None
    fmt = sniff.sniff(head[:512])
    if fmt is sniff.Format.DATA:
        return None
    if fmt is sniff.Format.PICKLE and sniff.is_weak_pickle_start(head[:512]):
        return None
    return str(fmt.value)


# --- writing ----------------------------------------------------------------------


def _json_string(value: str) -> str:
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'  # what json.dumps gives, without its cost
    return json.dumps(value, ensure_ascii=False)


def write_canonical(
    records: Iterable[FileRecord],
    out: BinaryIO,
    *,
    repository: str | None = None,
    version: int | None = None,
) -> tuple[int, int]:
    """Write ``records`` (canonical order) as :meth:`Manifest.to_json` would.

    Returns ``(files, bytes)``. Records out of order or repeated are refused:
    the output would not be canonical.
    """
    write = out.write
    write(b'{\n  "entries": [')
    count = 0
    total = 0
    last: list[str] = []
    pending: list[str] = []
    js = _json_string
    for r in records:
        key = r.path.split("/")  # ordered as path_sort_key orders normalised paths
        if key <= last and count:
            raise ManifestError(
                f"entries out of order or repeated at {r.path!r}",
                hint="this is a bug in the hashing engine; please report it",
            )
        last = key
        fmt = f'      "format": {js(r.format)},\n' if r.format else ""
        pending.append(
            f'    {{\n{fmt}      "path": {js(r.path)},\n      "sha256": "{r.sha256}",\n'
            f'      "size": {r.size}\n    }}'
        )
        count += 1
        total += r.size
        if len(pending) >= 1024:
            _flush(write, pending, first=count == len(pending))
            pending = []
    if pending:
        _flush(write, pending, first=count == len(pending))
    tail = "\n  ]" if count else "]"
    extra = ""
    if repository is not None:
        extra += f",\n  {_json_string('repository')}: {_json_string(repository)}"
    if version is not None:
        extra += f',\n  "version": {int(version)}'
    text = f'{tail},\n  "format_version": {FORMAT_VERSION}{extra}\n}}\n'
    write(unicodedata.normalize("NFC", text).encode("utf-8"))
    return count, total


def entry_text(path: str, size: int, sha256: str, fmt: str | None) -> str:
    """One entry of the ``entries`` list, indented as :meth:`Manifest.to_json` has it."""
    js = _json_string
    f = f'      "format": {js(fmt)},\n' if fmt else ""
    return (
        f'    {{\n{f}      "path": {js(path)},\n      "sha256": "{sha256}",\n'
        f'      "size": {size}\n    }}'
    )


def write_texts(chunks: Iterable[tuple[str, int, int]], out: BinaryIO) -> tuple[int, int]:
    """Write a manifest from chunks ``(text, files, bytes)``: each text is one or more
    :func:`entry_text` joined by ``",\\n"``, in canonical order (the engine that made
    them walked in that order). Returns ``(files, bytes)``."""
    write = out.write
    write(b'{\n  "entries": [')
    count = 0
    total = 0
    nfc = unicodedata.normalize
    for text, files, size in chunks:
        if not files:
            continue
        write(nfc("NFC", ("\n" if not count else ",\n") + text).encode("utf-8"))
        count += files
        total += size
    tail = "\n  ]" if count else "]"
    write(f'{tail},\n  "format_version": {FORMAT_VERSION}\n}}\n'.encode())
    return count, total


def _flush(write: Callable[[bytes], object], pending: list[str], *, first: bool) -> None:
    text = ",\n".join(pending)
    text = ("\n" if first else ",\n") + text
    write(unicodedata.normalize("NFC", text).encode("utf-8"))


def records_to_manifest(records: Iterable[FileRecord]) -> Manifest:
    """The in-memory manifest of ``records`` (for signing below the shard threshold)."""
    return Manifest(
        tuple(Entry(path=r.path, size=r.size, sha256=r.sha256, format=r.format) for r in records)
    )


def build_to_file(
    root: Path,
    engine: Engine,
    out: BinaryIO,
    *,
    allow_symlinks: bool = False,
    ignore: Sequence[str] = (),
) -> tuple[int, int]:
    """Walk ``root``, hash with ``engine`` and write the canonical manifest to ``out``.

    Returns ``(files, bytes)``. An empty folder is refused, as
    :func:`~ml_integrity.core.manifest.build_from_directory` refuses it; the
    caller writes ``out`` to a temporary file and renames it only on success,
    so a failure never leaves a partial manifest.
    """
    if not root.is_dir():
        raise UsageError("not a directory", path=root)
    tree = getattr(engine, "tree_chunks", None)
    if tree is not None and not allow_symlinks:
        # an engine that lists and formats whole directories itself (TreeEngine)
        count, total = write_texts(tree(root, ignore), out)
    else:
        files = walk(root, allow_symlinks=allow_symlinks, ignore=ignore)
        records = engine.hash_stream(root, files, follow_symlinks=allow_symlinks)
        count, total = write_canonical(records, out)
    if count == 0:
        raise UsageError(
            "the folder holds no files to sign",
            path=root,
            hint="point at the model folder or file itself; empty models are refused (OMS v1.0)",
        )
    return count, total


def build_to_path(
    root: Path,
    engine: Engine,
    path: Path,
    *,
    allow_symlinks: bool = False,
    ignore: Sequence[str] = (),
) -> tuple[int, int]:
    """:func:`build_to_file` into ``path``, atomically: a temporary file in the same
    folder is renamed over ``path`` only when the whole manifest was written, so
    an error (a worker lost, a file changed, Ctrl-C) never leaves a partial one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.fchmod(fd, 0o666 & ~mask)
        with os.fdopen(fd, "wb", buffering=1 << 20) as out:
            result = build_to_file(root, engine, out, allow_symlinks=allow_symlinks, ignore=ignore)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return result
