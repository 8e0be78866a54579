"""A git repository with LFS content under ml-integrity: listings, trust, signatures.

- :meth:`Repository.lfs_pointers` lists the LFS pointers of the index (at
  commit time: ``git ls-files -s -z`` plus one ``git cat-file --batch``,
  honouring ``GIT_INDEX_FILE``) or of a tree. No content is hashed: the oid
  of a pointer *is* the sha256 the clean filter computed.
- :meth:`Repository.verified_digests` reads the signature bundles
  ``<treeish>:.ml-integrity/*.sig``, verifies each with the trust roots from
  git config (never from the repository itself), and returns what they
  signed, path by path. Results are cached per set of bundles and
  fingerprint of the trust actually applied (:meth:`Repository.trust_key`)
  under ``.git/ml-integrity/cache/``.

The use cases built on it: :mod:`.manifests` (the manifest at commit time),
:mod:`.verification` (the verdict of a tree), :mod:`.gates` (the decisions of
the filter proxy and the transfer agent). Refused content is never written
into the work tree: the pointer stays and the object moves to
``.git/lfs/quarantine/`` (never deleted).
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ml_integrity.core.fileio import write_atomic
from ml_integrity.core.lfs import LfsStore, Pointer
from ml_integrity.errors import Error
from ml_integrity.git.agent import Endpoint, endpoint_from_url
from ml_integrity.git.listing import LFS, BlobCache, TreeFile, list_files
from ml_integrity.git.listing import blob_sizes as _blob_sizes
from ml_integrity.git.runner import Git, IndexEntry
from ml_integrity.git.scope import (
    MANIFEST_PATH,
    META_DIR,
    TreeRules,
    is_bundle_path,
    rules_from_config,
)

if TYPE_CHECKING:
    from ml_integrity.core.verifying import BundleVerifier
    from ml_integrity.git.verification import TreeVerdict
    from ml_integrity.trust.policy import Policy
    from ml_integrity.trust.resolver import Trust

__all__ = [
    "INDEX",
    "MANIFEST_PATH",
    "META_DIR",
    "Repository",
    "SignedBundle",
    "VerifiedDigests",
]

INDEX = ":"
"""The source name for "the index" (as in ``git show :path``)."""

RECOVER_COMMAND = "ml-integrity pull"
RECOVER_HINT = (
    "the file was left as an LFS pointer; once the content is signed (or after checking out a "
    f"signed commit) run `{RECOVER_COMMAND}` to restore it"
)
_CACHE_VERSION = 2
MAX_BUNDLE_SIZE = 16 << 20
"""A signature bundle larger than this is refused unread."""


@dataclass(frozen=True)
class SignedBundle:
    """One valid bundle of a tree: who signed what (a verified OMS statement)."""

    path: str
    signer: str
    matched: tuple[str, ...]
    """The policy's signer names that the signer matches (empty without a policy)."""
    resources: Mapping[str, str]
    """NFC path -> sha256 hex."""
    ignore_paths: tuple[str, ...] = ()
    version: int | None = None
    repository: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.path,
            "signer": self.signer,
            "matched": list(self.matched),
            "resources": dict(self.resources),
            "ignore_paths": list(self.ignore_paths),
            "version": self.version,
            "repository": self.repository,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, object]) -> SignedBundle:
        resources = doc["resources"]
        ignores, matched, version, repo = (
            doc["ignore_paths"],
            doc["matched"],
            doc["version"],
            doc["repository"],
        )
        if not (
            isinstance(resources, dict)
            and isinstance(ignores, list)
            and isinstance(matched, list)
            and (version is None or type(version) is int)
            and (repo is None or isinstance(repo, str))
        ):
            raise TypeError("damaged cache entry")
        return cls(
            str(doc["path"]),
            str(doc["signer"]),
            tuple(map(str, matched)),
            {str(k): str(v) for k, v in resources.items()},
            tuple(map(str, ignores)),
            version,
            repo,
        )


