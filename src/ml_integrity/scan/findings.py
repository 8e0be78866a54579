"""What a scan decides and reports: the policy, the finding kinds, per-file and whole reports."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ml_integrity.errors import UsageError
from ml_integrity.scan.records import Record, Value

__all__ = ["RULES", "FileReport", "Finding", "ScanPolicy", "ScanReport", "Verdict", "verdict_of"]


@dataclass(frozen=True)
class ScanPolicy:
    """What the scanner accepts. The trust policy builds one from ``policy.yaml``.

    - ``pickle``: ``"block"`` (default) refuses every pickle; ``"allowlist"``
      accepts pickles whose globals are all in ``pickles.ALLOWLIST`` and
      that show no structural trick.
    - ``allowed_sha256``: reviewed files, allowed by the sha256 of their
      content (for an LFS pointer: its oid), never by name.
    - ``lfs_missing``: what to do with an LFS pointer whose object is not
      in the local LFS store: ``"fail"`` (not scanned, so not safe) or
      ``"skip"`` (reported as skipped, not a failure).
    - ``max_decompressed_bytes``: output cap per compressed stream; beyond
      it the stream is "not scanned" (a decompression bomb is not safe).
    - ``max_depth``: how deep containers may nest.
    """

    pickle: Literal["block", "allowlist"] = "block"
    allowed_sha256: frozenset[str] = frozenset()
    lfs_missing: Literal["fail", "skip"] = "fail"
    max_decompressed_bytes: int = 4 << 30
    max_depth: int = 8

    def __post_init__(self) -> None:
        if self.pickle not in ("block", "allowlist"):
            raise UsageError(f"unknown pickle policy {self.pickle!r} (block or allowlist)")
        if self.lfs_missing not in ("fail", "skip"):
            raise UsageError(f"unknown lfs_missing policy {self.lfs_missing!r} (fail or skip)")
        bad = [d for d in self.allowed_sha256 if not re.fullmatch(r"[0-9a-f]{64}", d)]
        if bad:
            raise UsageError(f"not a lowercase hex sha256: {bad[0]!r}")

    def to_json(self) -> dict[str, object]:
        return {
            "pickle": self.pickle,
            "allowed_sha256": sorted(self.allowed_sha256),
            "lfs_missing": self.lfs_missing,
            "max_decompressed_bytes": self.max_decompressed_bytes,
            "max_depth": self.max_depth,
        }


RULES: dict[str, tuple[str, str]] = {
    "pickle-blocked": (
        "Pickle refused by policy",
        "Loading a pickle can run arbitrary code. The policy blocks every pickle; "
        "store tensors as safetensors.",
    ),
    "unsafe-global": (
        "Pickle imports a callable outside the allowlist",
        "The pickle imports a module attribute that is not on the allowlist of tensor and "
        "container rebuild functions; loading the file can run code.",
    ),
    "unresolved-global": (
        "Pickle global not provably constant",
        "The module or name of an imported global is computed while unpickling (or comes "
        "from the extension registry), so it cannot be checked.",
    ),
    "unsafe-call": (
        "Pickle calls something that is not a named global",
        "A REDUCE/NEWOBJ/OBJ target is the result of another call or an unresolved object.",
    ),
    "unsafe-build": (
        "Pickle BUILD/SETITEM trick",
        "The pickle sets dunder attributes or modifies an imported module-level object.",
    ),
    "malformed": (
        "Content cannot be parsed",
        "The file claims a format (pickle, zip, safetensors, ...) but does not parse; what "
        "cannot be parsed is not trusted.",
    ),
    "keras-lambda": (
        "Keras Lambda layer",
        "The Keras model config contains a Lambda layer: Python bytecode that runs when "
        "the model is loaded.",
    ),
    "keras-foreign-module": (
        "Keras object from outside Keras",
        "The Keras config names a module or function outside Keras; loading imports and calls it.",
    ),
    "unknown-format": (
        "Not a format the scanner can prove safe",
        "The content is neither a pickle nor a format that was fully validated as one that "
        "cannot carry code (safetensors, npy/npz, text, images, GGUF, ONNX, ...); unknown "
        "content is not trusted.",
    ),
    "ambiguous-container": (
        "Container read differently by different loaders",
        "The zip's central directories or local headers disagree, so torch (miniz) and "
        "zipfile would load different data under the same name.",
    ),
    "not-scanned": (
        "Could not scan",
        "Part of the file could not be scanned (decompression cap, nesting, unsupported or "
        "encrypted compression, unreadable); not scanned is not safe.",
    ),
    "lfs-object-missing": (
        "Git LFS object not present",
        "The file is a Git LFS pointer and the object it points to is not in the local LFS "
        "store, so its content was not scanned.",
    ),
}

_HINTS = {
    "pickle-blocked": "convert it to safetensors (or set the policy to pickle: allowlist "
    "for torch/numpy checkpoints); a reviewed file can be allowed by its sha256",
    "unsafe-global": "do not load this file; if it was reviewed, allow it by its sha256",
    "unresolved-global": "do not load this file; if it was reviewed, allow it by its sha256",
    "unsafe-call": "do not load this file; if it was reviewed, allow it by its sha256",
    "unsafe-build": "do not load this file; if it was reviewed, allow it by its sha256",
    "malformed": "re-export the file with its original tool; a file that does not parse "
    "is not trusted",
    "keras-lambda": "rebuild the model without Lambda layers (use a registered custom layer)",
    "keras-foreign-module": "review the custom object; if the file was reviewed, allow it "
    "by its sha256",
    "unknown-format": "store tensors as safetensors or numpy arrays; a reviewed file can be "
    "allowed by its sha256",
    "ambiguous-container": "do not load this file; re-export it with its original tool",
    "not-scanned": "unpack or re-export the file so it can be scanned, or allow a reviewed "
    "file by its sha256",
    "lfs-object-missing": "run `git lfs pull` to fetch the object, then scan again",
}


class Finding(Value):
    """One reason a file is not safe."""

    __slots__ = ("detail", "kind", "member", "message", "offset", "path")

    def __init__(
        self,
        path: str,
        kind: str,
        message: str,
        member: str | None = None,
        offset: int | None = None,
        detail: str | None = None,
    ) -> None:
        self.path = path
        self.kind = kind
        self.message = message
        self.member = member
        self.offset = offset
        self.detail = detail

    @property
    def hint(self) -> str:
        return _HINTS[self.kind]

    def location(self) -> str:
        return f"{self.path} [{self.member}]" if self.member else self.path

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.path,
            "kind": self.kind,
            "message": self.message,
            "member": self.member,
            "offset": self.offset,
            "detail": self.detail,
            "hint": self.hint,
        }


Verdict = Literal["safe", "unsafe", "not-scanned", "allowed", "skipped"]


class FileReport(Record):
    __slots__ = ("findings", "format", "note", "path", "verdict")

    def __init__(
        self,
        path: str,
        format: str,
        verdict: Verdict = "safe",
        findings: list[Finding] | None = None,
        note: str | None = None,
    ) -> None:
        self.path = path
        self.format = format
        self.verdict: Verdict = verdict
        self.findings: list[Finding] = [] if findings is None else findings
        self.note = note

    @property
    def ok(self) -> bool:
        return self.verdict in ("safe", "allowed", "skipped")

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.path,
            "format": self.format,
            "verdict": self.verdict,
            "note": self.note,
            "findings": [f.to_json() for f in self.findings],
        }


class ScanReport(Record):
    __slots__ = ("files", "policy")

    def __init__(self, policy: ScanPolicy, files: list[FileReport] | None = None) -> None:
        self.policy = policy
        self.files: list[FileReport] = [] if files is None else files

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.files)

    @property
    def findings(self) -> list[Finding]:
        return [x for f in self.files for x in f.findings]

    def to_json(self) -> dict[str, object]:
        counts: dict[str, int] = {}
        for f in self.files:
            counts[f.verdict] = counts.get(f.verdict, 0) + 1
        return {
            "ok": self.ok,
            "policy": self.policy.to_json(),
            "summary": counts,
            "files": [f.to_json() for f in self.files],
        }


_NOT_SCANNED = frozenset({"not-scanned", "lfs-object-missing"})


def verdict_of(report: FileReport) -> None:
    """Set the report's verdict from its findings (none: safe)."""
    kinds = {f.kind for f in report.findings}
    if not kinds:
        report.verdict = "safe"
    elif kinds <= _NOT_SCANNED:
        report.verdict = "not-scanned"
    else:
        report.verdict = "unsafe"
