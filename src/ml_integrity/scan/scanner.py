"""Scanning files for code-carrying content: the use case behind ``ml-integrity scan``.

Safe only by positive proof. Every stream (a file, a container member, a
decompressed stream) is looked at in every way a loader could read it:

- its **pickle view** (:mod:`.pickles`): the real C and pure-Python
  unpicklers, run inert, from its first byte, stacked pickles until the end;
- its **container views**: zip (:mod:`.zips`), tar (:mod:`.tars`),
  compression (:mod:`.compression`), each member scanned in turn;
- its **format views**: safetensors, ``.npy`` (:mod:`.npy`), HDF5/Keras
  (:mod:`.keras`), GGUF, ONNX, images and text (:mod:`.structured`).

A stream is safe when it is no pickle and some format or container view
validates it completely (containers: every member safe), or when it is a
pickle the policy accepts. Anything else is unknown: unsafe under
``--pickle block``, not scanned under ``--pickle allowlist``.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from ml_integrity.scan import containers as ct
from ml_integrity.scan import inert, structured
from ml_integrity.scan.compression import detect
from ml_integrity.scan.findings import (
    RULES,
    FileReport,
    Finding,
    ScanPolicy,
    ScanReport,
    verdict_of,
)
from ml_integrity.scan.folders import iter_files, path_of, walk
from ml_integrity.scan.keras import find_hdf5, hdf5_config_issues, keras_config_issues
from ml_integrity.scan.lfs import LFS_PREFIXES, lfs_object_of, scan_lfs
from ml_integrity.scan.npy import NPY_MAGIC, parse_npy_header
from ml_integrity.scan.pickles import SMALL, PickleView, Prefetch, Prefetched, pickle_view
from ml_integrity.scan.readers import BytesReader, DecompressionLimitError, FileReader, ParseError
from ml_integrity.scan.safetensors import looks_like_safetensors, validate_safetensors
from ml_integrity.scan.tars import is_tar, iter_tar
from ml_integrity.scan.zips import read_zip_entries

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

Chain = tuple[str, ...]
LfsLookup = Callable[[Path, str], Path | None]
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_BATCH = 64
_LEGACY_NAMES = ("magic number", "protocol version", "sys_info", "object", "storage keys")


class _FileScan:
    def __init__(self, path: str, policy: ScanPolicy) -> None:
        self.path = path
        self.policy = policy
        self.findings: list[Finding] = []
        self._seen: set[tuple[str, str | None, str]] = set()

    def add(
        self,
        kind: str,
        message: str,
        chain: Chain,
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

    def unknown(self, message: str, chain: Chain) -> None:
        kind = "unknown-format" if self.policy.pickle == "block" else "not-scanned"
        self.add(kind, message, chain)

    # one stream ------------------------------------------------------------------
    def scan(
        self,
        r: FileReader,
        chain: Chain,
        depth: int,
        *,
        name: str = "",
        nested: bool = False,
        ready: Prefetched | None = None,
    ) -> str:
        """Scan one stream in every view; return the label of what it was found to be.

        ``nested``: a constant inside a pickle that looks like a pickle, zip or
        ``.npy``; only what could run is reported (it is data otherwise).
        """
        if depth > self.policy.max_depth:
            self.add("not-scanned", f"containers nest deeper than {self.policy.max_depth}", chain)
            return "data"
        view = pickle_view(r, ready)
        labels: list[str] = []
        if view.status == "not-scanned":
            self.add("not-scanned", f"pickle analysis incomplete: {view.reason}", chain)
            labels.append("pickle")
        elif view.status == "pickle":
            self.report_pickle(view, chain)
            self.scan_constants(r, view, chain, depth)
            labels.append("pickle")
        proven = bool(labels)
        try:
            container = self.containers(r, chain, depth, name=name)
        except DecompressionLimitError as exc:
            self.add("not-scanned", exc.message, chain)
            return labels[0] if labels else "data"
        if container is not None:
            labels.append(container)
            proven = True
        elif not labels and nested:
            if r.read_at(0, 8).startswith(NPY_MAGIC):
                self.scan_npy(r, chain, depth)
            return "data"
        elif not labels:
            leaf = self.leaf(r, chain, depth, name=name)
            if leaf is not None:
                labels.append(leaf)
                proven = True
        if view.status == "constant":
            self.scan_constants(r, view, chain, depth)
        if view.status == "constant" and (not proven or labels[-1] == "text"):
            if self.policy.pickle == "block":
                self.add(
                    "pickle-blocked",
                    f"pickle (protocol {view.protocol}) of constants refused by policy pickle: "
                    "block",
                    chain,
                    offset=0,
                )
            return "pickle"
        if not proven and view.walks and r.read_at(0, 2)[:1] == b"\x80":
            why = next((i.message for i in view.walks[0].issues), "it does not load")
            self.add("malformed", f"starts like a pickle (PROTO) but {why}", chain)
            return "pickle"
        if not proven:
            self.unknown("not a pickle, and not a format validated as unable to carry code", chain)
            return "data"
        return labels[-1] if len(labels) > 1 and labels[0] == "pickle" else labels[0]

    def containers(self, r: FileReader, chain: Chain, depth: int, *, name: str) -> str | None:
        head = r.read_at(0, 64)
        found: str | None = None
        fmt = detect(head)
        if fmt is not None:
            try:
                inner = ct.unpack(fmt, r.fresh(), self.policy.max_decompressed_bytes)
            except ParseError:
                inner = None
            if inner is not None:
                self.scan(inner, (*chain, f"{fmt} stream"), depth + 1)
                found = fmt
        tail = r.read_at(max(0, r.length - 65557 - 20), 65557 + 20)
        if b"PK\x05\x06" in tail or head.startswith(b"PK\x03\x04"):
            label = self.scan_zip(
                r, chain if head.startswith(b"PK") else (*chain, "zip view"), depth
            )
            found = found or label
        if is_tar(r):
            found = found or self.scan_tar(r, chain, depth)
        return found

    def leaf(self, r: FileReader, chain: Chain, depth: int, *, name: str) -> str | None:
        head = r.read_at(0, 16)
        if head.startswith(NPY_MAGIC):
            return self.scan_npy(r, chain, depth)
        if looks_like_safetensors(head, r.length):
            try:
                validate_safetensors(r)
                return "safetensors"
            except ParseError as exc:
                self.add("malformed", exc.message, chain)
                return "safetensors"
        if find_hdf5(r):
            if not name.endswith(".weights.h5"):
                for kind, message, where in hdf5_config_issues(r):
                    self.add(kind, message, chain, detail=where)
            return "hdf5"
        for validate in structured.plausible(r.read_at(0, 64)):
            try:
                return validate(r)
            except ParseError:
                continue
        return None

    # pickles -----------------------------------------------------------------------
    def scan_constants(self, r: FileReader, v: PickleView, chain: Chain, depth: int) -> None:
        for c in v.nested():
            sub = (*chain, c.label)
            if c.data is not None:
                self.scan(BytesReader(c.data), sub, depth + 1, nested=True)
            elif c.start + c.length <= r.length:
                window = FileReader(r._f, r._start + c.start, c.length)
                self.scan(window, sub, depth + 1, nested=True)

    @staticmethod
    def _segment(v: PickleView, offset: int | None) -> str | None:
        """Which of stacked pickles an offset is in, as a label (None: the first)."""
        if offset is None:
            return None
        for i, a in enumerate(v.walks):
            if a.start <= offset < max(a.end, a.start + 1):
                if v.walks[0].result == _LEGACY_MAGIC and i < len(_LEGACY_NAMES):
                    return f"{_LEGACY_NAMES[i]} pickle"
                return f"pickle #{i + 1} (stacked)" if i else None
        return None

    def report_pickle(self, v: PickleView, chain: Chain) -> None:
        unsafe = False
        for g in v.reached:
            if g.allowed:
                continue
            unsafe = True
            where = (
                f"{g.ref.opcode} at offset {g.ref.offset}" if g.ref else f"reached by the {g.by}"
            )
            written = f"{g.module}.{g.name}"
            spelled = f" (written {written})" if written != g.qualname else ""
            seg = self._segment(v, g.ref.offset if g.ref else None)
            self.add(
                "unsafe-global",
                f"pickle imports {g.qualname}{spelled} ({where})",
                (*chain, seg) if seg else chain,
                offset=g.ref.offset if g.ref else None,
                detail=g.qualname,
            )
        for code in v.extensions:
            unsafe = True
            self.add(
                "unresolved-global",
                f"extension-registry opcode (code {code}) imports an unnamed global",
                chain,
            )
        for i, a in enumerate(v.walks):
            if i > v.loads or (i == v.loads and not a.significant):
                continue  # past what the unpicklers load: they fail there too
            seg = self._segment(v, a.start)
            for issue in a.issues:
                unsafe = True
                at = (*chain, seg) if seg else chain
                self.add(issue.kind, issue.message, at, offset=issue.offset)
        if self.policy.pickle == "allowlist" and not unsafe and v.walked < v.loads:
            self.add(
                "malformed",
                "the unpickler loads more than the opcode walk can follow; only pickles the "
                "walk proves are allowed",
                chain,
            )
            unsafe = True
        if self.policy.pickle == "block" and not unsafe:
            names = sorted({g.qualname for g in v.reached})
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            self.add(
                "pickle-blocked",
                f"pickle (protocol {v.protocol}) refused by policy pickle: block"
                + (f"; it imports {shown}" if names else ""),
                chain,
                offset=0,
            )

    # npy ---------------------------------------------------------------------------
    def scan_npy(self, r: FileReader, chain: Chain, depth: int) -> str:
        try:
            header = parse_npy_header(r.fresh())
        except ParseError as exc:
            self.add("malformed", exc.message, chain)
            return "npy"
        if header.has_object is False:
            return "npy"
        data = FileReader(r._f, r._start + header.data_offset, r.length - header.data_offset)
        label = (*chain, "object array")
        view = pickle_view(data)
        if view.status == "pickle":
            self.report_pickle(view, label)
        elif view.status == "not-scanned":
            self.add("not-scanned", f"pickle analysis incomplete: {view.reason}", label)
        return "npy"

    # zip ---------------------------------------------------------------------------
    def scan_zip(self, fr: FileReader, chain: Chain, depth: int) -> str | None:
        listing = read_zip_entries(fr)
        if not listing.entries:
            if fr.read_at(0, 4) == b"PK\x03\x04":
                for p in listing.problems:
                    self.add("malformed", f"zip: {p}", chain)
                return "zip"
            return None
        for p in listing.problems:
            self.add("malformed", f"zip: {p}", chain)
        names = [n for e in listing.entries for n in e.names]
        torch = any(n == "data.pkl" or n.endswith("/data.pkl") for n in names)
        keras = not torch and "config.json" in names
        npz = all(n.endswith(".npy") for n in names)
        if torch and listing.disagree:
            self.add("ambiguous-container", f"torch zip: {listing.disagree[0]}", chain)
        for e in listing.entries:
            label = e.names[0]
            if len(e.names) > 1:
                label += " (also named " + ", ".join(repr(n) for n in e.names[1:]) + ")"
            if e.source == "local":
                label += " [local header view]"
            sub = (*chain, label)
            if torch and all(ct.TORCH_RAW.search(n) for n in e.names):
                continue  # tensor data and version markers: torch reads them as raw bytes
            if e.flags & 1:
                self.add("not-scanned", "encrypted zip entry", sub)
                continue
            try:
                member = ct.zip_member(fr, e, self.policy.max_decompressed_bytes)
                if keras and "config.json" in e.names:
                    self.scan_keras_config(member, sub)
                    continue
                self.scan(member, sub, depth + 1, name=e.names[0])
            except DecompressionLimitError as exc:
                self.add("not-scanned", exc.message, sub)
            except ParseError as exc:
                self.add("not-scanned", exc.message, sub)
        if torch:
            return "pytorch-zip"
        if keras:
            return "keras"
        return "npz" if npz else "zip"

    def scan_keras_config(self, r: FileReader, chain: Chain) -> None:
        import json

        data = r.read_at(0, 64 << 20)
        try:
            config = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            self.add("malformed", "Keras config.json is not valid JSON", chain)
            return
        for issue in keras_config_issues(config):
            self.add(issue.kind, f"{issue.message} at {issue.where}", chain, detail=issue.where)

    # tar ---------------------------------------------------------------------------
    def scan_tar(self, r: FileReader, chain: Chain, depth: int) -> str:
        fmt = "tar"
        try:
            for m in iter_tar(r):
                sub = (*chain, m.name)
                base = m.name.rsplit("/", 1)[-1]
                if base in ("storages", "tensors"):
                    fmt = "pytorch-legacy-tar"
                    self.scan_legacy_records(m.reader, sub, base)
                else:
                    self.scan(m.reader, sub, depth + 1, name=m.name)
        except ParseError as exc:
            self.add("malformed", exc.message, chain)
        return fmt

    def scan_legacy_records(self, r: FileReader, chain: Chain, base: str) -> None:
        try:
            for i, (start, end) in enumerate(ct.legacy_records(r.fresh(), base)):
                view = pickle_view(FileReader(r._f, r._start + start, end - start))
                if view.status == "pickle":
                    self.report_pickle(view, (*chain, f"record #{i}"))
                elif view.status == "not-scanned":
                    self.add("not-scanned", f"pickle analysis incomplete: {view.reason}", chain)
        except ParseError as exc:
            self.add("malformed", exc.message, chain)


# --- public API ------------------------------------------------------------------------------


def _sha256(f: BinaryIO) -> str:
    import hashlib

    h = hashlib.sha256()
    f.seek(0)
    while chunk := f.read(1 << 20):
        h.update(chunk)
    return h.hexdigest()


def scan_file(
    path: str | Path,
    policy: ScanPolicy | None = None,
    *,
    display: str | None = None,
    lfs_object: Callable[[str], Path | None] | None = None,
) -> FileReport:
    """Scan one file; the report's findings say why it is not safe (empty when safe).

    ``lfs_object(oid)``: where a Git LFS pointer's object is (default: the
    enclosing repository's ``.git/lfs`` store, see :func:`scan_stream`).
    """
    policy = policy or ScanPolicy()
    p = Path(path)
    shown = display or path_of(p)
    try:
        f = open(p, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        report = FileReport(shown, "data")
        scan = _FileScan(shown, policy)
        scan.add("not-scanned", f"could not read: {exc.strerror or exc}", ())
        report.findings = scan.findings
        verdict_of(report)
        return report
    with f:
        lookup = lfs_object or functools.partial(lfs_object_of, p)
        return scan_stream(f, shown, policy, lfs_object=lookup)


def _open(p: Path) -> BinaryIO | None:
    """The file, read into memory when it is small (every later read is then free)."""
    try:
        f = open(p, "rb")  # noqa: SIM115 - closed by the caller
    except OSError:
        return None
    try:
        if os.fstat(f.fileno()).st_size <= SMALL:
            with f:
                data = f.read(SMALL + 1)
            if len(data) <= SMALL:
                return io.BytesIO(data)
            f = open(p, "rb")  # noqa: SIM115 - it grew: read it from disk
    except OSError:
        f.close()
        return None
    return f


class _Batch:
    """Files whose top-level pickle views are asked of the child in one request, made
    before the previous batch is scanned (the child works while the parent does)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.files = [_open(p) for p in paths]
        self.ask = Prefetch([FileReader(f) for f in self.files if f is not None])

    def scan(self, policy: ScanPolicy, lfs_object: LfsLookup | None) -> list[FileReport]:
        try:
            ready = iter(self.ask.results())
            out = []
            for p, f in zip(self.paths, self.files, strict=True):
                lookup = functools.partial(lfs_object or _lfs_of, p)
                if f is None:
                    out.append(scan_file(p, policy, lfs_object=lookup))
                    continue
                out.append(
                    scan_stream(f, path_of(p), policy, lfs_object=lookup, _ready=next(ready))
                )
            return out
        finally:
            self.close()

    def close(self) -> None:
        for f in self.files:
            if f is not None:
                f.close()