@dataclass(frozen=True)
class VerifiedDigests:
    """What the valid signatures of one tree (or the index) allow, path by path.

    ``error`` is set when nothing could be verified (no bundle, no trust
    root, every bundle invalid): then nothing is allowed. ``warnings`` name
    the bundles that were refused (they never block the valid ones).
    """

    source: str
    signers: tuple[str, ...] = ()
    error: str | None = None
    warnings: tuple[str, ...] = ()
    bundles: tuple[SignedBundle, ...] = ()

    @functools.cached_property
    def digests(self) -> Mapping[str, frozenset[str]]:
        """NFC path -> the digests some valid bundle signs for it."""
        out: dict[str, set[str]] = {}
        for b in self.bundles:
            for name, digest in b.resources.items():
                out.setdefault(name, set()).add(digest)
        return {p: frozenset(d) for p, d in out.items()}

    def allows(self, path: str, oid: str) -> bool:
        return oid in self.digests.get(path, ())

    def all_oids(self) -> set[str]:
        return {d for b in self.bundles for d in b.resources.values()}

    def to_json(self) -> dict[str, object]:
        return {
            "signers": list(self.signers),
            "error": self.error,
            "warnings": list(self.warnings),
            "bundles": [b.to_json() for b in self.bundles],
        }

    @classmethod
    def of_bundles(
        cls, source: str, bundles: Iterable[SignedBundle], warnings: Iterable[str] = ()
    ) -> VerifiedDigests:
        bundles = tuple(bundles)
        return cls(source, tuple(b.signer for b in bundles), None, tuple(warnings), bundles)


