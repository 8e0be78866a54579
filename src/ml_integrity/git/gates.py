"""The gates of the filter proxy and of the transfer agent.

:class:`SmudgeVerifier` is the :class:`~ml_integrity.git.filter.SmudgeGate`
of ``ml-integrity filter-process``: a smudge of (path, oid) is allowed when
the verdict of the tree being checked out (:func:`~.verification.check_tree`)
allows that oid at that path. :class:`DownloadGate` is the transfer agent's,
which git-lfs tells only the oid: a download is allowed when a verified tree
of HEAD, FETCH_HEAD or a remote-tracking ref holds that oid at a path that is
signed for it (so pointers swapped between two signed paths fetch nothing).
The agent's refusals are recorded (:meth:`DownloadGate.refused`) so that
``clone`` and ``pull`` can tell them (exit 1) from git-lfs's own failures, such
as an object missing on the server (exit 3): git-lfs reports both alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from ml_integrity.git.filter import Refusal
from ml_integrity.git.repository import INDEX, RECOVER_COMMAND, Repository
from ml_integrity.git.verification import TreeVerdict, check_tree

__all__ = [
    "DownloadGate",
    "RefuseAll",
    "SmudgeVerifier",
    "download_refusals",
    "forget_download_refusals",
    "reported_file",
    "take_reported",
]

REFUSALS = "download-refusals"
"""In the state dir: one JSON line per download the transfer agent refused."""
_MAX_REFUSALS = 1 << 20


def reported_file(repo: Repository, group: int) -> Path:
    """The refusals the filter said in one process group (a git command and its
    children); the hook that git runs after the checkout reads them."""
    return repo.git.common_dir / "ml-integrity" / f"reported-{group}"


def take_reported(repo: Repository, group: int, *, since: float | None) -> set[tuple[str, str]]:
    """(path, oid) pairs the filter already said in process group ``group``, written
    after ``since`` (when the git command started, if known); every record is removed."""
    mine = reported_file(repo, group)
    said: set[tuple[str, str]] = set()
    try:
        if since is not None and mine.stat().st_mtime < since:
            raise FileNotFoundError(mine)  # left by an earlier command: say everything
        for line in mine.read_text(encoding="utf-8").splitlines():
            oid, _, path = line.partition(" ")
            said.add((path, oid))
    except OSError:
        pass
    for old in mine.parent.glob("reported-*"):
        with contextlib.suppress(OSError):
            old.unlink()
    return said


class SmudgeVerifier:
    """The :class:`~ml_integrity.git.filter.SmudgeGate` of ``ml-integrity filter-process``."""

    def __init__(
        self,
        repo: Repository,
        *,
        strict: bool,
        allow_file: Path | None = None,
        stderr: TextIO | None = None,
        recover_command: str = RECOVER_COMMAND,
        reported_file: Path | None = None,
    ) -> None:
        self.repo = repo
        self.strict = strict
        self.recover_command = recover_command
        self.reported_file = reported_file
        """Where the refused paths are listed for the hook that git runs next, so that
        each refusal is said once per command (:func:`take_reported`)."""
        self.allow_file = allow_file
        self.stderr = stderr or sys.stderr
        self._index_source: str | None = None
        self._allowed: set[str] = set()
        self._allow_handle: TextIO | None = None
        self._verdicts: dict[str, TreeVerdict] = {}
        self._signed_oids: dict[str, set[str]] = {}

    def _source(self, meta: Mapping[str, str]) -> str:
        treeish = meta.get("treeish")
        if treeish:
            return treeish
        if self._index_source is None:
            # A path checkout (`git checkout -- f`, `git restore`): no treeish.
            # The index's signatures, else HEAD's.
            self._index_source = INDEX if self.repo.signature_blobs(INDEX) else "HEAD"
        return self._index_source

    def verdict(self, source: str) -> TreeVerdict:
        """The verdict of the tree being checked out (once per tree)."""
        got = self._verdicts.get(source)
        if got is None:
            got = self._verdicts[source] = check_tree(self.repo, source, worktree=False)
        return got

    def check(self, path: str, oid: str, size: int, meta: Mapping[str, str]) -> Refusal | None:
        """May ``path`` be smudged to the content ``oid``? Decided by (path, oid):
        the tree's verdict must allow exactly this content at exactly this path."""
        source = self._source(meta)
        verdict = self.verdict(source)
        name = unicodedata.normalize("NFC", path)
        if verdict.allows(name, oid):
            self._allow(oid)
            return None
        reason = (
            verdict.refused.get(name)
            or verdict.problem
            or verdict.verified.error
            or (
                f"sha256:{oid[:12]}... is not what {verdict.source} holds at this path"
                if name in verdict.files
                else f"not in the signed manifest of {verdict.verified.source}"
            )
        )
        # An unsigned tree says nothing about the object, and an object that the
        # tree holds at another path, signed for that path, is a signed one: keep
        # those in the store. Anything else leaves the store, so that `git lfs pull`
        # cannot write it at this path either.
        signed = self._signed_oids.get(source)
        if signed is None:
            signed = self._signed_oids[source] = verdict.allowed_lfs_oids()
        return Refusal(reason, quarantine=verdict.verified.error is None and oid not in signed)

    def _allow(self, oid: str) -> None:
        if self.allow_file is None or oid in self._allowed:
            return
        self._allowed.add(oid)
        if self._allow_handle is None:
            self._allow_handle = open(self.allow_file, "a")  # noqa: SIM115 - closed in close()
        self._allow_handle.write(oid + "\n")
        self._allow_handle.flush()  # the transfer agent reads it while we run

    def close(self) -> None:
        if self._allow_handle is not None:
            self._allow_handle.close()
            self._allow_handle = None

    def refused(
        self, path: str, oid: str, size: int, refusal: Refusal, meta: Mapping[str, str]
    ) -> None:
        where = ""
        if refusal.quarantine:
            moved = self.repo.quarantine(oid, path, refusal.reason, self._source(meta))
            if moved is not None:
                where = f"; the object was moved to {os.path.relpath(moved, self.repo.root)}"
        action = "checkout aborted (ml-integrity.strict)" if self.strict else "kept the LFS pointer"
        self.stderr.write(
            f"ml-integrity: REFUSED {path}: {refusal.reason}; {action}{where}; "
            f"to recover: `{self.recover_command}` once the content is signed\n"
        )
        self.stderr.flush()
        if self.reported_file is not None:
            self.reported_file.parent.mkdir(parents=True, exist_ok=True)
            with open(self.reported_file, "a", encoding="utf-8") as out:
                out.write(f"{oid} {path}\n")


