"""Tree verification: what every path of a tree (or the index) holds, against its signatures.

:func:`check_tree` is the one rule, used by the filter proxy and the transfer
agent (through :mod:`.gates`), the hooks, ``pull``, ``verify --git-repo``,
``check-staged`` and the Action. It checks what each signed path holds *now*,
whatever ``.gitattributes`` says: a pointer with the signed oid, or the signed
bytes (:mod:`.listing`). Each of these is an integrity failure that names the
path: a path that no longer holds the signed content (for instance no longer
a pointer), a missing path, an extra path, a symbolic link or a submodule the
rules do not allow, two paths that normalise to the same NFC name. A policy
adds its rules (:meth:`TreeVerdict.apply_policy`): denied and allowed
digests, must-sign patterns, rollback (repository binding, minimum version)
and the requirement across signers (all-of, k-of-n), each bundle counted
only when it signs the whole tree.

With several valid bundles the newest signed version is the current one;
older ones are superseded (noted). A bundle that cannot be verified is
refused and named in the notes; it never blocks the valid ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ml_integrity.core.lfs import (
    MAX_POINTER_SIZE,
    Pointer,
    parse_pointer,
    parse_refusal_stub,
    sha256_file,
)
from ml_integrity.errors import IntegrityError, ManifestDiff
from ml_integrity.git.listing import BLOB, LFS, LINK, SUBMODULE, TreeFile
from ml_integrity.git.repository import RECOVER_HINT, Repository, SignedBundle, VerifiedDigests
from ml_integrity.git.runner import Git
from ml_integrity.git.scope import DEFAULT_RULES, META_DIR, TreeRules

if TYPE_CHECKING:
    from ml_integrity.core.verifying import BundleVerifier
    from ml_integrity.trust.policy import Policy

__all__ = [
    "TreeVerdict",
    "check_policy_supported",
    "check_tree",
    "describe_verified",
    "pointer_files",
    "verify_repository",
]

CHANGED, MISSING, EXTRA = "changed", "missing", "extra"


@dataclass
class TreeVerdict:
    """The verdict of one tree (or the index): every covered path, and what is refused."""

    source: str
    verified: VerifiedDigests
    files: dict[str, TreeFile]
    """NFC name -> what the path holds, for every path the manifest covers."""
    rules: TreeRules = DEFAULT_RULES
    all_files: list[TreeFile] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    """name -> reason."""
    kinds: dict[str, str] = field(default_factory=dict)
    """name -> changed | missing | extra, for each refused name."""
    left_as_pointer: list[str] = field(default_factory=list)
    """Work-tree files that still hold pointer text (not smudged, or refused)."""
    rehash_failed: dict[str, str] = field(default_factory=dict)
    unsigned_extra: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    problem: str | None = None
    """A failure of the whole tree (rollback, a requirement across signers)."""
    notes: list[str] = field(default_factory=list)
    twins: dict[str, list[TreeFile]] = field(default_factory=dict)
    """name -> the paths that normalise to it, when there are several."""
    current: tuple[SignedBundle, ...] = ()
    """The bundles the verdict rests on (the newest signed version)."""
    signed: bool = True
    """False for a tree that nothing asks to verify (no LFS file, no signature)."""

    @property
    def pointers(self) -> dict[str, Pointer]:
        """name -> pointer of the LFS files."""
        make = tuple.__new__
        return {
            n: make(Pointer, (f.digest, f.size, ())) for n, f in self.files.items() if f.kind == LFS
        }

    @property
    def ok(self) -> bool:
        return not self.refused and not self.rehash_failed and self.problem is None

    @property
    def signers(self) -> list[str]:
        return sorted({b.signer for b in self.current})

    def allows(self, name: str, digest: str) -> bool:
        """May ``name`` hold content with this sha256 (an LFS oid or a blob's digest)?"""
        f = self.files.get(name)
        return (
            f is not None
            and f.digest == digest
            and name not in self.refused
            and self.problem is None
        )

    def allowed_lfs_oids(self) -> set[str]:
        """The oids that some path of this tree may hold: (path, oid) both signed."""
        if self.problem is not None:
            return set()
        return {f.digest for n, f in self.files.items() if f.kind == LFS and n not in self.refused}

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "source": self.source,
            "signers": self.signers,
            "signature_error": self.verified.error,
            "problem": self.problem,
            "files": len(self.files),
            "lfs_files": sum(1 for f in self.files.values() if f.kind == LFS),
            "refused": dict(sorted(self.refused.items())),
            "left_as_pointer": sorted(self.left_as_pointer),
            "rehash_failed": dict(sorted(self.rehash_failed.items())),
            "excluded": sorted(self.excluded),
            "notes": list(self.notes),
        }

    def describe(self) -> str:
        """``N files (K LFS)``."""
        n = len(self.files)
        k = sum(1 for f in self.files.values() if f.kind == LFS)
        return f"{n} file{'s' if n != 1 else ''} ({k} LFS)"

    def apply_policy(self, policy: Policy | None) -> None:
        """Evaluate again with a policy's rules (see the module docstring)."""
        _evaluate(self, policy)

    def error(self) -> IntegrityError:
        if self.problem is not None and not self.refused and not self.rehash_failed:
            return IntegrityError(
                f"{self.source} cannot be verified: {self.problem}", hint=RECOVER_HINT
            )
        notes = {**self.rehash_failed, **self.refused}
        changed = sorted(
            {n for n, k in self.kinds.items() if k == CHANGED and n in self.refused}
            | set(self.rehash_failed)
        )
        missing = sorted(n for n, k in self.kinds.items() if k == MISSING and n in self.refused)
        extra = sorted(n for n, k in self.kinds.items() if k == EXTRA and n in self.refused)
        total = len(set(notes))
        message = f"{total} path(s) of {self.source} are not covered by a valid signature"
        if self.problem is not None:
            message += f"; {self.problem}"
        return IntegrityError(
            message,
            diff=ManifestDiff(tuple(missing), tuple(extra), tuple(changed), notes),
            hint=RECOVER_HINT,
        )