def _lfs_of(path: Path, oid: str) -> Path | None:
    return lfs_object_of(path, oid)


def scan_stream(
    f: BinaryIO,
    display: str,
    policy: ScanPolicy | None = None,
    *,
    lfs_object: Callable[[str], Path | None] | None = None,
    _ready: Prefetched | None = None,
) -> FileReport:
    """Scan content from an open, seekable binary file (for example staged bytes).

    ``display`` names it in the report. When the content is a Git LFS
    pointer, ``lfs_object(oid)`` says where the object is (None: not
    present); without it every pointer counts as an object not present.
    """
    policy = policy or ScanPolicy()
    scan = _FileScan(display, policy)
    report = FileReport(display, "data")
    try:
        reader = FileReader(f)
        head = reader.read_at(0, 1024)
        if head.startswith(LFS_PREFIXES) and reader.length < 1024:
            report.format = "lfs-pointer"
            scan_lfs(lfs_object or (lambda _oid: None), head, scan, report, policy)
            if report.verdict in ("allowed", "skipped"):
                return report
        elif policy.allowed_sha256 and _sha256(f) in policy.allowed_sha256:
            report.verdict = "allowed"
            report.note = "allowed by sha256"
            return report
        else:
            report.format = scan.scan(reader, (), 0, ready=_ready)
    except OSError as exc:
        scan.add("not-scanned", f"could not read: {exc.strerror or exc}", ())
    except RecursionError:
        scan.add("not-scanned", "content nests too deeply to scan", ())
    report.findings = scan.findings
    verdict_of(report)
    return report


