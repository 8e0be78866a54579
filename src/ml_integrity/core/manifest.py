"""What a model, dataset or repository contains: the manifest.

A :class:`Manifest` lists every artifact with its path, size and SHA-256
digest (for Git LFS files the digest is the pointer's oid, so nothing is
re-hashed), an optional content format and optional annotations (kind,
source, license, trained-on). It serialises to canonical JSON
(:meth:`Manifest.to_json`): keys sorted, two-space indent, UTF-8, NFC
strings, entries sorted by path, one trailing newline; the same content
always gives the same bytes.

Paths are POSIX, relative and NFC-normalised. A path that is absolute,
contains ``..``, a backslash or a NUL, or is not valid UTF-8 is refused
(:func:`normalize_path`); the directory walk (:func:`list_files`) refuses
symbolic links unless they are explicitly allowed, and never follows one
out of the root. ``.git`` is never part of a manifest.

Example::

    from pathlib import Path
    from ml_integrity.core import manifest

    m = manifest.build_from_directory(Path("model"))
    Path("model.manifest.json").write_bytes(m.to_json())
"""

from __future__ import annotations

import json
import os
import re
import stat
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ml_integrity.errors import ManifestDiff, ManifestError, OperationalError, UsageError

__all__ = [
    "DEFAULT_IGNORES",
    "FORMAT_VERSION",
    "Entry",
    "Manifest",
    "build_from_directory",
    "list_files",
    "list_files_on_disk",
    "loads_limited",
    "normalize_path",
    "path_sort_key",
]

FORMAT_VERSION = 1
"""Version of the manifest document format (``format_version`` in the JSON)."""

DEFAULT_IGNORES: tuple[str, ...] = (".git", ".gitattributes", ".github", ".gitignore")
"""Top-level names never part of a model (the OMS defaults, as model_signing has them)."""

_SHA256_HEX = frozenset("0123456789abcdef")


MAX_MANIFEST_SIZE = 512 << 20
"""A manifest document larger than this is refused (about 2 million entries)."""


def loads_limited(data: bytes, *, max_size: int) -> Any:
    """``json.loads`` of untrusted bytes with a size limit and a nesting limit.

    Raises ValueError saying which limit (or what JSON error) refused the
    document. Nesting is bounded by the parser itself: CPython's JSON decoder
    counts its depth against the interpreter's recursion limit and stops with
    RecursionError (a file nested 200,000 arrays deep is refused at once, never
    a crash); the callers' schemas allow no nesting beyond a few levels anyway.
    """
    if len(data) > max_size:
        raise ValueError(f"{len(data):,} bytes is over the limit of {max_size:,}")
    try:
        return json.loads(data.decode("utf-8"))
    except RecursionError:
        raise ValueError("nested deeper than the JSON parser allows") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(str(exc)) from None


_COMPONENT = r"(?!\.\.?(?:/|$))[^/\\\x00]+"
_CLEAN_PATH = re.compile(rf"(?![A-Za-z]:){_COMPONENT}(?:/{_COMPONENT})*")
"""A relative path with no empty, ``.`` or ``..`` component, no backslash, NUL or drive
prefix: :func:`normalize_path` returns it unchanged."""


def normalize_path(raw: str, *, source: str | None = None) -> str:
    """Return ``raw`` as a clean relative POSIX path in NFC, or raise ManifestError.

    ``./`` components, duplicate separators and a trailing ``/`` are removed.
    An empty path, an absolute path, ``..``, a backslash, a NUL, a Windows
    drive prefix or a name that is not valid UTF-8 is refused.
    """
    if isinstance(raw, str) and raw.isascii() and _CLEAN_PATH.fullmatch(raw):
        return raw  # already clean (the usual case: thousands per manifest); NFC of ASCII
    where = source
    if not isinstance(raw, str) or not raw:
        raise ManifestError("empty path in manifest", path=where)
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise ManifestError(
            f"path is not valid UTF-8: {raw!r}",
            path=where,
            hint="rename the file to a UTF-8 name",
        ) from None
    if "\x00" in raw:
        raise ManifestError(f"path contains a NUL byte: {raw!r}", path=where)
    if "\\" in raw:
        raise ManifestError(
            f"path contains a backslash: {raw!r}",
            path=where,
            hint="manifest paths use '/' as the only separator",
        )
    if raw.startswith("/") or (len(raw) >= 2 and raw[1] == ":" and raw[0].isalpha()):
        raise ManifestError(
            f"absolute path not allowed: {raw!r}",
            path=where,
            hint="manifest paths are relative to the model or repository root",
        )
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise ManifestError(
            f"path escapes the root: {raw!r}",
            path=where,
            hint="'..' is never allowed in a manifest path",
        )
    if not parts:
        raise ManifestError(f"path names the root itself: {raw!r}", path=where)
    return unicodedata.normalize("NFC", "/".join(parts))


