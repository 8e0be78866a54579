"""The hash algorithms a model can be signed with: SHA-256, BLAKE2b, BLAKE3.

The names are those of the OMS ``hash_type`` field (``sha256``, ``blake2b``,
``blake3``); the command line and model_signing's API also say ``blake2``
for BLAKE2b (64-byte digests, :func:`hashlib.blake2b`'s default).

- ``sha256`` (:mod:`hashlib`, OpenSSL with SHA-NI where the CPU has it) is
  the default and the only algorithm of repository mode: Git LFS oids are
  SHA-256, so an LFS file is never read again to be signed. One file is one
  sequential chain, so one file uses one core (shards lift that).
- ``blake2b`` (:mod:`hashlib`) exists for interoperability; it is slower
  than SHA-256 on CPUs with SHA extensions.
- ``blake3`` (the ``blake3`` package, model_signing's own dependency, imported
  only when asked for) is a tree hash: one file is hashed on every core,
  several times faster than SHA-256.

The root digest of an OMS statement is always SHA-256, whatever the algorithm.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

from ml_integrity.errors import OperationalError, UsageError

__all__ = [
    "ALGORITHMS",
    "CLI_NAMES",
    "Hasher",
    "digest_hex_length",
    "is_hex_digest",
    "new_hasher",
    "oms_name",
]

ALGORITHMS: tuple[str, ...] = ("sha256", "blake2b", "blake3")
"""OMS ``hash_type`` values, in the order of preference for speed-independent use."""

CLI_NAMES: dict[str, str] = {"sha256": "sha256", "blake2": "blake2b", "blake3": "blake3"}
"""``sign --hash`` choices (model_signing's API names) -> OMS names."""

_HEX_LENGTH = {"sha256": 64, "blake2b": 128, "blake3": 64}
_HEX = frozenset("0123456789abcdef")

BLAKE3_AUTO = -1
"""``max_threads`` value that lets BLAKE3 use every core (``blake3.blake3.AUTO``)."""


class Hasher(Protocol):
    """What the engine needs of a hash object (hashlib's and blake3's have it)."""

    def update(self, data: bytes | memoryview, /) -> object: ...

    def hexdigest(self) -> str: ...


def oms_name(name: str) -> str:
    """The OMS name of ``name`` (``blake2`` -> ``blake2b``); unknown names are usage errors."""
    if name in _HEX_LENGTH:
        return name
    if name in CLI_NAMES:
        return CLI_NAMES[name]
    raise UsageError(
        f"unknown hash algorithm {name!r}",
        hint="choose one of " + ", ".join(CLI_NAMES),
    )


def digest_hex_length(algorithm: str) -> int:
    """Hex digits of one digest of ``algorithm`` (an OMS name)."""
    return _HEX_LENGTH[algorithm]


def is_hex_digest(value: object, algorithm: str) -> bool:
    """True when ``value`` is a lowercase hex digest of ``algorithm``'s length."""
    return (
        isinstance(value, str)
        and len(value) == _HEX_LENGTH.get(algorithm, -1)
        and set(value) <= _HEX
    )


def new_hasher(algorithm: str, *, threads: int = 1) -> Hasher:
    """A fresh hash object. ``threads`` is used by BLAKE3 only (-1: every core)."""
    if algorithm == "sha256":
        return hashlib.sha256()
    if algorithm == "blake2b":
        return hashlib.blake2b()
    if algorithm == "blake3":
        hasher: Hasher = _blake3()(max_threads=threads)
        return hasher
    raise ValueError(f"not a supported hash algorithm: {algorithm!r}")


def _blake3() -> type:
    """The ``blake3.blake3`` class, imported on first use."""
    try:
        from blake3 import blake3
    except ImportError as exc:  # pragma: no cover - it is a declared dependency
        raise OperationalError(
            "BLAKE3 hashing needs the 'blake3' package, which is not installed",
            hint="pip install blake3 (a dependency of ml-integrity), or use --hash sha256",
        ) from exc
    return blake3