def check_tree(
    repo: Repository,
    source: str = "HEAD",
    *,
    rehash: bool = False,
    progress: Callable[[int, int], None] | None = None,
    worktree: bool = True,
    policy: Policy | None = None,
    rules: TreeRules | None = None,
    require_signature: bool = False,
    during_checkout: bool = False,
    _depth: int = 0,
) -> TreeVerdict:
    """Check every path of ``source`` against its signatures (no download).

    ``worktree`` also lists the files still holding pointer text. With
    ``rehash`` the work-tree files and the local objects are hashed too
    (catches a corrupted local store, and symbolic links or missing files in
    the work tree). A tree with no LFS file and no signature is not under
    ml-integrity (``signed`` is False, and it passes) unless
    ``require_signature``. ``during_checkout`` (the hooks): a named submodule not
    yet checked out is a note, not a refusal.
    """
    if rules is None:
        rules = repo.rules
    if policy is None:
        policy = repo.policy
    all_files = repo.tree_files(source)
    has_lfs = any(f.kind == LFS for f in all_files)
    has_sigs = bool(repo.signature_blobs(source))
    if not (has_lfs or has_sigs or require_signature):
        return TreeVerdict(source, VerifiedDigests(source), {}, rules, all_files, signed=False)
    verified = repo.verified_digests(source)
    verdict = TreeVerdict(source, verified, {}, rules, all_files)
    _evaluate(verdict, policy)
    _check_submodules(repo, verdict, policy, _depth, during_checkout)
    if worktree or rehash:
        verdict.left_as_pointer = pointer_files(repo, verdict.pointers)
    if rehash:
        _rehash(repo, verdict, progress)
    return verdict


_MAX_SUBMODULE_DEPTH = 8


