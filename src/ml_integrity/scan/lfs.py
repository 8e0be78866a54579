"""Git LFS pointers: the scan of a pointer is the scan of its object in the local store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ml_integrity.scan.findings import FileReport, ScanPolicy
from ml_integrity.scan.readers import FileReader

__all__ = ["LFS_PREFIXES", "lfs_object_of", "scan_lfs"]


class Scan(Protocol):
    def add(
        self, kind: str, message: str, chain: tuple[str, ...], *, detail: str | None = None
    ) -> None: ...

    def scan(self, r: FileReader, chain: tuple[str, ...], depth: int) -> str: ...


def lfs_object_of(path: Path, oid: str) -> Path | None:
    """The object in the local LFS store of the repository that encloses ``path``."""
    from ml_integrity.core.hashing import _find_git_dir
    from ml_integrity.core.lfs import LfsStore

    gitdir = _find_git_dir(path.resolve().parent)
    if gitdir is None:
        return None
    common = gitdir / "commondir"
    if common.is_file():
        gitdir = (gitdir / common.read_text().strip()).resolve()
    obj = LfsStore.for_git_dir(gitdir).object_path(oid)
    return obj if obj.is_file() else None


LFS_PREFIXES = (
    b"version https://git-lfs.github.com/spec/v1\n",
    b"version https://hawser.github.com/spec/v1\n",
)


def scan_lfs(
    lfs_object: Callable[[str], Path | None],
    head: bytes,
    scan: Scan,
    report: FileReport,
    policy: ScanPolicy,
) -> None:
    from ml_integrity.core.lfs import parse_pointer

    ptr = parse_pointer(head)
    if ptr is None:
        scan.add("malformed", "not a valid Git LFS pointer (spec v1, under 1024 bytes)", ())
        return
    if ptr.oid in policy.allowed_sha256:
        report.verdict = "allowed"
        report.note = f"LFS object sha256:{ptr.oid} allowed by sha256"
        return
    obj = lfs_object(ptr.oid)
    if obj is None:
        if policy.lfs_missing == "skip":
            report.verdict = "skipped"
            report.note = (
                f"LFS object sha256:{ptr.oid[:12]}... not present locally (skipped by policy)"
            )
            return
        scan.add(
            "lfs-object-missing",
            f"Git LFS pointer; object sha256:{ptr.oid[:12]}... is not in the local LFS store",
            (),
            detail=ptr.oid,
        )
        return
    chain = (f"LFS object {ptr.oid[:12]}",)
    with open(obj, "rb") as f:
        reader = FileReader(f)
        if reader.length != ptr.size:
            scan.add(
                "malformed", f"LFS object is {reader.length} bytes, pointer says {ptr.size}", chain
            )
        else:
            fmt = scan.scan(reader, chain, 0)
            report.note = f"scanned the local LFS object ({fmt})"