def path_sort_key(path: str) -> tuple[str, ...]:
    """Order paths by component, as model_signing does (``a/b`` before ``a-b``)."""
    parts = path.split("/")
    if "" in parts or "." in parts:  # not normalised: let pathlib decide
        return PurePosixPath(path).parts
    return tuple(parts)


@dataclass(frozen=True)
class Entry:
    """One artifact: where it is, how big it is, and its SHA-256 digest."""

    path: str
    size: int
    sha256: str
    format: str | None = None
    """The content format, sniffed from the bytes (``pickle``, ``safetensors``...)."""
    annotations: Mapping[str, str] = field(default_factory=dict)
    """Free-form facts: kind (model/dataset), source, license, trained-on."""

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"path": self.path, "size": self.size, "sha256": self.sha256}
        if self.format:
            out["format"] = self.format
        if self.annotations:
            out["annotations"] = dict(sorted(self.annotations.items()))
        return out


@dataclass(frozen=True)
class Manifest:
    """An ordered, validated list of entries plus optional repository binding."""

    entries: tuple[Entry, ...]
    repository: str | None = None
    """Repository identity (e.g. ``github.com/org/repo``), for rollback protection."""
    version: int | None = None
    """Monotonically increasing manifest version, for rollback protection."""
    ignore_paths: tuple[str, ...] = ()
    """Paths left out on purpose (a repository's ``.git*`` files, policy exclusions)."""

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for e in self.entries:
            if e.path in seen:
                raise ManifestError(f"duplicate path in manifest: {e.path!r}")
            seen.add(e.path)
        ordered = tuple(sorted(self.entries, key=lambda e: path_sort_key(e.path)))
        object.__setattr__(self, "entries", ordered)

    def by_path(self) -> dict[str, Entry]:
        return {e.path: e for e in self.entries}

    @property
    def total_size(self) -> int:
        return sum(e.size for e in self.entries)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "format_version": FORMAT_VERSION,
            "entries": [e.to_json() for e in self.entries],
        }
        if self.repository is not None:
            out["repository"] = self.repository
        if self.version is not None:
            out["version"] = self.version
        if self.ignore_paths:
            out["ignore_paths"] = sorted(self.ignore_paths)
        return out

    def to_json(self) -> bytes:
        """Canonical JSON bytes: the same manifest always gives the same bytes."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False)
        return unicodedata.normalize("NFC", text).encode("utf-8") + b"\n"

    @classmethod
    def from_json(cls, data: bytes, *, source: str) -> Manifest:
        """Parse and validate a manifest document; anything malformed is refused."""
        try:
            doc = loads_limited(data, max_size=MAX_MANIFEST_SIZE)
        except ValueError as exc:
            raise ManifestError(
                f"not a valid manifest (JSON): {exc}",
                path=source,
                hint="regenerate it with 'ml-integrity manifest --output'",
            ) from None
        if not isinstance(doc, dict):
            raise ManifestError("manifest must be a JSON object", path=source)
        version = doc.get("format_version")
        if version != FORMAT_VERSION:
            raise ManifestError(
                f"unsupported manifest format_version {version!r} (this tool reads "
                f"{FORMAT_VERSION})",
                path=source,
                hint="upgrade ml-integrity, or regenerate the manifest",
            )
        raw_entries = doc.get("entries")
        if not isinstance(raw_entries, list):
            raise ManifestError("manifest has no 'entries' list", path=source)
        entries = [_entry_from_json(item, source) for item in raw_entries]
        repository = doc.get("repository")
        if repository is not None and not isinstance(repository, str):
            raise ManifestError("'repository' must be a string", path=source)
        mversion = doc.get("version")
        if mversion is not None and (not isinstance(mversion, int) or isinstance(mversion, bool)):
            raise ManifestError("'version' must be an integer", path=source)
        ignores = doc.get("ignore_paths", [])
        if not isinstance(ignores, list) or not all(isinstance(p, str) for p in ignores):
            raise ManifestError("'ignore_paths' must be a list of paths", path=source)
        try:
            return cls(
                tuple(entries),
                repository=repository,
                version=mversion,
                ignore_paths=tuple(normalize_path(p, source=source) for p in ignores),
            )
        except ManifestError as exc:
            raise ManifestError(exc.message, path=source, hint=exc.hint) from None

    def diff(self, actual: Mapping[str, str]) -> ManifestDiff:
        """Compare with actual ``{path: sha256}`` content: missing, extra, changed."""
        expected = {e.path: e.sha256 for e in self.entries}
        return diff_digests(expected, actual)


def diff_digests(expected: Mapping[str, str], actual: Mapping[str, str]) -> ManifestDiff:
    """The sorted difference between two ``{path: digest}`` maps."""
    missing = sorted((p for p in expected if p not in actual), key=path_sort_key)
    extra = sorted((p for p in actual if p not in expected), key=path_sort_key)
    changed = sorted(
        (p for p in expected if p in actual and expected[p] != actual[p]), key=path_sort_key
    )
    return ManifestDiff(missing=tuple(missing), extra=tuple(extra), changed=tuple(changed))


def is_sha256_hex(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _SHA256_HEX


def _entry_from_json(item: object, source: str) -> Entry:
    if not isinstance(item, dict):
        raise ManifestError("manifest entry must be an object", path=source)
    path = normalize_path(item.get("path", ""), source=source)
    size = item.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestError(f"entry {path!r}: 'size' must be a non-negative integer", path=source)
    digest = item.get("sha256")
    if not is_sha256_hex(digest):
        raise ManifestError(
            f"entry {path!r}: 'sha256' must be 64 lowercase hex digits", path=source
        )
    fmt = item.get("format")
    if fmt is not None and not isinstance(fmt, str):
        raise ManifestError(f"entry {path!r}: 'format' must be a string", path=source)
    ann = item.get("annotations", {})
    if not isinstance(ann, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in ann.items()
    ):
        raise ManifestError(
            f"entry {path!r}: 'annotations' must map strings to strings", path=source
        )
    assert isinstance(digest, str)
    return Entry(path=path, size=size, sha256=digest, format=fmt, annotations=ann)


# --- walking a directory ----------------------------------------------------


def list_files(
    root: Path,
    *,
    allow_symlinks: bool = False,
    ignore: Iterable[str] = (),
    default_ignores: Iterable[str] = DEFAULT_IGNORES,
) -> list[str]:
    """Every regular file under ``root`` as sorted relative POSIX paths in NFC
    (:func:`list_files_on_disk` has the names as the file system spells them)."""
    return list(
        list_files_on_disk(
            root, allow_symlinks=allow_symlinks, ignore=ignore, default_ignores=default_ignores
        )
    )


def list_files_on_disk(
    root: Path,
    *,
    allow_symlinks: bool = False,
    ignore: Iterable[str] = (),
    default_ignores: Iterable[str] = DEFAULT_IGNORES,
) -> dict[str, str]:
    """Every regular file under ``root``: NFC path -> the path as it is on disk.

    Sorted by NFC path (path-component order). Names are compared in NFC (a
    folder made on macOS has NFD names, which are the same names); two files
    whose names normalise alike are refused (:class:`ManifestError`, naming
    both): one of them would never be hashed.

    Top-level ``default_ignores`` (:data:`DEFAULT_IGNORES`, the git paths)
    and the relative paths in ``ignore`` (a directory covers its subtree) are
    skipped. A symbolic link raises
    :class:`ManifestError` unless ``allow_symlinks``; even then a link that
    leads out of ``root`` or into a cycle is refused. Sockets, FIFOs and
    devices are refused.
    """
    root_real = Path(os.path.realpath(root))
    ignored = {normalize_path(p) for p in ignore}
    ignored.update(default_ignores)
    out: dict[str, str] = {}
    visited: set[tuple[int, int]] = set()

    def walk(directory: Path, prefix: str, disk_prefix: str) -> None:
        try:
            st = directory.stat()
            key = (st.st_dev, st.st_ino)
            if key in visited:
                raise ManifestError(
                    "symbolic link cycle", path=directory, hint="remove the looping link"
                )
            visited.add(key)
            with os.scandir(directory) as it:
                items = sorted(it, key=lambda d: d.name)
        except PermissionError as exc:
            raise OperationalError(
                f"cannot list directory: {exc.strerror}",
                path=directory,
                hint="check the directory's permissions",
            ) from None
        for item in items:
            disk = f"{disk_prefix}{item.name}"
            rel = f"{prefix}{item.name}"
            if rel in ignored or unicodedata.normalize("NFC", rel) in ignored:
                continue
            try:
                rel = normalize_path(rel, source=str(directory / item.name))
            except ManifestError as exc:
                raise ManifestError(
                    exc.message, path=directory / item.name, hint=exc.hint
                ) from None
            full = directory / item.name
            if item.is_symlink():
                if not allow_symlinks:
                    raise ManifestError(
                        "symbolic link in the model",
                        path=full,
                        hint="replace it with the file, or pass --allow-symlinks to follow it",
                    )
                target = Path(os.path.realpath(full))
                if not target.is_relative_to(root_real):
                    raise ManifestError(
                        f"symbolic link points outside the root (to {target})",
                        path=full,
                        hint="copy the target into the model instead",
                    )
                if not target.exists():
                    raise ManifestError("broken symbolic link", path=full)
            try:
                mode = full.stat().st_mode
            except OSError as exc:
                raise OperationalError(f"cannot stat: {exc.strerror}", path=full) from None
            if stat.S_ISDIR(mode):
                walk(full, rel + "/", disk + "/")
            elif stat.S_ISREG(mode):
                if rel in out:
                    raise ManifestError(
                        f"two files have the same name in NFC: {out[rel]!r} and {disk!r}",
                        path=full,
                        hint="remove or rename one of them (a name and its NFD/NFC twin are "
                        "one name to a manifest)",
                    )
                out[rel] = disk
            else:
                raise ManifestError(
                    "not a regular file (socket, FIFO or device)",
                    path=full,
                    hint="remove it from the model, or pass --ignore-path",
                )

    walk(root, "", "")
    return {p: out[p] for p in sorted(out, key=path_sort_key)}


def build_from_directory(
    root: Path,
    *,
    allow_symlinks: bool = False,
    ignore: Sequence[str] = (),
    default_ignores: Sequence[str] = DEFAULT_IGNORES,
    workers: int | None = None,
    use_cache: bool = True,
    rehash: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Manifest:
    """Hash every file under ``root`` (or the single file ``root``) into a manifest.

    For a single file the one entry is named after the file. An empty folder
    is refused: there is nothing to vouch for.
    """
    from ml_integrity.core import hashing

    if not root.exists():
        raise UsageError("no such file or directory", path=root)
    if root.is_file():
        digest = hashing.hash_file(root, follow_symlinks=True)  # the user named this path
        entry = Entry(
            path=normalize_path(root.name),
            size=digest.size,
            sha256=digest.sha256,
            format=sniff_file(root),
        )
        return Manifest((entry,))
    if not root.is_dir():
        raise UsageError("not a file or directory", path=root)
    on_disk = list_files_on_disk(
        root, allow_symlinks=allow_symlinks, ignore=ignore, default_ignores=default_ignores
    )
    paths = list(on_disk)
    if not paths:
        raise UsageError(
            "the folder holds no files to sign",
            path=root,
            hint="point at the model folder or file itself; empty models are refused (OMS v1.0)",
        )
    cache = None
    if use_cache:
        cache = hashing.StatCache.load(hashing.default_cache_path(root))
    disk_paths = [on_disk[p] for p in paths]
    hashed = hashing.hash_files(
        root,
        disk_paths,
        workers=workers,
        cache=cache,
        rehash=rehash,
        progress=progress,
        follow_symlinks=allow_symlinks,
    )
    if cache is not None:
        cache.retain(root, disk_paths)  # forget files deleted since the last run
        cache.save()  # a cache that cannot be written only costs speed next time (logged)
    entries = tuple(
        Entry(
            path=p,
            size=hashed[on_disk[p]].size,
            sha256=hashed[on_disk[p]].sha256,
            format=sniff_file(root / on_disk[p]),
        )
        for p in paths
    )
    return Manifest(entries)


_SNIFF_BYTES = 512


def sniff_file(path: Path) -> str | None:
    """The content format of a file from its first bytes, or None when unknown.

    Informational only (the scanner decides what is safe): a stream that only
    *might* be a protocol 0/1 pickle is left unlabelled rather than guessed.
    """
    from ml_integrity.core import sniff

    try:
        with open(path, "rb") as f:
            head = f.read(_SNIFF_BYTES)
    except OSError as exc:
        raise OperationalError(f"cannot read: {exc.strerror}", path=path) from None
    fmt = sniff.sniff(head)
    if fmt is sniff.Format.DATA:
        return None
    if fmt is sniff.Format.PICKLE and sniff.is_weak_pickle_start(head):
        return None
    return str(fmt.value)