def _check_submodules(
    repo: Repository, verdict: TreeVerdict, policy: Policy | None, depth: int, checkout: bool
) -> None:
    """Named submodules: their own tree, at the pinned commit, against their own
    signatures with the same trust (and the same rules), recursively. During a
    checkout (the hooks) a named submodule that is not checked out yet is a note:
    nothing of it is in the work tree, and its own checkout (``git submodule
    update``, ``clone --recurse-submodules``) goes through the filter and hooks."""
    for name, f in sorted(verdict.files.items()):
        if f.kind != SUBMODULE or name in verdict.refused or name not in verdict.rules.submodules:
            continue
        reason: str | None
        if depth >= _MAX_SUBMODULE_DEPTH:
            reason = f"submodules nest deeper than {_MAX_SUBMODULE_DEPTH}"
        else:
            sub = repo.submodule(f.path)
            if sub is None and checkout:
                verdict.notes.append(
                    f"{f.path}: the submodule is not checked out yet; its own checkout is verified"
                )
                continue
            if sub is None:
                reason = "the submodule is not checked out, so it cannot be verified"
            else:
                with sub:
                    if sub.git.rev_parse(f.blob + "^{tree}") is None:
                        reason = f"the submodule has no commit {f.blob[:12]} (fetch it)"
                    else:
                        inner = check_tree(
                            sub,
                            f.blob,
                            worktree=False,
                            policy=policy,
                            rules=verdict.rules,
                            require_signature=True,
                            _depth=depth + 1,
                        )
                        reason = _first_problem(inner)
        if reason is not None:
            verdict.refused[name] = f"submodule at {f.blob[:12]}: {reason}"
            verdict.kinds[name] = CHANGED


def _first_problem(v: TreeVerdict) -> str | None:
    if v.ok:
        return None
    if v.verified.error:
        return v.verified.error
    if v.problem:
        return v.problem
    path, why = sorted(v.refused.items())[0]
    more = f" (and {len(v.refused) - 1} more)" if len(v.refused) > 1 else ""
    return f"{path}: {why}{more}"


def _current(
    verdict: TreeVerdict, policy: Policy | None
) -> tuple[tuple[SignedBundle, ...], str | None]:
    """The bundles of the newest signed version (after the policy's repository binding)."""
    bundles = list(verdict.verified.bundles)
    rollback = policy.rollback if policy is not None else None
    if rollback is not None and rollback.repository is not None:
        bound = [b for b in bundles if b.repository == rollback.repository]
        for b in bundles:
            if b not in bound:
                verdict.notes.append(
                    f"{b.path}: refused: bound to repository {b.repository or '(none)'}, the "
                    f"policy requires {rollback.repository}"
                )
        bundles = bound
        if not bundles:
            return (), (
                f"no signature is bound to repository {rollback.repository} (policy rollback rule)"
            )
    if not bundles:
        return (), None
    newest = max(b.version or 0 for b in bundles)
    current = tuple(b for b in bundles if (b.version or 0) == newest)
    for b in bundles:
        if b not in current:
            verdict.notes.append(f"{b.path}: superseded (version {b.version or 0} < {newest})")
    least = rollback.not_older_than if rollback is not None else None
    if least is not None and newest < least:
        return current, (
            f"rollback refused: the newest signature carries version {newest}, at least "
            f"version {least} is required"
        )
    return current, None


def _evaluate(verdict: TreeVerdict, policy: Policy | None) -> None:
    """Fill ``verdict`` from its listing, its bundles and the policy (the one rule)."""
    verdict.refused.clear()
    verdict.kinds.clear()
    verdict.unsigned_extra.clear()
    verdict.notes[:] = list(verdict.verified.warnings)
    verdict.problem = None
    rules = verdict.rules
    current, problem = _current(verdict, policy)
    verdict.current = current
    verdict.problem = problem
    error = verdict.verified.error
    allowed: dict[str, set[str]] = {}
    ignores: set[str] = set()
    for b in current:
        ignores.update(b.ignore_paths)
        for name, digest in b.resources.items():
            allowed.setdefault(name, set()).add(digest)
    files: dict[str, TreeFile] = {}
    twins: dict[str, list[TreeFile]] = {}
    excluded: list[str] = []
    excluded_by = rules.matcher(ignores)
    for f in verdict.all_files:
        name = f.name if not f.path.isascii() else f.path
        if excluded_by(name):
            excluded.append(name)
            continue
        if name in files:
            twins.setdefault(name, [files[name]]).append(f)
            if f.digest not in allowed.get(name, ()):
                continue  # the listing keeps the signed one of the twins, if any
        files[name] = f
    verdict.files = files
    verdict.twins = twins
    verdict.excluded = excluded
    source = verdict.verified.source
    for name, f in files.items():
        reason, kind = _reason(f, name, allowed, error, rules, source)
        if reason is not None:
            verdict.refused[name] = reason
            verdict.kinds[name] = kind
    for name, group in twins.items():
        raw = [t.path for t in group]
        verdict.refused[name] = (
            f"{len(raw)} paths normalise to this one NFC name ({', '.join(map(repr, raw))}): "
            "only one may exist"
        )
        verdict.kinds[name] = EXTRA
    if error is None:
        for name in allowed:
            if name not in files and not excluded_by(name):
                verdict.refused[name] = f"signed in {source}, but the tree has no such file"
                verdict.kinds[name] = MISSING
    if policy is not None:
        _policy_rules(verdict, policy)
        if error is None and verdict.problem is None:
            verdict.problem = _requirement_problem(verdict, policy, current, allowed)


