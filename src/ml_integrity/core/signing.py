"""Sign a model folder, a single file or a repository as an OMS v1.0 bundle.

The use case is backend-neutral: it builds the manifest, turns it into an
in-toto statement with the OMS predicate (:mod:`ml_integrity.core.oms`) and asks a
:class:`Signer` to wrap it in a DSSE envelope inside a Sigstore bundle.
Backends: ``_keys.KeySigner`` (EC P-256/P-384, Ed25519, optionally with a
certificate chain) and ``_sigstore.SigstoreSigner`` (keyless).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ml_integrity.core import fileio, manifest, oms
from ml_integrity.core.manifest import Manifest
from ml_integrity.errors import UsageError


class Signer(Protocol):
    """Signs an in-toto statement; returns the Sigstore bundle as JSON text.

    ``statement`` is the exact payload (``application/vnd.in-toto+json``) to
    sign; implementations must not re-serialise it.
    """

    def sign_statement(self, statement: bytes) -> str: ...

    def describe(self) -> str:
        """Who signs, for messages (a key fingerprint, an identity)."""
        ...


@dataclass(frozen=True)
class SignResult:
    bundle_path: Path
    manifest: Manifest
    signer: str
    single_file: bool


def bundle_ignores(target: Path, bundle_out: Path) -> list[str]:
    """The bundle's own path relative to ``target`` when it lies inside it."""
    if target.is_dir():
        try:
            rel = bundle_out.resolve().relative_to(target.resolve())
        except ValueError:
            return []
        return [rel.as_posix()]
    return []


def sign(
    target: Path,
    signer: Signer,
    bundle_out: Path,
    *,
    allow_symlinks: bool = False,
    ignore_paths: Sequence[str] = (),
    workers: int | None = None,
    rehash: bool = False,
    progress: Callable[[int, int], None] | None = None,
    repository: str | None = None,
    version: int | None = None,
) -> SignResult:
    """Sign ``target`` (a folder or one file); write the bundle atomically."""
    if allow_symlinks:
        raise UsageError(
            "signing with --allow-symlinks is not supported",
            hint="OMS is deprecating allow_symlinks; copy the link targets into the model",
        )
    ignores = [*ignore_paths, *bundle_ignores(target, bundle_out)]
    m = manifest.build_from_directory(
        target,
        ignore=ignores,
        workers=workers,
        rehash=rehash,
        progress=progress,
    )
    if repository is not None or version is not None:
        m = Manifest(m.entries, repository=repository, version=version)
    single = target.is_file()
    recorded = sorted({*manifest.DEFAULT_IGNORES, *ignores}) if not single else []
    statement = oms.build_statement(
        m,
        model_name=target.resolve().name,
        single_file=single,
        ignore_paths=recorded,
    )
    bundle = signer.sign_statement(statement)
    write_atomic(bundle_out, bundle.encode("utf-8"))
    return SignResult(bundle_out, m, signer.describe(), single)


def write_atomic(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Write a file the user named atomically (see ``_fileio``); failures are usage errors.

    ``mode`` (e.g. 0o600 for a private key) is set before any byte is written.
    """
    try:
        fileio.write_atomic(path, data, mode=mode)
    except OSError as exc:
        raise UsageError(f"cannot write: {exc.strerror}", path=path) from None
