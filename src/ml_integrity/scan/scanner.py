"""Scanning files for code-carrying content: the use case behind ``ml-integrity scan``.

:func:`scan_paths` (and :func:`scan_file`, :func:`scan_path`) open every
file the way ML loaders open it, judged by content (``formats.sniff``), and
walk every pickle they would unpickle (``pickles.analyze``):

- zip files: every entry, from the central directory *and* from the local
  headers, duplicates included, bad CRCs ignored (the data is read raw and
  decompressed here); inside a PyTorch zip only the ``*.pkl`` entries are
  pickles (tensor data is never read);
- legacy PyTorch files (stacked pickles; the tar layout), ``.npy`` object
  arrays and ``.npz`` members, joblib files, gzip/bz2/xz/lzma/zlib
  wrappers (with an output cap), tar archives;
- Keras: the ``config.json`` of a ``.keras`` zip, and the JSON model config
  found in the raw bytes of an HDF5 ``.h5`` file (see ``docs/scanning.md``);
- safetensors headers are validated; GGUF, ONNX and unknown data are data;
- a Git LFS pointer is replaced by the local LFS object when present.

The :class:`ScanPolicy` decides what a pickle may contain. "Could not
scan" is a finding, never a pass.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

from ml_integrity.core.sniff import COMPRESSED, Format, is_weak_pickle_start, sniff
from ml_integrity.errors import UsageError
from ml_integrity.scan import formats as fm
from ml_integrity.scan.formats import (
    DecompressionLimitError,
    FileReader,
    ParseError,
    Reader,
    StreamReader,
    SubReader,
)
from ml_integrity.scan.pickles import Analysis, analyze, looks_like_pickle

__all__ = [
    "RULES",
    "FileReport",
    "Finding",
    "ScanPolicy",
    "ScanReport",
    "iter_files",
    "scan_file",
    "scan_path",
    "scan_paths",
    "scan_stream",
]


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
    "not-scanned": "unpack or re-export the file so it can be scanned, or allow a reviewed "
    "file by its sha256",
    "lfs-object-missing": "run `git lfs pull` to fetch the object, then scan again",
}


@dataclass(frozen=True)
class Finding:
    """One reason a file is not safe."""

    path: str
    kind: str
    message: str
    member: str | None = None
    offset: int | None = None
    detail: str | None = None

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


@dataclass
class FileReport:
    path: str
    format: str
    verdict: Verdict = "safe"
    findings: list[Finding] = field(default_factory=list)
    note: str | None = None

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


@dataclass
class ScanReport:
    policy: ScanPolicy
    files: list[FileReport] = field(default_factory=list)

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


# --- the per-file scan --------------------------------------------------------------

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_NOT_SCANNED = frozenset({"not-scanned", "lfs-object-missing"})
_MATERIALIZE_CAP = 512 << 20
_STORAGE_ELEMENT_SIZE = {
    "DoubleStorage": 8,
    "FloatStorage": 4,
    "HalfStorage": 2,
    "BFloat16Storage": 2,
    "LongStorage": 8,
    "IntStorage": 4,
    "ShortStorage": 2,
    "CharStorage": 1,
    "ByteStorage": 1,
    "BoolStorage": 1,
    "ComplexDoubleStorage": 16,
    "ComplexFloatStorage": 8,
    "QUInt8Storage": 1,
    "QInt8Storage": 1,
    "QInt32Storage": 4,
    "QUInt4x2Storage": 1,
    "QUInt2x4Storage": 1,
}
_TORCH_RAW = re.compile(
    r"(^|/)(data/\d+|version|byteorder|\.data/version|\.data/serialization_id)$"
)


class _Nested:
    """Hands payloads found inside pickle constants back to the scanner."""

    def __init__(self, scan: _FileScan, chain: tuple[str, ...], depth: int) -> None:
        self.s = scan
        self.chain = chain
        self.depth = depth

    def wants(self, head: bytes) -> bool:
        return sniff(head) in (Format.PICKLE, Format.ZIP, Format.NPY)

    def scan(self, reader: Reader, label: str) -> None:
        self.s.scan_reader(reader, (*self.chain, label), self.depth + 1, nested=True)


class _FileScan:
    def __init__(self, path: str, policy: ScanPolicy) -> None:
        self.path = path
        self.policy = policy
        self.findings: list[Finding] = []
        self.format: Format | None = None
        self.skipped: str | None = None
        self._seen: set[tuple[str, str | None, str | None]] = set()

    def add(
        self,
        kind: str,
        message: str,
        chain: tuple[str, ...],
        *,
        offset: int | None = None,
        detail: str | None = None,
    ) -> None:
        member = " > ".join(chain) or None
        key = (kind, member, detail or message)
        if key in self._seen:
            return
        self._seen.add(key)
        self.findings.append(Finding(self.path, kind, message, member, offset, detail))

    # dispatch ------------------------------------------------------------------
    def scan_reader(
        self,
        reader: Reader,
        chain: tuple[str, ...],
        depth: int,
        *,
        nested: bool = False,
        top: bool = False,
        name: str = "",
    ) -> Format:
        if depth > self.policy.max_depth:
            self.add("not-scanned", f"containers nest deeper than {self.policy.max_depth}", chain)
            return Format.DATA
        head = reader.peek(512)
        fmt = sniff(head)
        try:
            fmt = self._dispatch(fmt, head, reader, chain, depth, nested=nested, top=top, name=name)
        except DecompressionLimitError as exc:
            self.add("not-scanned", exc.message, chain)
        except ParseError as exc:
            if not nested:
                self.add("malformed", exc.message, chain)
        if (
            top
            and not head.startswith((b"PK\x03\x04", b"PK\x05\x06"))
            and isinstance(reader, FileReader)
        ):
            self._zip_view(reader, chain, depth)
        return fmt

    def _dispatch(
        self,
        fmt: Format,
        head: bytes,
        reader: Reader,
        chain: tuple[str, ...],
        depth: int,
        *,
        nested: bool,
        top: bool,
        name: str,
    ) -> Format:
        if fmt is Format.PICKLE:
            return self.scan_pickles(
                reader, chain, depth, weak=nested or is_weak_pickle_start(head)
            )
        if fmt is Format.ZIP:
            return self.scan_zip(reader, chain, depth, nested=nested)
        if fmt is Format.NPY:
            return self.scan_npy(reader, chain, depth, nested=nested)
        if fmt in COMPRESSED:
            stream = StreamReader(
                fm.decompressed_chunks(fmt, reader, self.policy.max_decompressed_bytes)
            )
            self.scan_reader(stream, (*chain, f"{fmt.value} stream"), depth + 1)
            return fmt
        if fmt is Format.TAR:
            return self.scan_tar(reader, chain, depth)
        if fmt is Format.SAFETENSORS:
            fr = self._seekable(reader, chain)
            if fr is not None:
                fm.validate_safetensors(fr)
            return fmt
        if fmt is Format.HDF5 or (top and isinstance(reader, FileReader) and fm.find_hdf5(reader)):
            if name.endswith(".weights.h5"):
                return Format.HDF5  # Keras weights inside a .keras zip: datasets only
            fr = self._seekable(reader, chain)
            if fr is not None:
                self.scan_hdf5(fr, chain)
            return Format.HDF5
        if fmt is Format.LFS_POINTER and top:
            return fmt  # handled by scan_file
        return fmt

    def _seekable(self, reader: Reader, chain: tuple[str, ...]) -> FileReader | None:
        if isinstance(reader, FileReader):
            return reader
        data = reader.read(_MATERIALIZE_CAP + 1)
        if len(data) > _MATERIALIZE_CAP:
            self.add(
                "not-scanned",
                f"needs random access and is larger than {_MATERIALIZE_CAP >> 20} MiB "
                "inside a compressed stream",
                chain,
            )
            return None
        return fm.BytesReader(data)

    # pickles -------------------------------------------------------------------
    def scan_pickles(
        self, reader: Reader, chain: tuple[str, ...], depth: int, *, weak: bool
    ) -> Format:
        nested = _Nested(self, chain, depth)
        a = analyze(reader, nested)
        if weak and not looks_like_pickle(a):
            return Format.DATA
        self.report_pickle(a, chain)
        fmt = Format.PICKLE
        if a.complete and a.result == _LEGACY_MAGIC and not isinstance(a.result, bool):
            fmt = Format.PYTORCH_LEGACY
            for what in ("protocol version", "sys_info", "object", "storage keys"):
                if reader.at_eof():
                    self.add(
                        "malformed", f"legacy PyTorch file ends before its {what} pickle", chain
                    )
                    return fmt
                a = analyze(reader, nested)
                self.report_pickle(a, (*chain, f"{what} pickle"))
                if not a.complete:
                    return fmt
            return fmt
        n = 1
        while a.complete:
            head = reader.peek(16)
            if not head or sniff(head) is not Format.PICKLE:
                break
            n += 1
            a = analyze(reader, nested)
            if not looks_like_pickle(a):
                break
            self.report_pickle(a, (*chain, f"pickle #{n} (stacked)"))
        return fmt

    def report_pickle(self, a: Analysis, chain: tuple[str, ...]) -> None:
        unsafe = False
        for issue in a.issues:
            self.add(issue.kind, issue.message, chain, offset=issue.offset)
            unsafe = True
        for g in a.globals:
            if g.allowed:
                continue
            unsafe = True
            spelled = f" (written {g.written})" if g.written else ""
            self.add(
                "unsafe-global",
                f"pickle imports {g.qualname}{spelled} ({g.opcode} at offset {g.offset})",
                chain,
                offset=g.offset,
                detail=g.qualname,
            )
        if self.policy.pickle == "block" and not unsafe:
            names = sorted({g.qualname for g in a.globals})
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            self.add(
                "pickle-blocked",
                f"pickle (protocol {a.protocol}) refused by policy pickle: block"
                + (f"; it imports {shown}" if names else ""),
                chain,
                offset=a.start,
            )

    # npy -----------------------------------------------------------------------
    def scan_npy(
        self, reader: Reader, chain: tuple[str, ...], depth: int, *, nested: bool
    ) -> Format:
        try:
            header = fm.parse_npy_header(reader)
        except ParseError:
            if nested:
                return Format.DATA
            raise
        if header.has_object:
            self.scan_pickles(reader, (*chain, "object array"), depth, weak=False)
        return Format.NPY

    # zip -------------------------------------------------------------------------
    def _zip_view(self, reader: FileReader, chain: tuple[str, ...], depth: int) -> None:
        """A file that is something else at its start *and* a zip at its end (a polyglot)."""
        tail = reader.read_at(max(0, reader.length - 65557), 65557)
        if b"PK\x05\x06" not in tail:
            return
        entries, _ = fm.read_zip_entries(reader)
        if entries:
            self.scan_zip(reader, (*chain, "zip view"), depth, nested=False)

    def scan_zip(
        self, reader: Reader, chain: tuple[str, ...], depth: int, *, nested: bool
    ) -> Format:
        fr = self._seekable(reader, chain)
        if fr is None:
            return Format.ZIP
        entries, problems = fm.read_zip_entries(fr)
        if nested and not entries:
            return Format.DATA
        for p in problems:
            self.add("malformed", f"zip: {p}", chain)
        names = [n for e in entries for n in e.names]
        torch = any(n == "data.pkl" or n.endswith("/data.pkl") for n in names)
        keras = not torch and "config.json" in names
        npz = bool(names) and all(n.endswith(".npy") for n in names)
        for e in entries:
            label = e.names[0]
            if len(e.names) > 1:
                label += " (also named " + ", ".join(repr(n) for n in e.names[1:]) + ")"
            if e.source == "local":
                label += " [local header view]"
            sub = (*chain, label)
            if (
                torch
                and not any(n.endswith("pkl") for n in e.names)
                and all(_TORCH_RAW.search(n) for n in e.names)
            ):
                continue  # tensor data, version markers: read as raw bytes by torch
            if e.flags & 1:
                self.add("not-scanned", "encrypted zip entry", sub)
                continue
            if e.data_offset + e.compressed_size > fr.length:
                self.add("malformed", "zip entry data runs past the end of the file", sub)
                continue
            window = FileReader(fr._f, fr._start + e.data_offset, e.compressed_size)
            member: Reader
            if e.method == 0:
                member = window
            else:
                try:
                    member = StreamReader(
                        fm.zip_member_chunks(window, e.method, self.policy.max_decompressed_bytes)
                    )
                except ParseError as exc:
                    self.add("not-scanned", exc.message, sub)
                    continue
            try:
                if torch and any(n.endswith("pkl") for n in e.names):
                    self.scan_pickles(member, sub, depth + 1, weak=False)
                elif keras and "config.json" in e.names:
                    self.scan_keras_config(member, sub)
                else:
                    self.scan_reader(member, sub, depth + 1, name=e.names[0])
            except DecompressionLimitError as exc:
                self.add("not-scanned", exc.message, sub)
            except ParseError as exc:
                self.add("malformed", exc.message, sub)
        if torch:
            return Format.PYTORCH_ZIP
        if keras:
            return Format.KERAS
        return Format.NPZ if npz else Format.ZIP

    # tar ---------------------------------------------------------------------------
    def scan_tar(self, reader: Reader, chain: tuple[str, ...], depth: int) -> Format:
        legacy_names = {"pickle", "storages", "tensors", "sys_info"}
        fmt = Format.TAR
        for m in fm.iter_tar(reader):
            if not m.regular:
                continue
            sub = (*chain, m.name)
            member: Reader
            window = reader.window(m.size)
            member = window if window is not None else SubReader(reader, m.size)
            base = m.name.rsplit("/", 1)[-1]
            if base in legacy_names:
                fmt = Format.PYTORCH_LEGACY_TAR
                if base == "storages":
                    self._legacy_storages(member, sub)
                elif base == "tensors":
                    self._legacy_tensors(member, sub)
                else:
                    self.scan_pickles(member, sub, depth + 1, weak=False)
            else:
                self.scan_reader(member, sub, depth + 1, name=m.name)
            if isinstance(member, SubReader):
                member.finish()
        return fmt

    def _strict_pickle(self, reader: Reader, chain: tuple[str, ...], what: str) -> object:
        a = analyze(reader, _Nested(self, chain, 0))
        self.report_pickle(a, (*chain, what))
        if not a.complete:
            raise ParseError(f"legacy PyTorch {what} does not parse")
        return a.result

    def _legacy_storages(self, r: Reader, chain: tuple[str, ...]) -> None:
        from ml_integrity.scan.pickles import Global

        count = self._strict_pickle(r, chain, "storage count")
        if not isinstance(count, int) or count < 0:
            raise ParseError("legacy PyTorch storages: invalid count")
        for i in range(count):
            args = self._strict_pickle(r, chain, f"storage #{i}")
            stype = args[2] if isinstance(args, tuple) and len(args) == 3 else None
            if not isinstance(stype, Global) or stype.name not in _STORAGE_ELEMENT_SIZE:
                raise ParseError("legacy PyTorch storage with an unknown storage type")
            (numel,) = _i64(r.read_exact(8, "storage size"))
            r.skip(numel * _STORAGE_ELEMENT_SIZE[stype.name])
        self._strict_pickle(r, chain, "storage views")

    def _legacy_tensors(self, r: Reader, chain: tuple[str, ...]) -> None:
        count = self._strict_pickle(r, chain, "tensor count")
        if not isinstance(count, int) or count < 0:
            raise ParseError("legacy PyTorch tensors: invalid count")
        for i in range(count):
            self._strict_pickle(r, chain, f"tensor #{i}")
            ndim = int.from_bytes(r.read_exact(4, "tensor ndim"), "little", signed=True)
            if ndim < 0 or ndim > 64:
                raise ParseError("legacy PyTorch tensor with an invalid ndim")
            r.skip(4 + 16 * ndim + 8)

    # keras -------------------------------------------------------------------------
    def scan_keras_config(self, reader: Reader, chain: tuple[str, ...]) -> None:
        data = reader.read(64 << 20)
        try:
            config = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            self.add("malformed", "Keras config.json is not valid JSON", chain)
            return
        self._keras_issues(config, chain)

    def _keras_issues(self, config: object, chain: tuple[str, ...]) -> None:
        for issue in fm.keras_config_issues(config):
            self.add(issue.kind, f"{issue.message} at {issue.where}", chain, detail=issue.where)

    def scan_hdf5(self, r: FileReader, chain: tuple[str, ...]) -> None:
        """Search the raw HDF5 bytes for Keras JSON configs (no HDF5 parser: see docs)."""
        step = 8 << 20
        starts = re.compile(rb'\{\s*"(?:class_name|module|config)"\s*:')
        tokens = (b'"Lambda"', b'"__lambda__"', b'"function_type"', b'"module"')
        spans: list[tuple[int, int]] = []
        loose: list[tuple[int, bytes]] = []
        saw_model_config = False
        decoder = json.JSONDecoder()
        pos = 0
        while pos < r.length:
            chunk = r.read_at(pos, step + 64)
            saw_model_config = saw_model_config or b"model_config" in chunk
            for m in starts.finditer(chunk):
                at = pos + m.start()
                if m.start() >= step or any(s <= at < e for s, e in spans):
                    continue
                text = r.read_at(at, 64 << 20).decode("latin-1")
                try:
                    obj, end = decoder.raw_decode(text)
                except (ValueError, RecursionError):
                    continue
                spans.append((at, at + end))
                self._keras_issues(obj, (*chain, f"Keras config at byte {at}"))
            for tok in tokens:
                i = chunk.find(tok)
                while 0 <= i < step:
                    loose.append((pos + i, tok))
                    i = chunk.find(tok, i + 1)
            pos += step
        for at, tok in loose:
            if not any(s <= at < e for s, e in spans) and tok != b'"module"':
                self.add(
                    "keras-lambda",
                    f"{tok.decode()} appears at byte {at} outside any parseable Keras config",
                    chain,
                )
        if saw_model_config and not spans:
            self.add(
                "not-scanned",
                "HDF5 file has a model_config attribute but no contiguous JSON config was found",
                chain,
            )


def _i64(b: bytes) -> tuple[int]:
    return (int.from_bytes(b, "little", signed=True),)


# --- LFS ----------------------------------------------------------------------------------


def _lfs_object(path: Path, oid: str) -> Path | None:
    """The object in the local LFS store of the repository that encloses ``path``."""
    from ml_integrity.core.hashing import _find_git_dir
    from ml_integrity.core.lfs import (
        LfsStore,  # only for pointers: keeps subprocess & co. out of start-up
    )

    gitdir = _find_git_dir(path.resolve().parent)
    if gitdir is None:
        return None
    common = gitdir / "commondir"
    if common.is_file():
        gitdir = (gitdir / common.read_text().strip()).resolve()
    obj = LfsStore.for_git_dir(gitdir).object_path(oid)
    return obj if obj.is_file() else None


# --- public API ------------------------------------------------------------------------------


def _sha256(f: BinaryIO) -> str:
    h = hashlib.sha256()
    f.seek(0)
    while chunk := f.read(1 << 20):
        h.update(chunk)
    return h.hexdigest()


def _verdict(report: FileReport) -> None:
    kinds = {f.kind for f in report.findings}
    if not kinds:
        report.verdict = "safe"
    elif kinds <= _NOT_SCANNED:
        report.verdict = "not-scanned"
    else:
        report.verdict = "unsafe"


def scan_file(
    path: str | Path, policy: ScanPolicy | None = None, *, display: str | None = None
) -> FileReport:
    """Scan one file; the report's findings say why it is not safe (empty when safe)."""
    policy = policy or ScanPolicy()
    p = Path(path)
    shown = display or fm.path_of(p)
    try:
        f = open(p, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        report = FileReport(shown, Format.DATA.value)
        scan = _FileScan(shown, policy)
        scan.add("not-scanned", f"could not read: {exc.strerror or exc}", ())
        report.findings = scan.findings
        _verdict(report)
        return report
    with f:
        return scan_stream(f, shown, policy, lfs_object=lambda oid: _lfs_object(p, oid))


def scan_stream(
    f: BinaryIO,
    display: str,
    policy: ScanPolicy | None = None,
    *,
    lfs_object: Callable[[str], Path | None] | None = None,
) -> FileReport:
    """Scan content from an open, seekable binary file (for example staged bytes).

    ``display`` names it in the report. When the content is a Git LFS
    pointer, ``lfs_object(oid)`` says where the object is (None: not
    present); without it every pointer counts as an object not present.
    """
    policy = policy or ScanPolicy()
    scan = _FileScan(display, policy)
    report = FileReport(display, Format.DATA.value)
    try:
        reader = FileReader(f)
        head = reader.peek(1024)
        fmt = sniff(head)
        if fmt is Format.LFS_POINTER:
            report.format = fmt.value
            _scan_lfs(lfs_object or (lambda _oid: None), head, scan, report, policy)
            return report
        if policy.allowed_sha256 and _sha256(f) in policy.allowed_sha256:
            report.verdict = "allowed"
            report.note = "allowed by sha256"
            report.format = fmt.value
            return report
        report.format = scan.scan_reader(reader, (), 0, top=True).value
    except OSError as exc:
        scan.add("not-scanned", f"could not read: {exc.strerror or exc}", ())
    except RecursionError:
        scan.add("not-scanned", "content nests too deeply to scan", ())
    report.findings = scan.findings
    _verdict(report)
    return report


def _scan_lfs(
    lfs_object: Callable[[str], Path | None],
    head: bytes,
    scan: _FileScan,
    report: FileReport,
    policy: ScanPolicy,
) -> None:
    from ml_integrity.core.lfs import parse_pointer

    ptr = parse_pointer(head)
    if ptr is None:
        scan.add("malformed", "not a valid Git LFS pointer (spec v1, under 1024 bytes)", ())
        report.findings = scan.findings
        _verdict(report)
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
    else:
        chain = (f"LFS object {ptr.oid[:12]}",)
        with open(obj, "rb") as f:
            reader = FileReader(f)
            if reader.length != ptr.size:
                scan.add(
                    "malformed",
                    f"LFS object is {reader.length} bytes, pointer says {ptr.size}",
                    chain,
                )
            else:
                fmt = scan.scan_reader(reader, chain, 0, top=True)
                report.note = f"scanned the local LFS object ({fmt.value})"
    report.findings = scan.findings
    _verdict(report)


def iter_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Every file under ``paths`` (directories recursed in sorted order, ``.git`` skipped).

    A path that does not exist is a :class:`UsageError`. Symbolic links to
    directories are not followed; symbolic links to files are scanned.
    """
    for raw in paths:
        p = Path(raw)
        if not p.exists() and not p.is_symlink():
            raise UsageError(f"no such file or directory: {raw}", path=raw, hint="check the path")
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if d != ".git")
                for name in sorted(files):
                    fp = Path(root) / name
                    if fp.is_file():
                        yield fp
        elif p.is_file():
            yield p


def scan_path(path: str | Path, policy: ScanPolicy | None = None) -> list[Finding]:
    """Findings for a file, or for every file under a directory (empty: all safe)."""
    return scan_paths([path], policy).findings


def scan_paths(
    paths: Iterable[str | Path],
    policy: ScanPolicy | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> ScanReport:
    """Scan files and directories; the report says, per file, what was found.

    ``progress`` is called with (bytes done, bytes in total) after each file.
    """
    policy = policy or ScanPolicy()
    files = list(iter_files(paths))
    report = ScanReport(policy)
    sizes = []
    for fp in files:
        try:
            sizes.append(fp.stat().st_size)
        except OSError:
            sizes.append(0)
    total = sum(sizes)
    done = 0
    for fp, size in zip(files, sizes, strict=True):
        report.files.append(scan_file(fp, policy))
        done += size
        if progress is not None:
            progress(done, total)
    return report