def _reason(
    f: TreeFile,
    name: str,
    allowed: Mapping[str, set[str]],
    error: str | None,
    rules: TreeRules,
    source: str,
) -> tuple[str | None, str]:
    """Why one path is refused (None: it holds what was signed), and as what."""
    if error is not None:
        return error, EXTRA
    signed = allowed.get(name)
    if f.kind == SUBMODULE and name not in rules.submodules:
        return (
            f"a submodule (commit {f.blob[:12]}), which the rules do not name",
            CHANGED if signed else EXTRA,
        )
    if f.kind == LINK and not rules.allow_symlinks:
        if signed:
            return "a symbolic link at a signed path (symbolic links are refused)", CHANGED
        return "a symbolic link (refused unless the rules allow them)", EXTRA
    if signed is None:
        return f"not in the signed manifest of {source}", EXTRA
    if f.digest in signed:
        return None, CHANGED
    want = sorted(signed)[0][:12]
    if f.kind == BLOB:
        return (
            f"it holds an ordinary git blob (sha256:{f.digest[:12]}..., {f.size} bytes), not "
            f"the signed content (sha256:{want}...)",
            CHANGED,
        )
    return (
        f"its LFS pointer (sha256:{f.digest[:12]}...) does not match the signed manifest of "
        f"{source} (sha256:{want}...)",
        CHANGED,
    )


def _policy_rules(verdict: TreeVerdict, policy: Policy) -> None:
    """Denied digests (refused even when signed); unsigned files the policy accepts."""
    for name, f in sorted(verdict.files.items()):
        if f.digest and f.digest in policy.deny_digests:
            verdict.refused[name] = f"sha256:{f.digest[:12]}... is denied by the policy"
            verdict.kinds[name] = CHANGED
        elif (
            name in verdict.refused
            and verdict.kinds.get(name) == EXTRA
            and f.kind in (LFS, BLOB)
            and (not policy.must_be_signed(name) or f.digest in policy.allow_digests)
        ):
            del verdict.refused[name]
            del verdict.kinds[name]
            verdict.unsigned_extra.append(name)


def _requirement_problem(
    verdict: TreeVerdict,
    policy: Policy,
    current: tuple[SignedBundle, ...],
    allowed: Mapping[str, set[str]],
) -> str | None:
    """The policy's requirement across signers, each bundle counted when it signs the tree."""
    from ml_integrity.trust.policy import satisfy

    requirement = policy.effective_requirement
    if requirement.mode == "any-of" and requirement.k <= 1:
        return None
    held = {n: f.digest for n, f in verdict.files.items() if n not in verdict.unsigned_extra}
    by_actual: dict[str, set[str]] = {}
    for b in current:
        if dict(b.resources) == held:
            by_actual.setdefault(b.signer, set()).update(b.matched)
        else:
            verdict.notes.append(f"{b.path}: does not sign this whole tree; not counted")
    ok, counted = satisfy(requirement, by_actual)
    if ok:
        return None
    missing = [n for n in requirement.signers if n not in counted]
    return (
        f"the policy's requirement is not met: {requirement.describe()}; got {len(counted)} "
        f"(missing: {', '.join(missing)})"
    )


def pointer_files(repo: Repository, pointers: Mapping[str, Pointer]) -> list[str]:
    """Work-tree files that hold pointer text (or a refusal stub) instead of their content."""
    out = []
    for path, pointer in pointers.items():
        if pointer.size == 0:
            continue
        f = repo.root / path
        try:
            st = f.lstat()
            if st.st_size >= MAX_POINTER_SIZE or st.st_size == pointer.size:
                continue
            data = f.read_bytes()
            if parse_pointer(data) is not None or parse_refusal_stub(data) is not None:
                out.append(path)
        except OSError:
            continue
    return sorted(out)


