"""The OMS predicate's building blocks: serialization settings and resource names.

``serialization`` records how a model was enumerated and hashed, so that a
verifier can do it again: ``method`` (``files`` or ``shards``),
``hash_type`` (``sha256``, ``blake2b``, ``blake3``), ``shard_size`` (shards
only), ``allow_symlinks`` and ``ignore_paths``. A resource is a file (named
by its relative POSIX path, or ``.`` for a single-file model) or, in shard
mode, one byte range of a file, named ``path:start:end`` with ``end``
exclusive (the path may contain colons: the last two fields are the offsets).

What model_signing 1.1.1 writes and needs, and what we accept on read:

- the resource ``algorithm`` is ``hash_type`` for files and
  ``<hash_type>-sharded-<shard_size>`` for shards (model_signing's verifier
  compares it); the OMS schema says ``hash_type``: both are accepted;
- ``shard_size`` is written as an integer (model_signing 1.1.1 writes a float,
  which its own verifier then cannot read): both are accepted;
- the shards of a file must cut it exactly in ``shard_size`` pieces from 0,
  the last one shorter; an empty file has no shard.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ml_integrity.core.hashing_algorithms import ALGORITHMS
from ml_integrity.core.manifest import normalize_path
from ml_integrity.errors import BundleError, ManifestError

__all__ = [
    "SINGLE_FILE_NAME",
    "Resource",
    "Serialization",
    "check_shards",
    "parse_serialization",
    "resource_path",
    "shard_name",
    "split_shard",
]

SINGLE_FILE_NAME = "."
"""Resource name of a single-file model, as model_signing writes it."""


def require(cond: bool, message: str, source: str) -> None:
    if not cond:
        raise BundleError(
            message,
            path=source,
            hint="the bundle is not a valid OMS v1.0 statement; re-sign the model",
        )


@dataclass(frozen=True)
class Resource:
    """One resource descriptor of the predicate: a file, or one shard of a file."""

    name: str
    algorithm: str
    digest: str
    annotations: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Serialization:
    """How the model was enumerated and hashed (the predicate's ``serialization``)."""

    method: Literal["files", "shards"] = "files"
    hash_type: str = "sha256"
    shard_size: int | None = None
    allow_symlinks: bool = False
    ignore_paths: tuple[str, ...] = ()

    def resource_algorithm(self) -> str:
        """The ``algorithm`` of each resource, as model_signing writes (and needs) it."""
        if self.method == "shards":
            return f"{self.hash_type}-sharded-{self.shard_size}"
        return self.hash_type

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"method": self.method, "hash_type": self.hash_type}
        if self.method == "shards":
            out["shard_size"] = self.shard_size  # an integer (1.1.1 writes a float)
        out["allow_symlinks"] = self.allow_symlinks
        if self.ignore_paths:
            out["ignore_paths"] = sorted(set(self.ignore_paths))
        return out


def shard_name(path: str, start: int, end: int) -> str:
    """The resource name of one shard: ``path:start:end`` (end exclusive)."""
    return f"{path}:{start}:{end}"


def parse_serialization(ser: object, source: str) -> Serialization:
    require(isinstance(ser, dict), "predicate has no serialization", source)
    assert isinstance(ser, dict)
    method = ser.get("method")
    require(
        method in ("files", "shards"),
        f"serialization method {method!r} is not supported (only 'files' and 'shards')",
        source,
    )
    hash_type = ser.get("hash_type")
    require(
        hash_type in ALGORITHMS,
        f"hash_type {hash_type!r} is not supported (only {', '.join(ALGORITHMS)})",
        source,
    )
    shard_size: int | None = None
    if method == "shards":
        raw = ser.get("shard_size")
        # model_signing 1.1.1 writes the size as a float (1000000000.0).
        if isinstance(raw, float) and raw.is_integer() and 0 < raw < 2**63:
            raw = int(raw)
        require(
            isinstance(raw, int) and not isinstance(raw, bool) and raw > 0,
            f"shard_size must be a positive integer, not {raw!r}",
            source,
        )
        assert isinstance(raw, int)
        shard_size = raw
    allow_symlinks = ser.get("allow_symlinks", False)
    require(isinstance(allow_symlinks, bool), "allow_symlinks must be a boolean", source)
    ignore_raw = ser.get("ignore_paths", [])
    require(
        isinstance(ignore_raw, list) and all(isinstance(p, str) and p for p in ignore_raw),
        "ignore_paths must be a list of paths",
        source,
    )
    ignore_paths: list[str] = []
    for p in ignore_raw:
        try:
            ignore_paths.append(normalize_path(p))
        except ManifestError:
            continue  # an ignore path that escapes the root cannot hide anything inside it
    return Serialization(
        method="shards" if method == "shards" else "files",
        hash_type=str(hash_type),
        shard_size=shard_size,
        allow_symlinks=allow_symlinks,
        ignore_paths=tuple(ignore_paths),
    )


def resource_path(name: str, source: str) -> str:
    if name == SINGLE_FILE_NAME:
        return name
    try:
        return normalize_path(name, source=source)
    except ManifestError as exc:
        raise BundleError(f"signed {exc.message}", path=source, hint=exc.hint) from None


def split_shard(name: str, source: str) -> tuple[str, int, int]:
    """``path:start:end`` -> its parts; the path may itself contain colons."""
    parts = name.rsplit(":", 2)
    require(
        len(parts) == 3 and all(p.isascii() and p.isdigit() for p in parts[1:]),
        f"shard resource {name!r} is not named path:start:end",
        source,
    )
    start, end = int(parts[1]), int(parts[2])
    require(start < end, f"shard resource {name!r} is empty or reversed", source)
    return resource_path(parts[0], source), start, end


def check_shards(
    path: str, shards: list[tuple[int, int, str]], ser: Serialization, source: str
) -> tuple[tuple[int, int, str], ...]:
    """The shards of one file must cut it exactly as ``shard_size`` does."""
    ordered = tuple(sorted(shards))
    size, step = ordered[-1][1], ser.shard_size or 1
    # Counted first: a hostile end offset must not make us list its shards.
    exact = -(-size // step) == len(ordered) and all(
        (a, b) == (i * step, min(i * step + step, size)) for i, (a, b, _) in enumerate(ordered)
    )
    require(
        exact,
        f"the shards of {path!r} do not cut it in pieces of {ser.shard_size} bytes",
        source,
    )
    return ordered