class Repository:
    """A git work tree with Git LFS content."""

    def __init__(
        self,
        git: Git,
        *,
        trust: Trust | None = None,
        verifier_factory: Callable[[Path], BundleVerifier] | None = None,
    ) -> None:
        """``trust`` (the entry point's, from ``trust.resolver``) or ``verifier_factory``
        (a caller's own verifier) replace the trust of the git config."""
        trust_settings: Mapping[str, str] | None = None
        if trust is not None and verifier_factory is None:
            if trust.policy is not None:
                verifier_factory = trust.verifier
            else:
                trust_settings = trust.settings_map()
        self.git = git
        self.root = git.root
        self.policy: Policy | None = None if trust is None else trust.policy
        """The entry point's policy: every check of a tree applies it (rollback,
        requirements across signers, deny and allow lists), the filter's too."""
        self._cat = git.cat_file()
        self._verified: dict[str, VerifiedDigests] = {}
        self._verifier_factory = verifier_factory
        self._verifier: BundleVerifier | None = None
        self._trust_key: str | None = None
        self._settings: dict[str, str] | None = (
            None if trust_settings is None else dict(trust_settings)
        )
        self._store: LfsStore | None = None
        self._blobs = BlobCache(self.state_dir_of(git))
        self._listing: list[IndexEntry] | None = None
        self._index_files: list[TreeFile] | None = None
        self._rules: TreeRules | None = None

    @classmethod
    def discover(cls, start: Path | None = None, *, keep_index: bool = False) -> Repository:
        return cls(Git.discover(start, keep_index=keep_index))

    def close(self) -> None:
        self._cat.close()

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- places -----------------------------------------------------------------

    @property
    def store(self) -> LfsStore:
        if self._store is None:
            self._store = LfsStore.for_git_dir(
                self.git.common_dir, self.git.config_get("lfs.storage")
            )
        return self._store

    @property
    def state_dir(self) -> Path:
        """``.git/ml-integrity``: install records and the verification cache."""
        return self.state_dir_of(self.git)

    @staticmethod
    def state_dir_of(git: Git) -> Path:
        return git.common_dir / "ml-integrity"

    @property
    def rules(self) -> TreeRules:
        """What the manifest may contain (symbolic links, submodules), from git config."""
        if self._rules is None:
            out = self.git.run(
                ["config", "--get-regexp", r"^ml-integrity\.(allowsymlinks|submodule)$"],
                check=False,
            )
            values: dict[str, list[str]] = {}
            for line in out.stdout.decode("utf-8", "surrogateescape").splitlines():
                key, _, value = line.partition(" ")
                values.setdefault(key.lower(), []).append(value)
            self._rules = rules_from_config(values)
        return self._rules

    def submodule(self, path: str) -> Repository | None:
        """The checked-out submodule at ``path``, with this repository's trust (or None)."""
        root = self.root / path
        if not (root / ".git").exists():
            return None
        sub = Repository(Git(root), verifier_factory=self._verifier_factory)
        sub.policy = self.policy
        if self._verifier_factory is None:
            sub._settings = dict(self.trust_settings())  # the same trust, not the submodule's
        return sub

    @property
    def strict(self) -> bool:
        return self.git.config_bool("ml-integrity.strict", False)

    # -- listings -----------------------------------------------------------------

    def tree_files(self, source: str = INDEX, paths: Iterable[str] = ()) -> list[TreeFile]:
        """What every path of the index or of a tree-ish holds (:mod:`.listing`).

        Honours ``GIT_INDEX_FILE`` for the index; entries with merge conflicts
        are left out (they have no stage-0 entry to check).
        """
        paths = list(paths)
        whole_index = source == INDEX and not paths
        if whole_index and self._index_files is not None:
            return list(self._index_files)
        sizes: dict[str, int] | None = None
        if source == INDEX:
            listing = self._index_listing() if not paths else self.git.ls_files_stage(paths)
            rows = [(e.mode, e.oid, e.path) for e in listing if e.stage == 0]
        else:
            tree = self.git.ls_tree(source, paths)
            rows = [(t.mode, t.oid, t.path) for t in tree if t.type in ("blob", "commit")]
            sizes = {t.oid: t.size for t in tree if t.type == "blob"}
        out = list_files(self.git, self._cat, self._blobs, rows, sizes)
        if whole_index:
            self._index_files = list(out)
        return out

    def lfs_pointers(self, source: str = INDEX, paths: Iterable[str] = ()) -> dict[str, Pointer]:
        """path -> pointer for every LFS pointer in the index or in a tree-ish
        (``.ml-integrity/`` left out)."""
        make = tuple.__new__
        return {
            f.path: make(Pointer, (f.digest, f.size, ()))
            for f in self.tree_files(source, paths)
            if f.kind == LFS and not f.path.startswith(META_DIR + "/")
        }

    def index_digest(self) -> str:
        """A digest of the whole index listing (modes, blob ids, paths): it keys caches of
        answers about what is staged."""
        h = hashlib.sha256()
        for e in self._index_listing():
            h.update(f"{e.mode} {e.oid} {e.stage}\t{e.path}\0".encode("utf-8", "surrogateescape"))
        return h.hexdigest()

    def _index_listing(self) -> list[IndexEntry]:
        """``git ls-files -s`` of the whole index, once per command (until we stage)."""
        if self._listing is None:
            self._listing = self.git.ls_files_stage()
        return self._listing

    def blob_sizes(self, oids: Iterable[str]) -> dict[str, int]:
        """oid -> size of the objects that exist (one ``git cat-file --batch-check``)."""
        return _blob_sizes(self.git, oids)

    def read_blob(self, name: str) -> bytes | None:
        return self._cat.read(name)

    def forget_index(self) -> None:
        """Forget the index listing (after we staged something)."""
        self._listing = self._index_files = None

    # -- LFS endpoints --------------------------------------------------------------

    def lfs_endpoint(self, remote: str) -> Endpoint:
        """The LFS endpoint git-lfs uses for ``remote`` (a name or a URL)."""
        candidates = ["lfs.url", f"remote.{remote}.lfsurl"]
        for key in candidates:
            value = self.git.config_get(key)
            if value:
                return endpoint_from_url(value, self.root)
        lfsconfig = self.root / ".lfsconfig"
        if lfsconfig.is_file():
            for key in candidates:
                out = self.git.run(["config", "-f", str(lfsconfig), "--get", key], check=False)
                if out.returncode == 0 and out.stdout.strip():
                    return endpoint_from_url(out.stdout.decode().strip(), self.root)
        url = self.git.config_get(f"remote.{remote}.url") or remote
        return endpoint_from_url(url, self.root)

    # -- trust and signatures ---------------------------------------------------------

    def trust_settings(self) -> dict[str, str]:
        """The ``ml-integrity.*`` git config (lower-case keys): where trust comes from."""
        if self._settings is None:
            self._settings = self.git.config_matching(r"^ml-integrity\.")
        return self._settings

    def _verifier_for(self) -> BundleVerifier:
        if self._verifier is None:
            if self._verifier_factory is not None:
                self._verifier = self._verifier_factory(self.root)
            else:
                from ml_integrity.trust.settings import verifier_from_settings

                self._verifier = verifier_from_settings(self.trust_settings(), base=self.root)
        return self._verifier

    def trust_key(self) -> str | None:
        """A fingerprint of the trust in use; it keys the verification cache.

        With a ``verifier_factory`` it is the verifier's own fingerprint
        (:func:`~ml_integrity.core.verifying.trust_fingerprint`): the trust actually
        applied, not the git config. A verifier that cannot fingerprint
        itself gets None: its results are not cached. Without a factory the
        trust is the git config's ``ml-integrity.*`` settings and the files
        they name (read without building the verifier, which is costly).
        """
        if self._trust_key is None:
            if self._verifier_factory is not None:
                from ml_integrity.core.verifying import trust_fingerprint

                try:
                    verifier = self._verifier_for()
                except Error:
                    return None
                fingerprint = trust_fingerprint(verifier)
                if fingerprint is None:
                    return None
                self._trust_key = "verifier:" + fingerprint
            else:
                h = hashlib.sha256()
                for key, value in sorted(self.trust_settings().items()):
                    h.update(f"{key}={value}\n".encode())
                    p = Path(value).expanduser()
                    if not p.is_absolute():
                        p = self.root / p
                    try:
                        if p.is_file():
                            h.update(p.read_bytes())
                    except OSError:
                        pass
                self._trust_key = "git-config:" + h.hexdigest()
        return self._trust_key

    def signature_blobs(self, source: str) -> list[tuple[str, str]]:
        """(path, blob oid) of the ``.ml-integrity/*.sig`` bundles of a source."""
        if source == INDEX:
            prefix = META_DIR + "/"
            rows = [
                (e.path, e.oid)
                for e in self._index_listing()
                if e.stage == 0 and e.path.startswith(prefix)
            ]
        else:
            rows = [
                (t.path, t.oid)
                for t in self.git.ls_tree(source, [META_DIR + "/"], recursive=False)
                if t.type == "blob"
            ]
        return sorted((p, o) for p, o in rows if is_bundle_path(p))

    def verified_digests(self, source: str) -> VerifiedDigests:
        """The path -> digest map that the valid bundles of ``source`` sign."""
        if source in self._verified:
            return self._verified[source]
        result = self._compute_verified(source)
        self._verified[source] = result
        return result

    def _compute_verified(self, source: str) -> VerifiedDigests:
        label = "the index" if source == INDEX else source
        try:
            sigs = self.signature_blobs(source)
        except Error as exc:
            return VerifiedDigests(
                label, error=f"cannot read {META_DIR}/ of {label}: {exc.message}"
            )
        if not sigs:
            return VerifiedDigests(label, error=f"{label} has no signature ({META_DIR}/*.sig)")
        trust = self.trust_key()
        key = None
        if trust is not None:
            key = hashlib.sha256(
                (trust + "\0" + "".join(f"{p}\0{o}\0" for p, o in sigs)).encode()
            ).hexdigest()
            cached = self._cache_read(key, label)
            if cached is not None:
                return cached
        try:
            verifier = self._verifier_for()
        except Error as exc:
            return VerifiedDigests(label, error=f"no trust root: {exc.message}")
        from ml_integrity.core import oms

        bundles: list[SignedBundle] = []
        warnings: list[str] = []
        sizes = self.blob_sizes(o for _, o in sigs)
        for path, oid in sigs:
            size = sizes.get(oid)
            if size is None or size > MAX_BUNDLE_SIZE:
                why = "cannot read it" if size is None else f"{size:,} bytes is too large"
                warnings.append(f"{path}: refused: {why}")
                continue
            data = self._cat.read(oid)
            if data is None:
                warnings.append(f"{path}: refused: cannot read the bundle")
                continue
            try:
                payload = verifier.verify_bundle(data, path)
                if payload.payload_type != oms.PAYLOAD_TYPE:
                    warnings.append(f"{path}: unexpected payload type {payload.payload_type}")
                    continue
                model = oms.parse_statement(payload.payload, path)
            except Error as exc:
                warnings.append(f"{path}: refused: {exc.message}")
                continue
            except (RecursionError, MemoryError, ValueError, TypeError) as exc:
                # hostile input our parsers did not catch: this bundle is refused, named,
                # and never blocks the valid ones
                warnings.append(f"{path}: refused: not a readable bundle ({type(exc).__name__})")
                continue
            if not model.is_sha256_files:  # LFS oids are whole-file SHA-256 digests
                warnings.append(f"{path}: refused: signs {model.hashing}, not sha256 files")
                continue
            matched = payload.details.get("matched_signers")
            bundles.append(
                SignedBundle(
                    path,
                    payload.signer,
                    tuple(map(str, matched)) if isinstance(matched, list | tuple) else (),
                    {n: d for n, d in model.resources.items() if n != oms.SINGLE_FILE_NAME},
                    model.ignore_paths,
                    model.version,
                    model.repository,
                )
            )
        if not bundles:
            reason = "; ".join(warnings) or "no valid signature"
            result = VerifiedDigests(label, error=f"no valid signature in {label}: {reason}")
        else:
            result = VerifiedDigests.of_bundles(label, bundles, warnings)
            if key is not None:
                self._cache_write(key, result)
        return result

    def _cache_path(self, key: str) -> Path:
        return self.state_dir / "cache" / f"{key}.json"

    def _cache_read(self, key: str, label: str) -> VerifiedDigests | None:
        try:
            doc = json.loads(self._cache_path(key).read_bytes())
            if doc.get("v") != _CACHE_VERSION:
                return None
            return VerifiedDigests.of_bundles(
                label,
                [SignedBundle.from_json(b) for b in doc["bundles"]],
                map(str, doc["warnings"]),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
            return None

    def _cache_write(self, key: str, result: VerifiedDigests) -> None:
        doc = {"v": _CACHE_VERSION, **result.to_json()}
        path = self._cache_path(key)
        try:
            write_atomic(path, json.dumps(doc).encode(), durable=False)  # a cache
        except OSError:
            pass  # a cache that cannot be written is only slower

    # -- verdicts (git/verification.py) --------------------------------------------------

    def check_tree(
        self,
        source: str = "HEAD",
        *,
        rehash: bool = False,
        progress: Callable[[int, int], None] | None = None,
        worktree: bool = True,
    ) -> TreeVerdict:
        """:func:`ml_integrity.git.verification.check_tree` of this repository."""
        from ml_integrity.git.verification import check_tree

        return check_tree(self, source, rehash=rehash, progress=progress, worktree=worktree)

    def pointer_files(self, pointers: Mapping[str, Pointer]) -> list[str]:
        """Work-tree files that hold pointer text instead of their content."""
        from ml_integrity.git.verification import pointer_files

        return pointer_files(self, pointers)

    # -- quarantine ----------------------------------------------------------------------

    def quarantine(self, oid: str, path: str, reason: str, source: str) -> Path | None:
        return self.store.quarantine(
            oid,
            {
                "oid": oid,
                "path": path,
                "reason": reason,
                "source": source,
                "time": int(time.time()),
            },
        )