def scan_path(path: str | Path, policy: ScanPolicy | None = None) -> list[Finding]:
    """Findings for a file, or for every file under a directory (empty: all safe)."""
    return scan_paths([path], policy).findings


def scan_paths(
    paths: Iterable[str | Path],
    policy: ScanPolicy | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    lfs_object: LfsLookup | None = None,
) -> ScanReport:
    """Scan files and directories; the report says, per file, what was found.

    Folders the walk refuses (a symbolic link out of the root, a nested
    ``.git``) are reported as not scanned. ``progress`` is called with
    (bytes done, bytes in total) after each file. ``lfs_object(path, oid)``
    says where the object of the LFS pointer ``path`` is (None: not present);
    by default it is looked up in the ``.git/lfs`` store of the repository
    that encloses the file (the CLI passes one that honours ``lfs.storage``).
    """
    policy = policy or ScanPolicy()
    inert.start()  # the child starts while the folders are walked
    report = ScanReport(policy)
    items = list(walk(paths))
    sizes = []
    for item in items:
        try:
            sizes.append(item.path.stat().st_size if item.refused is None else 0)
        except OSError:
            sizes.append(0)
    total = sum(sizes)
    done = 0
    scanned: dict[int, FileReport] = {}
    plain = [i for i, item in enumerate(items) if item.refused is None and item.skipped is None]
    chunks = [plain[k : k + _BATCH] for k in range(0, len(plain), _BATCH)]
    batch = _Batch([items[i].path for i in chunks[0]]) if chunks else None
    try:
        for k, chunk in enumerate(chunks):
            current = batch
            assert current is not None
            # the next request goes out first: the child analyses it during this scan
            batch = _Batch([items[i].path for i in chunks[k + 1]]) if k + 1 < len(chunks) else None
            scanned.update(zip(chunk, current.scan(policy, lfs_object), strict=True))
    finally:
        if batch is not None:
            batch.close()
    for n, (item, size) in enumerate(zip(items, sizes, strict=True)):
        if item.refused is not None:
            shown = path_of(item.path)
            fr = FileReport(shown, "folder")
            fr.findings = [Finding(shown, "not-scanned", item.refused)]
            verdict_of(fr)
            report.files.append(fr)
        elif item.skipped is not None:
            report.files.append(
                FileReport(path_of(item.path), "folder", "skipped", note=item.skipped)
            )
        else:
            report.files.append(scanned[n])
        done += size
        if progress is not None:
            progress(done, total)
    return report