class RefuseAll:
    """The gate when the trust settings themselves cannot be used (a policy that does
    not parse, a key file that is gone): every file is refused with that reason and
    keeps its pointer, in strict mode too; the checkout is never left half-done."""

    strict = False

    def __init__(self, reason: str, stderr: TextIO | None = None) -> None:
        self.reason = reason
        self.stderr = stderr or sys.stderr

    def check(self, path: str, oid: str, size: int, meta: Mapping[str, str]) -> Refusal | None:
        return Refusal(self.reason, quarantine=False, internal=True)

    def refused(
        self, path: str, oid: str, size: int, refusal: Refusal, meta: Mapping[str, str]
    ) -> None:
        self.stderr.write(f"ml-integrity: REFUSED {path}: {refusal.reason}; kept the LFS pointer\n")
        self.stderr.flush()


# --- the transfer agent's decisions -------------------------------------------------


class DownloadGate:
    """Allows downloads of oids in a verified manifest of HEAD, FETCH_HEAD or a remote ref.

    Oids that the filter proxy already verified against the tree being checked
    out arrive through ``allow_file`` (the filter sets it for its git-lfs).
    """

    def __init__(self, repo: Repository, allow_file: Path | None = None) -> None:
        self.repo = repo
        self.allow_file = allow_file
        self._allowed: set[str] | None = None
        self._errors: list[str] = []
        self._file_oids: set[str] = set()
        self._file_offset = 0
        self._head_tree: str | None = None

    def _in_file(self, oid: str) -> bool:
        """Is ``oid`` in the allow file? (read incrementally: the filter appends to it)."""
        if oid in self._file_oids:
            return True
        if self.allow_file is None:
            return False
        try:
            with open(self.allow_file, "rb") as f:
                f.seek(self._file_offset)
                data = f.read()
        except OSError:
            return False
        end = data.rfind(b"\n") + 1  # only whole lines
        self._file_offset += end
        self._file_oids.update(data[:end].decode("ascii", "replace").split())
        return oid in self._file_oids

    def _from_refs(self) -> set[str]:
        """Oids that a verified tree of a trusted ref holds at a path signed for it, less
        the oids HEAD holds at a refused path (git-lfs would write them there: HEAD's
        checkout is what ``git lfs pull`` does)."""
        if self._allowed is None:
            allowed: set[str] = set()
            head_refused: set[str] = set()
            head_ok: set[str] = set()
            for rev in self.trusted_revs():
                verdict = check_tree(self.repo, rev, worktree=False)
                if verdict.verified.error is None:
                    allowed |= verdict.allowed_lfs_oids()
                else:
                    self._errors.append(verdict.verified.error)
                if rev == self._head_tree:
                    head_ok = verdict.allowed_lfs_oids()
                    head_refused = {
                        f.digest
                        for n, f in verdict.files.items()
                        if n in verdict.refused or verdict.problem is not None
                    }
            self._allowed = allowed - (head_refused - head_ok)
        return self._allowed

    def trusted_revs(self) -> list[str]:
        revs = []
        self._head_tree = self.repo.git.rev_parse("HEAD^{tree}")
        if self._head_tree:
            revs.append("HEAD")
        fetch_head = self.repo.git.git_dir / "FETCH_HEAD"
        try:
            for line in fetch_head.read_text().splitlines():
                oid = line.split("\t", 1)[0].strip()
                if oid and self.repo.git.rev_parse(oid + "^{commit}"):
                    revs.append(oid)
        except OSError:
            pass
        out = self.repo.git.text(["for-each-ref", "--format=%(objectname)", "refs/remotes"])
        revs += [o for o in out.split() if o]
        seen: set[str] = set()
        unique = []
        for r in revs:
            resolved = self.repo.git.rev_parse(r + "^{tree}") or r
            if resolved not in seen:
                seen.add(resolved)
                unique.append(resolved)
        return unique

    def allow_download(self, oid: str, size: int) -> str | None:
        if self._in_file(oid) or oid in self._from_refs():
            return None
        return (
            "no verified tree (HEAD, FETCH_HEAD, remote-tracking refs) holds it at a path "
            "signed for it"
        )

    def refused(self, oid: str, reason: str) -> None:
        """Record that the transfer agent refused ``oid`` (an integrity failure: the
        gate, or lfs_crypto's checks), for :func:`download_refusals`."""
        path = self.repo.state_dir / REFUSALS
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"oid": oid, "reason": reason}) + "\n")
        except OSError:
            pass  # the refusal stands; only clone's and pull's exit code would be 3, not 1


def download_refusals(repo: Repository) -> dict[str, str]:
    """oid -> reason of the downloads the transfer agent refused since
    :func:`forget_download_refusals` (a fresh clone has none)."""
    try:
        with open(repo.state_dir / REFUSALS, "rb") as f:
            data = f.read(_MAX_REFUSALS)
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in data.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue  # a line cut short
        if isinstance(doc, dict) and isinstance(doc.get("oid"), str):
            out[doc["oid"]] = str(doc.get("reason", "refused"))
    return out


def forget_download_refusals(repo: Repository) -> None:
    try:
        (repo.state_dir / REFUSALS).unlink()
    except OSError:
        pass