def _rehash(
    repo: Repository, verdict: TreeVerdict, progress: Callable[[int, int], None] | None
) -> None:
    """Hash the work tree (and the local LFS objects) against what the tree holds."""
    import stat

    total = sum(f.size for f in verdict.files.values() if f.kind in (LFS, BLOB)) * 2
    done = 0
    for name, tf in sorted(verdict.files.items()):
        if tf.kind not in (LFS, BLOB):
            continue
        if tf.kind == LFS:
            obj = repo.store.object_path(tf.digest)
            if obj.is_file():
                digest = sha256_file(obj)
                if digest != tf.digest:
                    verdict.rehash_failed[name] = (
                        f"the local LFS object {obj.name[:12]}... is corrupt "
                        f"(sha256 {digest[:12]}...)"
                    )
        done += tf.size
        f = repo.root / tf.path
        try:
            st = f.lstat()
        except FileNotFoundError:
            verdict.rehash_failed.setdefault(name, "missing from the work tree")
            continue
        except OSError as exc:
            verdict.rehash_failed.setdefault(name, f"cannot read it: {exc.strerror}")
            continue
        if stat.S_ISLNK(st.st_mode):
            verdict.rehash_failed.setdefault(
                name, "the work tree holds a symbolic link at this path"
            )
        elif not stat.S_ISREG(st.st_mode):
            verdict.rehash_failed.setdefault(name, "the work tree holds no regular file here")
        elif name not in verdict.left_as_pointer:
            digest = sha256_file(f)
            if digest != tf.digest and name not in verdict.rehash_failed:
                what = "its pointer" if tf.kind == LFS else "the committed content"
                verdict.rehash_failed[name] = (
                    f"the work-tree file does not match {what} (sha256 {digest[:12]}..., "
                    f"expected {tf.digest[:12]}...)"
                )
        done += tf.size
        if progress is not None:
            progress(done, total)


def check_policy_supported(policy: Policy, *, hint: str | None = None) -> None:
    """Kept for callers that do not evaluate a policy through :func:`check_tree`
    (``policy=``) or :meth:`TreeVerdict.apply_policy`: refuse the rules they
    would leave unenforced (never half apply)."""
    from ml_integrity.errors import ConfigError

    requirement = policy.effective_requirement
    unsupported = []
    if requirement.mode != "any-of":
        unsupported.append(f"require ({requirement.describe()})")
    if policy.rollback.not_older_than is not None or policy.rollback.repository is not None:
        unsupported.append("rollback")
    if unsupported:
        raise ConfigError(
            f"the policy uses {' and '.join(unsupported)}, which this entry point does not "
            "enforce on a repository yet",
            path=policy.source.path,
            hint=hint
            or "verify with `ml-integrity verify --git-repo --policy FILE`, which enforces them",
        )


def describe_verified(verified: VerifiedDigests) -> str:
    if verified.error:
        return verified.error
    return f"{verified.source}: signed by {', '.join(sorted(set(verified.signers)))}"


def verify_repository(
    start: Path,
    *,
    verifier: BundleVerifier | None = None,
    rev: str = "HEAD",
    rehash: bool = False,
    progress: Callable[[int, int], None] | None = None,
    policy: Policy | None = None,
) -> TreeVerdict:
    """``ml-integrity verify --git-repo``: every path of ``rev`` against its signatures.

    No download and no rehash unless ``rehash`` (then the work-tree files and
    the local LFS objects are hashed too). Trust: ``verifier`` when given
    (the command line's), else the repository's git config. Raises
    IntegrityError when anything is not covered.
    """
    factory = None if verifier is None else (lambda _root: verifier)
    with Repository(Git.discover(start), verifier_factory=factory) as repo:
        verdict = check_tree(
            repo,
            rev,
            rehash=rehash,
            progress=progress,
            worktree=False,
            policy=policy,
            require_signature=True,
        )
    if verdict.verified.error:
        raise IntegrityError(
            f"{rev} cannot be verified: {verdict.verified.error}",
            path=start,
            hint="trust comes from --key/--cert-chain or git config ml-integrity.publicKey; "
            f"sign with `ml-integrity sign-repo --key KEY` ({META_DIR}/*.sig)",
        )
    if not verdict.ok:
        raise verdict.error()
    return verdict
