"""Quarantine and recovery: refused content leaves the work tree, nothing is lost.

The filter proxy keeps the pointer of a refused LFS file. Content that git
writes without the filter (an ordinary blob, a symbolic link: for instance
after a commit changed ``.gitattributes`` so that a signed LFS path is an
ordinary file) is put right afterwards by the hooks and ``ml-integrity pull``
(:func:`restore_refused`): the signed content goes back when it can be found
(the previous commit's blob, or the LFS object in the local store), else the
signed pointer; a refused file that nothing signed leaves the work tree for
``.git/ml-integrity/quarantine/`` (never deleted). :func:`prepare_store`
makes the local LFS store hold exactly what ``git lfs pull`` may check out.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from ml_integrity.core.fileio import write_atomic
from ml_integrity.core.lfs import (
    MAX_POINTER_SIZE,
    Pointer,
    parse_pointer,
    parse_refusal_stub,
    sha256_file,
)
from ml_integrity.git.listing import BLOB, LFS, LINK, TreeFile
from ml_integrity.git.repository import Repository
from ml_integrity.git.verification import TreeVerdict

__all__ = [
    "Restored",
    "gate_pointers",
    "last_verified_commit",
    "prepare_store",
    "restore_refused",
]

_LOOK_BACK = 20
"""How many ancestors :func:`last_verified_commit` checks before it gives up."""


@dataclass(frozen=True)
class Restored:
    path: str
    action: str
    """What now stands at ``path`` (said to the user)."""


def restore_refused(
    repo: Repository, verdict: TreeVerdict, previous: str | None = None
) -> list[Restored]:
    """Replace refused ordinary blobs and links in the work tree (see the module docstring).

    Only a work-tree file that holds exactly the refused content, and that the
    ``previous`` commit (the one checked out before: post-checkout's first
    argument, ``ORIG_HEAD`` after a merge) did not already hold, is touched:
    what arrived, never the user's own files or edits.
    """
    out: list[Restored] = []
    signed = _signed(verdict)
    for name in sorted(verdict.refused):
        f = verdict.files.get(name)
        if f is None:
            _put_back_missing(repo, verdict, name, signed.get(name, set()), previous, out)
            continue
        for twin in verdict.twins.get(name, []):
            if twin.digest not in signed.get(name, set()) and twin.kind in (BLOB, LINK):
                out += _move_arrived(repo, twin, previous, verdict.refused[name])
        if name in verdict.twins:
            continue  # the twin that holds the signed content stays
        if f.kind not in (BLOB, LINK):
            continue  # LFS files: the filter kept the pointer
        target = repo.root / f.path
        if not _holds(target, f):
            continue
        want = signed.get(name, set())
        old = _previous_file(repo, previous, f.path)
        if old is not None and old.blob == f.blob and old.kind == f.kind:
            continue  # it was here before this checkout: the user's own, not what arrived
        if old is not None and old.digest in want and _put_back(repo, target, old):
            out.append(Restored(f.path, "the signed content was put back"))
            continue
        moved = _quarantine_file(repo, target, f, verdict.refused[name])
        out.append(Restored(f.path, f"moved to {os.path.relpath(moved, repo.root)}"))
    return out


def _move_arrived(
    repo: Repository, f: TreeFile, previous: str | None, reason: str
) -> list[Restored]:
    """Quarantine one refused work-tree file, if it arrived with this checkout."""
    target = repo.root / f.path
    old = _previous_file(repo, previous, f.path)
    if not _holds(target, f) or (old is not None and old.blob == f.blob):
        return []
    moved = _quarantine_file(repo, target, f, reason)
    return [Restored(f.path, f"moved to {os.path.relpath(moved, repo.root)}")]


def _put_back_missing(
    repo: Repository,
    verdict: TreeVerdict,
    name: str,
    want: set[str],
    previous: str | None,
    out: list[Restored],
) -> None:
    """A signed file the new commit deleted: the previous, signed content goes back."""
    if verdict.kinds.get(name) != "missing" or not want:
        return
    old = _previous_file(repo, previous, name)
    target = repo.root / name
    if old is None or old.digest not in want or target.exists() or target.is_symlink():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if _put_back(repo, target, old):
        out.append(Restored(name, "the signed file was put back (the commit deletes it)"))


def _signed(verdict: TreeVerdict) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for b in verdict.current:
        for name, digest in b.resources.items():
            out.setdefault(name, set()).add(digest)
    return out


def _holds(target: Path, f: TreeFile) -> bool:
    """Does the work tree hold the refused content at this path?"""
    try:
        st = target.lstat()
    except OSError:
        return False
    if f.kind == LINK:
        return stat.S_ISLNK(st.st_mode)
    if not stat.S_ISREG(st.st_mode) or st.st_size != f.size:
        return False
    try:
        return sha256_file(target) == f.digest
    except OSError:
        return False


def _previous_file(repo: Repository, previous: str | None, path: str) -> TreeFile | None:
    if not previous or repo.git.rev_parse(previous + "^{tree}") is None:
        return None
    for old in repo.tree_files(previous, [path]):
        if old.path == path:
            return old
    return None


def _put_back(repo: Repository, target: Path, old: TreeFile) -> bool:
    """Write the previous (signed) content at ``target``; False when it cannot be had."""
    if old.kind == BLOB:
        data = repo.read_blob(old.blob)
        if data is None:
            return False
        _replace(target, data)
        return True
    if old.kind == LFS:
        obj = repo.store.object_path(old.digest)
        if obj.is_file() and sha256_file(obj) == old.digest:
            tmp = target.with_name(f".{target.name}.ml-integrity.tmp")
            shutil.copyfile(obj, tmp)
            _unlink_link(target)
            os.replace(tmp, target)
        else:  # not local: the signed pointer (`ml-integrity pull` fetches it)
            _replace(target, Pointer(old.digest, old.size).text())
        return True
    return False


def _replace(target: Path, data: bytes) -> None:
    _unlink_link(target)
    write_atomic(target, data)


def _unlink_link(target: Path) -> None:
    if target.is_symlink():
        target.unlink()


def _quarantine_file(repo: Repository, target: Path, f: TreeFile, reason: str) -> Path:
    """Move a refused work-tree file out of the way, with a record (never deleted)."""
    qdir = repo.state_dir / "quarantine"
    qdir.mkdir(parents=True, exist_ok=True)
    dest = qdir / (f.digest or f.blob)
    write_atomic(
        dest.with_name(dest.name + ".json"),
        json.dumps(
            {"path": f.path, "reason": reason, "kind": f.kind, "time": int(time.time())}, indent=2
        ).encode()
        + b"\n",
    )
    if dest.exists() or dest.is_symlink():
        target.unlink()  # the same content is already kept
    else:
        os.replace(target, dest)
    return dest


def prepare_store(repo: Repository, before: TreeVerdict) -> list[str]:
    """Make the store hold exactly what ``git lfs pull`` may check out.

    Objects of refused files leave the store (quarantine) unless the tree
    holds them at another path signed for them; objects of files still to be
    checked out are hashed first (a corrupt one is quarantined, so git-lfs
    downloads it again); a quarantined object that is now wanted and intact
    goes back. Returns the paths whose object came back.
    """
    moved_back = []
    wanted = before.allowed_lfs_oids()  # (path, oid) both signed somewhere in the tree
    for path, pointer in before.pointers.items():
        oid = pointer.oid
        if path in before.refused or before.problem is not None:
            if oid not in wanted:
                repo.quarantine(oid, path, before.refused.get(path) or str(before.problem), "HEAD")
            continue
        if path not in before.left_as_pointer:
            continue
        obj = repo.store.object_path(oid)
        if obj.is_file():
            if sha256_file(obj) != oid:
                repo.quarantine(oid, path, "corrupt local object", "HEAD")
            continue
        held = repo.store.quarantine_path(oid)
        if held.is_file() and sha256_file(held) == oid and repo.store.release(oid):
            moved_back.append(path)
    return moved_back


def gate_pointers(repo: Repository, before: TreeVerdict) -> list[str]:
    """Make ``git lfs pull`` fill exactly the LFS paths that verify, by (path, oid).

    git-lfs fills a work-tree file only when it is missing or holds the pointer
    of the oid it would write. A refused path that holds its pointer, or is
    missing, gets a refusal stub (git-lfs leaves it alone, whatever the oid and
    wherever else that oid is signed); a path that verifies now and holds the
    stub of the same oid gets its pointer back. Returns the paths given back.
    """
    given_back = []
    for name, f in before.files.items():
        if f.kind != LFS:
            continue
        target = repo.root / f.path
        try:
            st = target.lstat()
            if not stat.S_ISREG(st.st_mode) or st.st_size >= MAX_POINTER_SIZE:
                continue  # content or a link: not git-lfs's to fill (and never read whole)
            data = target.read_bytes()
        except FileNotFoundError:
            st, data = None, b""
        except OSError:
            continue
        pointer = Pointer(f.digest, f.size)
        if name in before.refused or before.problem is not None:
            held = parse_pointer(data) if data else None
            if st is None or (held is not None and held.oid == f.digest):
                mode = None if st is None else stat.S_IMODE(st.st_mode)
                write_atomic(target, pointer.refusal_stub(), mode=mode)
            continue
        stub = parse_refusal_stub(data)
        if stub is not None and stub.oid == f.digest:
            assert st is not None
            write_atomic(target, pointer.text(), mode=stat.S_IMODE(st.st_mode))
            given_back.append(f.path)
    return given_back


def last_verified_commit(repo: Repository, start: str = "HEAD") -> str | None:
    """The newest ancestor of ``start`` (itself excluded; first parents, at most
    ``_LOOK_BACK``) whose every path verifies: what to check out instead."""
    from ml_integrity.git.verification import check_tree

    out = repo.git.run(
        ["rev-list", "--first-parent", f"--max-count={_LOOK_BACK}", f"{start}~1"], check=False
    )
    if out.returncode != 0:
        return None
    for sha in out.stdout.decode().split():
        verdict = check_tree(repo, sha, worktree=False)
        if verdict.signed and verdict.ok:
            return sha
    return None
