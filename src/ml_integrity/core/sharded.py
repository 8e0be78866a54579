"""Sharded manifests: datasets too big for one bundle, signed as one small statement.

Up to :data:`DEFAULT_SHARD_ENTRIES` files (configurable), a folder is signed
as one OMS bundle, exactly as before (``model_signing`` interop unchanged).
Above it, the files, in canonical order, are cut into ranges of at most that
many entries. Each range is a *shard*: an OMS statement (the very bytes
:func:`~ml_integrity.core.oms.build_statement` makes for those files), written
unsigned to ``<bundle>.shards/NNNNN.json``. The bundle itself signs a small
top-level in-toto statement (:data:`PREDICATE_TYPE`) that lists every shard:
its file name, its first and last path, its file count and bytes, its root
digest (the shard statement's subject digest) and the SHA-256 of the shard
file. That top-level statement is what signers sign, so the envelope stays a
few hundred bytes per shard (Rekor accepts it) however big the dataset is.

Verification checks the top-level signature first, then only the shards it
needs: all of them for a whole-folder verification, or the shards whose path
range holds the paths asked for (``verify --paths``, the loader). A shard
whose bytes do not hash to the listed SHA-256, whose statement's subject is not
the listed root digest, or that lists a path outside its range, fails the
verification. Format: ``docs/format.md``, "Sharded manifests".
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice, pairwise
from pathlib import Path

from ml_integrity.core import oms
from ml_integrity.core.manifest import (
    MAX_MANIFEST_SIZE,
    Entry,
    Manifest,
    is_sha256_hex,
    loads_limited,
    normalize_path,
    path_sort_key,
)
from ml_integrity.core.oms import SignedModel
from ml_integrity.core.streaming import FileRecord
from ml_integrity.errors import BundleError, ManifestError, UsageError

__all__ = [
    "DEFAULT_SHARD_ENTRIES",
    "PREDICATE_TYPE",
    "ShardInfo",
    "SignedShards",
    "build_top",
    "is_sharded",
    "load_shard",
    "parse_top",
    "resolve",
    "shard_dir_for",
    "write_shards",
]

PREDICATE_TYPE = "https://ml-integrity.github.io/sharded-manifest/v1"
DEFAULT_SHARD_ENTRIES = 100_000
"""Above this many files a folder is signed as shards (``sign --shard-entries``)."""

SHARD_DIR_SUFFIX = ".shards"
_MAX_SHARDS = 1_000_000


def shard_dir_for(bundle: Path) -> Path:
    """Where the shards of the bundle ``bundle`` live: ``<bundle>.shards/`` beside it."""
    return bundle.with_name(bundle.name + SHARD_DIR_SUFFIX)


@dataclass(frozen=True)
class ShardInfo:
    """One shard as the signed top-level statement lists it."""

    name: str
    first: str
    last: str
    files: int
    bytes: int
    root_digest: str
    sha256: str

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "first": self.first,
            "last": self.last,
            "files": self.files,
            "bytes": self.bytes,
            "root_digest": self.root_digest,
            "sha256": self.sha256,
        }


@dataclass(frozen=True)
class SignedShards:
    """A verified top-level statement: the shards and how the folder was walked."""

    name: str
    shard_dir: str
    shards: tuple[ShardInfo, ...]
    files: int
    ignore_paths: tuple[str, ...]
    repository: str | None = None
    version: int | None = None

    def shards_for(self, paths: Iterable[str]) -> list[ShardInfo]:
        """The shards whose path range can hold any of ``paths`` (each listed once)."""
        firsts = [path_sort_key(s.first) for s in self.shards]
        wanted: dict[str, ShardInfo] = {}
        for p in paths:
            i = bisect.bisect_right(firsts, path_sort_key(p)) - 1
            if i >= 0 and path_sort_key(p) <= path_sort_key(self.shards[i].last):
                wanted[self.shards[i].name] = self.shards[i]
        return list(wanted.values())


def is_sharded(payload: bytes) -> bool:
    """True when a verified in-toto payload is a sharded top-level statement."""
    try:
        doc = loads_limited(payload, max_size=MAX_MANIFEST_SIZE)
    except ValueError:
        return False
    return isinstance(doc, dict) and doc.get("predicateType") == PREDICATE_TYPE


# --- writing ----------------------------------------------------------------------


def _shard_name(index: int) -> str:
    return f"{index:05d}.json"


def write_shards(
    records: Iterator[FileRecord],
    folder: Path,
    *,
    model_name: str,
    ignore_paths: Sequence[str],
    shard_entries: int,
) -> list[ShardInfo]:
    """Write the shard statements of ``records`` into ``folder``; memory holds one shard."""
    if shard_entries < 1:
        raise UsageError("the shard entry count must be at least 1")
    out: list[ShardInfo] = []
    while True:
        chunk = list(islice(records, shard_entries))
        if not chunk:
            return out
        if len(out) >= _MAX_SHARDS:
            raise UsageError("too many shards", hint="raise --shard-entries")
        name = _shard_name(len(out))
        m = Manifest(tuple(Entry(r.path, r.size, r.sha256, r.format) for r in chunk))
        statement = oms.build_statement(
            m, model_name=f"{model_name}#{name}", ignore_paths=ignore_paths
        )
        (folder / name).write_bytes(statement)
        out.append(
            ShardInfo(
                name=name,
                first=m.entries[0].path,
                last=m.entries[-1].path,
                files=len(m.entries),
                bytes=m.total_size,
                root_digest=oms.root_digest([e.sha256 for e in m.entries]),
                sha256=hashlib.sha256(statement).hexdigest(),
            )
        )


def build_top(
    shards: Sequence[ShardInfo],
    *,
    model_name: str,
    shard_dir: str,
    ignore_paths: Sequence[str],
    repository: str | None = None,
    version: int | None = None,
) -> bytes:
    """The top-level statement (the exact bytes to sign) for ``shards``."""
    subject: dict[str, object] = {
        "name": model_name or "dataset",
        "digest": {"sha256": oms.root_digest([s.root_digest for s in shards])},
    }
    binding: dict[str, object] = {}
    if repository is not None:
        binding[oms.ANN_REPOSITORY] = repository
    if version is not None:
        binding[oms.ANN_VERSION] = version
    if binding:
        subject["annotations"] = binding
    statement = {
        "_type": oms.STATEMENT_TYPE,
        "subject": [subject],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": {
                "method": "files",
                "hash_type": "sha256",
                "allow_symlinks": False,
                "ignore_paths": sorted(set(ignore_paths)),
            },
            "shard_directory": shard_dir,
            "files": sum(s.files for s in shards),
            "shards": [s.to_json() for s in shards],
        },
    }
    return json.dumps(statement, indent=2, ensure_ascii=False).encode("utf-8")


# --- reading ----------------------------------------------------------------------


def _require(cond: bool, message: str, source: str) -> None:
    if not cond:
        raise BundleError(
            message,
            path=source,
            hint="the sharded statement or one of its shards is malformed; re-sign the dataset",
        )


def parse_top(payload: bytes, source: str) -> SignedShards:
    """Validate a top-level statement (after its signature was verified)."""
    try:
        doc = loads_limited(payload, max_size=MAX_MANIFEST_SIZE)
    except ValueError as exc:
        raise BundleError(f"signed payload is not JSON: {exc}", path=source) from None
    _require(isinstance(doc, dict), "statement is not a JSON object", source)
    _require(doc.get("_type") == oms.STATEMENT_TYPE, "statement _type is wrong", source)
    _require(doc.get("predicateType") == PREDICATE_TYPE, "not a sharded statement", source)
    subject = oms.parse_subject(doc, source)
    name, sdigest = subject["name"], subject["digest"]
    pred = doc.get("predicate")
    _require(isinstance(pred, dict), "statement has no predicate", source)
    ser = pred.get("serialization")
    _require(
        isinstance(ser, dict)
        and ser.get("method") == "files"
        and ser.get("hash_type") == "sha256"
        and ser.get("allow_symlinks", False) is False,
        "only files + sha256 serialization without symbolic links is supported",
        source,
    )
    ignore_raw = ser.get("ignore_paths", [])
    _require(
        isinstance(ignore_raw, list) and all(isinstance(p, str) and p for p in ignore_raw),
        "ignore_paths must be a list of paths",
        source,
    )
    shard_dir = pred.get("shard_directory")
    _require(
        isinstance(shard_dir, str)
        and shard_dir.endswith(SHARD_DIR_SUFFIX)
        and "/" not in shard_dir
        and "\\" not in shard_dir
        and shard_dir not in (".", ".."),
        "shard_directory must be a plain folder name ending in .shards",
        source,
    )
    raw_shards = pred.get("shards")
    _require(
        isinstance(raw_shards, list) and 0 < len(raw_shards) <= _MAX_SHARDS,
        "statement lists no shards",
        source,
    )
    shards = [_shard_from_json(s, i, source) for i, s in enumerate(raw_shards)]
    for a, b in pairwise(shards):
        _require(
            path_sort_key(a.last) < path_sort_key(b.first),
            f"shards {a.name} and {b.name} overlap or are out of order",
            source,
        )
    _require(
        oms.root_digest([s.root_digest for s in shards]) == sdigest["sha256"],
        "subject digest does not match the listed shards (inconsistent statement)",
        source,
    )
    files = pred.get("files")
    _require(files == sum(s.files for s in shards), "the file count does not add up", source)
    repository, version = _binding(subject, source)
    ignore_paths: list[str] = []
    for p in ignore_raw:
        with contextlib.suppress(ManifestError):
            ignore_paths.append(normalize_path(p))
    return SignedShards(
        name=name,
        shard_dir=shard_dir,
        shards=tuple(shards),
        files=int(files),
        ignore_paths=tuple(ignore_paths),
        repository=repository,
        version=version,
    )


def _binding(subject: dict[str, object], source: str) -> tuple[str | None, int | None]:
    ann = subject.get("annotations")
    if not isinstance(ann, dict):
        return None, None
    repository = ann.get(oms.ANN_REPOSITORY)
    version = ann.get(oms.ANN_VERSION)
    _require(repository is None or isinstance(repository, str), "bad repository", source)
    _require(
        version is None or (isinstance(version, int) and not isinstance(version, bool)),
        "bad version",
        source,
    )
    return repository if isinstance(repository, str) else None, (
        version if isinstance(version, int) else None
    )


def _shard_from_json(raw: object, index: int, source: str) -> ShardInfo:
    _require(isinstance(raw, dict), "shard entry is not an object", source)
    assert isinstance(raw, dict)
    name = raw.get("name")
    _require(
        name == _shard_name(index), f"shard {index} must be named {_shard_name(index)}", source
    )
    first, last = raw.get("first"), raw.get("last")
    _require(isinstance(first, str) and isinstance(last, str), "shard range is missing", source)
    assert isinstance(first, str) and isinstance(last, str)
    try:
        first, last = normalize_path(first), normalize_path(last)
    except ManifestError as exc:
        raise BundleError(f"shard {name}: {exc.message}", path=source) from None
    _require(path_sort_key(first) <= path_sort_key(last), f"shard {name}: empty range", source)
    files, size = raw.get("files"), raw.get("bytes")
    _require(
        isinstance(files, int) and not isinstance(files, bool) and files > 0,
        f"shard {name}: bad file count",
        source,
    )
    _require(
        isinstance(size, int) and not isinstance(size, bool) and size >= 0,
        f"shard {name}: bad byte count",
        source,
    )
    rd, sha = raw.get("root_digest"), raw.get("sha256")
    _require(is_sha256_hex(rd) and is_sha256_hex(sha), f"shard {name}: bad digests", source)
    assert isinstance(files, int) and isinstance(size, int)
    assert isinstance(rd, str) and isinstance(sha, str)
    return ShardInfo(str(name), first, last, files, size, rd, sha)


def load_shard(top: SignedShards, info: ShardInfo, bundle: Path) -> SignedModel:
    """Read one shard and check it against what the signed top-level statement lists."""
    path = bundle.parent / top.shard_dir / info.name
    source = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BundleError(
            "shard of a signed dataset is missing",
            path=path,
            hint=f"copy the whole {top.shard_dir} folder along with the bundle",
        ) from None
    except OSError as exc:
        raise BundleError(f"cannot read shard: {exc.strerror}", path=path) from None
    _require(
        hashlib.sha256(data).hexdigest() == info.sha256,
        "shard does not match the signed statement (its SHA-256 differs)",
        source,
    )
    model = oms.parse_statement(data, source)
    _require(
        oms.root_digest(list(model.resources.values())) == info.root_digest,
        "shard's root digest differs from the signed one",
        source,
    )
    _require(len(model.resources) == info.files, "shard's file count differs", source)
    lo, hi = path_sort_key(info.first), path_sort_key(info.last)
    _require(
        all(lo <= path_sort_key(p) <= hi for p in model.resources),
        "shard lists a path outside its signed range",
        source,
    )
    return model


def resolve(top: SignedShards, bundle: Path, *, paths: Sequence[str] | None = None) -> SignedModel:
    """The signed resources of the shards needed (all of them when ``paths`` is None)."""
    needed = list(top.shards) if paths is None else top.shards_for(paths)
    resources: dict[str, str] = {}
    sizes: dict[str, int] = {}
    formats: dict[str, str] = {}
    for info in needed:
        model = load_shard(top, info, bundle)
        resources.update(model.resources)
        sizes.update(model.sizes)
        formats.update(model.formats)
    return SignedModel(
        name=top.name,
        resources=resources,
        sizes=sizes,
        formats=formats,
        ignore_paths=top.ignore_paths,
        repository=top.repository,
        version=top.version,
    )
