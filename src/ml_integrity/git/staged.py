"""What the next commit holds: the checks behind the pre-commit hooks.

Everything here reads the **index** (honouring ``GIT_INDEX_FILE``, which
``git commit -a`` and ``git commit PATH`` point at a temporary index), never
the work tree:

- :func:`scan_staged` scans the staged bytes of files: a staged Git LFS
  pointer is scanned through its object in the local LFS store (where
  ``git add`` put it), a file with another smudge filter as a checkout would
  write it (``git cat-file --filters``), any other file as its blob;
- :func:`manifest_status` compares ``.ml-integrity/manifest.json`` as staged
  with the manifest of the staged LFS pointers;
- :func:`signature_verdict` checks that every staged LFS file is covered by
  a valid signature staged in ``.ml-integrity/*.sig``, under trust that
  comes from outside the change (:func:`check_trust_files` refuses trust
  files that the commit itself adds or changes).
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

from ml_integrity.core.fileio import write_atomic
from ml_integrity.errors import ConfigError, IntegrityError, ManifestDiff, ManifestError, UsageError
from ml_integrity.git.listing import LFS
from ml_integrity.git.repository import INDEX, MANIFEST_PATH, META_DIR, Repository
from ml_integrity.git.runner import Git, IndexEntry
from ml_integrity.git.scope import DEFAULT_RULES
from ml_integrity.git.verification import TreeVerdict, check_tree

if TYPE_CHECKING:
    from ml_integrity.scan.scanner import FileReport, ScanPolicy, ScanReport
    from ml_integrity.trust.policy import Policy

__all__ = [
    "FIX_MANIFEST",
    "NO_TRUST_HINT",
    "ManifestStatus",
    "check_trust_files",
    "manifest_status",
    "scan_staged",
    "signature_error",
    "signature_verdict",
    "staged_entries",
    "without_trust",
]

FIX_MANIFEST = "ml-integrity manifest --staged --write"
"""The command that brings the staged manifest up to date (and stages it)."""

_IN_MEMORY = 8 << 20
"""Staged blobs up to this size are scanned from memory; larger ones from a temporary file."""
_REGULAR = ("100644", "100755")
_NO_FILTER = ("unspecified", "unset", "set", "lfs")
_SHOWN = 50
"""At most this many paths are listed in an error (the count says how many in all)."""


# --- which files --------------------------------------------------------------------


def staged_entries(git: Git, paths: Sequence[str] = ()) -> list[IndexEntry]:
    """The regular files of the index under ``paths`` (repository-relative), else the
    files the next commit adds or changes. Symbolic links and submodules are left out.

    A path that matches nothing in the index is a :class:`UsageError`, and so
    is a path with unresolved merge conflicts.
    """
    if paths:
        entries = git.ls_files_stage(list(paths), literal=True)
        conflicted = sorted({e.path for e in entries if e.stage != 0})
        if conflicted:
            raise UsageError(
                f"{conflicted[0]} has unresolved merge conflicts",
                path=conflicted[0],
                hint="resolve the conflict and `git add` the file first",
            )
        covered = {e.path for e in entries}
        for e in entries:
            parts = e.path.split("/")
            covered.update("/".join(parts[:i]) for i in range(1, len(parts)))
        missing = [p for p in paths if p.rstrip("/") not in covered and p not in ("", ".")]
        if missing:
            raise UsageError(
                f"{missing[0]} is not in the index (nothing of it is staged)",
                path=missing[0],
                hint="stage it with `git add`, or leave it out: only staged content is scanned",
            )
    else:
        entries = git.staged_changes()
    return [e for e in entries if e.mode in _REGULAR and e.stage == 0]


# --- scanning staged bytes ------------------------------------------------------------


def scan_staged(
    repo: Repository,
    entries: Sequence[IndexEntry],
    policy: ScanPolicy,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> ScanReport:
    """Scan the staged content of ``entries`` (see the module docstring for what is read)."""
    from ml_integrity.scan.scanner import ScanReport, scan_stream

    report = ScanReport(policy)
    if not entries:
        return report
    sizes = repo.blob_sizes([e.oid for e in entries])
    filters = repo.git.check_attr("filter", [e.path for e in entries])
    store = repo.store

    def lfs_object(oid: str) -> Path | None:
        obj = store.object_path(oid)
        return obj if obj.is_file() else None

    total = sum(sizes.get(e.oid, 0) for e in entries)
    done = 0
    for e in entries:
        size = sizes.get(e.oid)
        if size is None:
            report.files.append(_unreadable(e.path, f"the staged blob {e.oid[:12]} is missing"))
            continue
        custom = filters.get(e.path, "unspecified") not in _NO_FILTER
        with _StagedContent(repo, e, size, custom) as f:
            if f is None:
                report.files.append(_unreadable(e.path, "cannot read the staged content"))
            else:
                report.files.append(scan_stream(f, e.path, policy, lfs_object=lfs_object))
        done += size
        if progress is not None:
            progress(done, total)
    return report


class _StagedContent:
    """The staged bytes of one file as a seekable binary file (None if unreadable)."""

    def __init__(self, repo: Repository, entry: IndexEntry, size: int, custom: bool) -> None:
        self.repo = repo
        self.entry = entry
        self.size = size
        self.custom = custom
        self._file: BinaryIO | None = None

    def __enter__(self) -> BinaryIO | None:
        e = self.entry
        if not self.custom and self.size <= _IN_MEMORY:
            data = self.repo.read_blob(e.oid)
            self._file = None if data is None else io.BytesIO(data)
            return self._file
        # a smudge filter other than LFS: as a checkout writes it; a large blob: on disk
        self._file = cast(BinaryIO, tempfile.TemporaryFile(prefix="ml-integrity-staged-"))
        spec = f":{e.path}" if self.custom else e.oid
        self.repo.git.write_object(spec, self._file, filters=self.custom)
        self._file.seek(0)
        return self._file

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()


def _unreadable(path: str, why: str) -> FileReport:
    from ml_integrity.scan.scanner import FileReport, Finding

    return FileReport(path, "data", "not-scanned", [Finding(path, "not-scanned", why)])


# --- the manifest -----------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestStatus:
    """The staged manifest against the staged LFS pointers."""

    files: int
    """Paths of the index the manifest covers."""
    diff: ManifestDiff = field(default_factory=ManifestDiff)
    problem: str | None = None
    """Why the staged manifest could not be compared (absent, invalid)."""

    @property
    def ok(self) -> bool:
        return self.problem is None and not self.diff

    def error(self) -> IntegrityError:
        if self.problem is not None:
            message = f"{MANIFEST_PATH} {self.problem}"
        else:
            counts = [
                f"{len(paths)} {label}"
                for label, paths in (
                    ("changed", self.diff.changed),
                    ("not staged", self.diff.missing),
                    ("not listed", self.diff.extra),
                )
                if paths
            ]
            message = f"{MANIFEST_PATH} does not match the staged files ({', '.join(counts)})"
        return IntegrityError(
            message,
            diff=_shown(self.diff),
            hint=f"run `{FIX_MANIFEST}` (it rewrites and stages the manifest), then commit "
            "again; if the repository is signed, sign again instead: "
            "`ml-integrity sign-repo --key KEY` also rewrites the manifest",
        )

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "manifest": MANIFEST_PATH,
            "files": self.files,
            "problem": self.problem,
            "diff": self.diff.to_json(),
        }


def manifest_status(repo: Repository) -> ManifestStatus:
    """Compare ``.ml-integrity/manifest.json`` in the index with the staged tree.

    Path, size and sha256 of every covered path must match (LFS files by
    their pointers, other files by their content); formats and annotations
    are free. No manifest is fine only while the repository is not under
    ml-integrity (no LFS file, no ``.ml-integrity/`` folder). A match is
    remembered for the exact index listing it was found for (the manifest's
    blob is part of it), so the next hook run on the same index reads nothing.
    """
    key = repo.index_digest()
    ok_file = repo.state_dir / "manifest-ok.json"
    try:
        remembered = json.loads(ok_file.read_bytes())
        if remembered["index"] == key:  # this very index (manifest included) matched before
            return ManifestStatus(int(remembered["files"]))
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        pass
    status = _manifest_status(repo)
    if status.ok:
        try:
            doc = {"index": key, "files": status.files}
            write_atomic(ok_file, json.dumps(doc).encode(), durable=False)
        except OSError:
            pass  # a cache: only slower
    return status


def _manifest_status(repo: Repository) -> ManifestStatus:
    expected: dict[str, tuple[int, str]] = {}
    lfs = 0
    excluded = DEFAULT_RULES.excluded
    for f in repo.tree_files(INDEX):
        name = f.name
        if not excluded(name):
            expected[name] = (f.size, f.digest)
            lfs += f.kind == LFS
    data = repo.read_blob(f":{MANIFEST_PATH}")
    if data is None:
        if not lfs and not (repo.root / META_DIR).is_dir():
            return ManifestStatus(len(expected))
        return ManifestStatus(len(expected), problem="is not staged")
    try:
        recorded = _recorded_entries(data)
    except ManifestError as exc:
        return ManifestStatus(len(expected), problem=f"is not a valid manifest: {exc.message}")
    if recorded == expected:
        return ManifestStatus(len(expected))
    missing = sorted(p for p in recorded if p not in expected)
    extra = sorted(p for p in expected if p not in recorded)
    changed = sorted(p for p in expected if p in recorded and recorded[p] != expected[p])
    notes = {
        p: f"staged sha256:{expected[p][1][:12]}... ({expected[p][0]} bytes), listed "
        f"sha256:{recorded[p][1][:12]}... ({recorded[p][0]} bytes)"
        for p in changed
    }
    notes.update(dict.fromkeys(missing, "listed, but no such file is staged"))
    notes.update(dict.fromkeys(extra, "staged, not listed"))
    return ManifestStatus(
        len(expected), ManifestDiff(tuple(missing), tuple(extra), tuple(changed), notes)
    )


def _nfc(path: str) -> str:
    return unicodedata.normalize("NFC", path)


def _recorded_entries(data: bytes) -> dict[str, tuple[int, str]]:
    """path -> (size, sha256) of a manifest document, validated as ``Manifest.from_json`` does.

    Written for speed on large manifests (whole-list checks, no object per
    entry); paths are compared with the index's exactly, so a path that is
    not clean never matches.
    """
    from ml_integrity.core.manifest import FORMAT_VERSION, MAX_MANIFEST_SIZE, loads_limited

    try:
        doc = loads_limited(data, max_size=MAX_MANIFEST_SIZE)
    except ValueError as exc:
        raise ManifestError(f"not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format_version") != FORMAT_VERSION:
        raise ManifestError(f"not a manifest of format_version {FORMAT_VERSION}")
    entries = doc.get("entries")
    if not isinstance(entries, list) or not all(type(item) is dict for item in entries):
        raise ManifestError("no 'entries' list of objects")
    version = doc.get("version", 0)
    if not isinstance(doc.get("repository", ""), str) or type(version) is not int:
        raise ManifestError("'repository' must be a string and 'version' an integer")
    paths = [item.get("path") for item in entries]
    sizes = [item.get("size") for item in entries]
    digests = [item.get("sha256") for item in entries]
    if not all(type(p) is str and p for p in paths):
        raise ManifestError("an entry has no path")
    if not all(type(n) is int and n >= 0 for n in sizes):
        raise ManifestError("an entry's 'size' is not a non-negative integer")
    if not all(type(d) is str for d in digests) or not _DIGESTS_RE.fullmatch(
        "".join(f"{d}\n" for d in digests)
    ):
        raise ManifestError("an entry's 'sha256' is not 64 lowercase hex digits")
    for item in entries:
        if "format" in item or "annotations" in item:
            annotations = item.get("annotations", {})
            if not isinstance(item.get("format", ""), str) or not (
                isinstance(annotations, dict)
                and all(type(k) is str and type(v) is str for k, v in annotations.items())
            ):
                raise ManifestError(f"entry {item['path']!r}: invalid 'format' or 'annotations'")
    out = dict(zip(paths, zip(sizes, digests, strict=True), strict=True))
    if len(out) != len(entries):
        raise ManifestError("a path is listed twice")
    return out


_DIGESTS_RE = re.compile(r"(?:[0-9a-f]{64}\n)*")


def _shown(diff: ManifestDiff) -> ManifestDiff:
    """At most ``_SHOWN`` paths of a diff, the rest counted in a last note."""
    total = len(diff.changed) + len(diff.missing) + len(diff.extra)
    if total <= _SHOWN:
        return diff
    left = _SHOWN
    kept: list[tuple[str, ...]] = []
    for paths in (diff.changed, diff.missing, diff.extra):
        kept.append(paths[:left])
        left -= len(kept[-1])
    changed, missing, extra = kept
    notes = {p: diff.notes[p] for group in kept for p in group if p in diff.notes}
    last = (changed + missing + extra)[-1]
    notes[last] = (notes.get(last, "") + f"; ... and {total - _SHOWN} more").lstrip("; ")
    return ManifestDiff(missing, extra, changed, notes)


# --- signatures -----------------------------------------------------------------------


def check_trust_files(git: Git, files: Iterable[str | Path]) -> None:
    """Refuse trust material that the commit being checked adds or changes.

    Files outside the work tree are fine. A file inside it must be identical
    in the work tree, the index and HEAD (or be in neither index nor HEAD:
    then it is not part of any commit). Raises :class:`ConfigError`.
    """
    root = git.root.resolve()
    inside: list[str] = []
    for f in files:
        absolute = Path(os.path.abspath(Path(f).expanduser()))
        try:
            rel = absolute.relative_to(root)
        except ValueError:
            try:
                rel = absolute.resolve().relative_to(root)
            except ValueError:
                continue
        inside.append(rel.as_posix())
    if not inside:
        return
    changed = git.changed_against_head(inside)
    if changed:
        raise ConfigError(
            f"the trust file {changed[0]} is part of the change being committed",
            path=changed[0],
            hint="trust cannot come from the change it checks: keep keys and policies outside "
            "the repository (git config ml-integrity.publicKey / ml-integrity.policy), or "
            "commit the reviewed trust change on its own with "
            "`SKIP=ml-integrity-signed git commit`",
        )


def signature_verdict(repo: Repository, policy: Policy | None = None) -> TreeVerdict:
    """Every staged path against the staged signatures (``.ml-integrity/*.sig``).

    Trust is the repository's (its ``verifier_factory``, ``trust_settings``
    or git config); a ``policy`` adds its rules (:func:`check_tree`). A file
    the commit adds or changes that Git LFS tracks (``filter=lfs``) but that
    is staged as raw content, not as a pointer, is refused too (``git lfs``
    is probably not installed: the raw content would bloat the repository).
    """
    verdict = check_tree(repo, INDEX, worktree=False, policy=policy)
    if not verdict.signed:
        return verdict
    pointers = verdict.pointers
    raw = [
        e.path
        for e in repo.git.staged_changes()
        if e.mode in _REGULAR
        and unicodedata.normalize("NFC", e.path) not in pointers
        and not e.path.startswith(META_DIR + "/")
    ]
    for path, value in repo.git.check_attr("filter", raw).items():
        if value == "lfs":
            verdict.refused[path] = (
                "Git LFS tracks it (filter=lfs), but it is staged as raw content, not as an "
                "LFS pointer: run `git lfs install`, then `git add` it again"
            )
            verdict.kinds[path] = "changed"
    return verdict


NO_TRUST_HINT = (
    "no trust is configured, so no signature can count: name the signer's public key once, "
    "`git config ml-integrity.publicKey /path/to/signer.pub` (or ml-integrity.certChain "
    "/path/to/root-ca.pem, or a policy: git config ml-integrity.policy FILE); if nothing "
    "is signed yet, sign what is staged with `ml-integrity sign-repo --key KEY` too"
)
"""The fix when a staged check fails and no trust root is configured at all."""


def without_trust(err: IntegrityError) -> IntegrityError:
    """``err`` (a staged signature failure) when no trust is configured: the fix is the
    git config setting, not signing again."""
    err.message = f"no trust configured; {err.message}"
    err.hint = NO_TRUST_HINT
    return err


def signature_error(verdict: TreeVerdict) -> IntegrityError:
    """The failure of :func:`signature_verdict`: which staged files, and how to sign them.

    Files the signatures do not name are listed as ``extra``, files whose
    staged content differs from what was signed as ``changed``.
    """
    error = verdict.verified.error
    extra = tuple(p for p in sorted(verdict.refused) if error or verdict.kinds.get(p) == "extra")
    missing = tuple(p for p in sorted(verdict.refused) if verdict.kinds.get(p) == "missing")
    changed = tuple(p for p in sorted(verdict.refused) if p not in extra and p not in missing)
    notes = {
        p: "not signed" if r == error or r.startswith(f"{p} is not in the signed manifest") else r
        for p, r in verdict.refused.items()
    }
    message = f"{len(verdict.refused)} staged path(s) are not covered by a valid signature"
    if not verdict.refused and verdict.problem:
        message = f"the staged signatures do not verify the index: {verdict.problem}"
    elif error:
        message += f": {error}"
    elif verdict.problem:
        message += f": {verdict.problem}"
    return IntegrityError(
        message,
        diff=_shown(ManifestDiff(missing=missing, extra=extra, changed=changed, notes=notes)),
        hint="sign what is staged: `ml-integrity sign-repo --key KEY` (it writes and stages "
        f"{META_DIR}/manifest.json and the signature), then commit again",
    )
