"""A git repository with LFS content under ml-integrity: manifests, trust, verdicts.

The use cases behind the filter wrapper, the transfer agent, the hooks and
the ``pull``/``verify`` commands:

- :meth:`Repository.lfs_pointers` lists the LFS pointers of the index (at
  commit time: ``git ls-files -s -z`` plus one ``git cat-file --batch``,
  honouring ``GIT_INDEX_FILE``) or of a tree. No content is hashed: the oid
  of a pointer *is* the sha256 the clean filter computed.
- :meth:`Repository.manifest_from_index` turns them into the canonical
  manifest (``.ml-integrity/manifest.json``).
- :meth:`Repository.verified_digests` reads the signature bundles
  ``<treeish>:.ml-integrity/*.sig``, verifies each with the trust roots from
  git config (never from the repository itself), and returns what they
  signed, path by path. Results are cached per set of bundles and
  fingerprint of the trust actually applied (:meth:`Repository.trust_key`)
  under ``.git/ml-integrity/cache/``.
- :class:`SmudgeVerifier` and :class:`DownloadGate` are the decisions of the
  filter proxy and of the transfer agent; :meth:`Repository.check_tree` is the
  pointer-level verdict of hooks and ``verify``.

Refused content is never written into the work tree: the pointer stays and
the object moves to ``.git/lfs/quarantine/`` (never deleted).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ml_integrity.core.fileio import write_atomic
from ml_integrity.core.lfs import LfsStore, Pointer, parse_pointer, sha256_file
from ml_integrity.errors import Error, IntegrityError, ManifestDiff
from ml_integrity.git.lfs import Endpoint, Refusal, endpoint_from_url
from ml_integrity.git.runner import Git, IndexEntry

if TYPE_CHECKING:
    from ml_integrity.core.manifest import Manifest
    from ml_integrity.core.signing import Signer
    from ml_integrity.core.verifying import BundleVerifier
    from ml_integrity.trust.policy import Policy
    from ml_integrity.trust.resolver import Trust

__all__ = [
    "INDEX",
    "DownloadGate",
    "Repository",
    "SmudgeVerifier",
    "TreeVerdict",
    "VerifiedDigests",
]

META_DIR = ".ml-integrity"
MANIFEST_PATH = f"{META_DIR}/manifest.json"
INDEX = ":"
"""The source name for "the index" (as in ``git show :path``)."""

RECOVER_COMMAND = "ml-integrity pull"
RECOVER_HINT = (
    "the file was left as an LFS pointer; once the content is signed (or after checking out a "
    f"signed commit) run `{RECOVER_COMMAND}` to restore it"
)
_CACHE_VERSION = 1
_POINTER_CACHE = "pointers.json"


@dataclass(frozen=True)
class VerifiedDigests:
    """What the valid signatures of one tree (or the index) allow, path by path.

    ``error`` is set when nothing could be verified (no bundle, no trust
    root, every bundle invalid): then nothing is allowed.
    """

    source: str
    digests: Mapping[str, frozenset[str]] = field(default_factory=dict)
    signers: tuple[str, ...] = ()
    error: str | None = None
    warnings: tuple[str, ...] = ()

    def allows(self, path: str, oid: str) -> bool:
        return oid in self.digests.get(path, ())

    def all_oids(self) -> set[str]:
        return {d for ds in self.digests.values() for d in ds}

    def to_json(self) -> dict[str, object]:
        return {
            "digests": {p: sorted(d) for p, d in self.digests.items()},
            "signers": list(self.signers),
            "error": self.error,
            "warnings": list(self.warnings),
        }


@dataclass
class TreeVerdict:
    """Pointer-level verdict of a tree: which LFS files its signatures cover."""

    source: str
    verified: VerifiedDigests
    pointers: dict[str, Pointer]
    refused: dict[str, str] = field(default_factory=dict)
    """path -> reason, for pointers the signatures do not cover."""
    left_as_pointer: list[str] = field(default_factory=list)
    """Work-tree files that still hold pointer text (not smudged)."""
    rehash_failed: dict[str, str] = field(default_factory=dict)
    unsigned_extra: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.refused and not self.rehash_failed

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "source": self.source,
            "signers": list(self.verified.signers),
            "signature_error": self.verified.error,
            "files": len(self.pointers),
            "refused": dict(sorted(self.refused.items())),
            "left_as_pointer": sorted(self.left_as_pointer),
            "rehash_failed": dict(sorted(self.rehash_failed.items())),
        }

    def apply_policy(self, policy: Policy) -> None:
        """What a policy says beyond who may sign: denied digests, allowed unsigned files.

        A denied digest is refused even when signed. A file no signature
        covers is accepted when no must-sign pattern matches it or its digest
        is allowed; it is then listed in ``unsigned_extra``.
        """
        for path, pointer in sorted(self.pointers.items()):
            if pointer.oid in policy.deny_digests:
                self.refused[path] = f"sha256:{pointer.oid[:12]}... is denied by the policy"
            elif path in self.refused and (
                not policy.must_be_signed(path) or pointer.oid in policy.allow_digests
            ):
                del self.refused[path]
                self.unsigned_extra.append(path)

    def error(self) -> IntegrityError:
        changed = tuple(sorted(set(self.refused) | set(self.rehash_failed)))
        notes = {**self.refused, **self.rehash_failed}
        return IntegrityError(
            f"{len(changed)} LFS file(s) in {self.source} are not covered by a valid signature",
            diff=ManifestDiff(changed=changed, notes=notes),
            hint=RECOVER_HINT,
        )


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
        self._cat = git.cat_file()
        self._verified: dict[str, VerifiedDigests] = {}
        self._verifier_factory = verifier_factory
        self._verifier: BundleVerifier | None = None
        self._trust_key: str | None = None
        self._settings: dict[str, str] | None = (
            None if trust_settings is None else dict(trust_settings)
        )
        self._store: LfsStore | None = None
        self._pointers: dict[str, Any] | None = None
        self._listing: list[IndexEntry] | None = None
        self._index_pointers: dict[str, Pointer] | None = None

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
        return self.git.common_dir / "ml-integrity"

    @property
    def strict(self) -> bool:
        return self.git.config_bool("ml-integrity.strict", False)

    # -- pointers -----------------------------------------------------------------

    def lfs_pointers(self, source: str = INDEX, paths: Iterable[str] = ()) -> dict[str, Pointer]:
        """path -> pointer for every LFS pointer in the index or in a tree-ish.

        Which blobs are pointers is remembered by blob id in
        ``.git/ml-integrity/pointers.json`` (a blob never changes), so a commit
        in a large repository reads only the blobs it has not seen before.
        """
        paths = list(paths)
        whole_index = source == INDEX and not paths
        if whole_index and self._index_pointers is not None:
            return dict(self._index_pointers)
        sizes: dict[str, int] | None = None
        if source == INDEX:
            listing = self._index_listing() if not paths else self.git.ls_files_stage(paths)
            entries = [
                (e.oid, e.path)
                for e in listing
                if e.stage == 0 and not e.path.startswith(META_DIR + "/")
            ]
        else:
            tree = self.git.ls_tree(source, paths)
            entries = [(t.oid, t.path) for t in tree if t.type == "blob"]
            sizes = {t.oid: t.size for t in tree if t.type == "blob"}
        known = self._pointer_cache()
        unknown = sorted({o for o, _ in entries if o not in known})
        if unknown:
            if sizes is None:
                sizes = self.blob_sizes(unknown)
            learned: dict[str, object] = {}
            small = [o for o in unknown if 0 < sizes.get(o, 1 << 30) < 1024]
            for oid, data in self._cat.read_many(small):
                if data is not None:
                    pointer = parse_pointer(data)
                    learned[oid] = 0 if pointer is None else pointer
            # Large or empty blobs are never pointers; blobs git cannot read are
            # left out (a partial clone may fetch them later).
            read = set(small)
            learned.update((o, 0) for o in unknown if o in sizes and o not in read)
            known.update(learned)
            self._save_pointer_cache(learned, len(entries))
        make = tuple.__new__  # a Pointer from the cache's [oid, size] without the Python __new__
        get = known.get
        out = {
            path: make(Pointer, (value[0], value[1], ())) if type(value) is list else value
            for oid, path in entries
            if (value := get(oid))
        }
        if whole_index:
            self._index_pointers = dict(out)
        return out

    def _index_listing(self) -> list[IndexEntry]:
        """``git ls-files -s`` of the whole index, once per command (until we stage)."""
        if self._listing is None:
            self._listing = self.git.ls_files_stage()
        return self._listing

    def _pointer_cache(self) -> dict[str, Any]:
        """blob id -> ``[LFS oid, size]``, ``0`` for a blob that is not a pointer, or a
        :class:`Pointer` learned in this process (with extensions: never saved)."""
        if self._pointers is None:
            self._pointers = {}
            try:
                doc = json.loads((self.state_dir / _POINTER_CACHE).read_bytes())
                blobs = doc["blobs"] if doc.get("v") == 1 else {}
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                return self._pointers
            if type(blobs) is not dict:
                return self._pointers
            pointers: list[Any] = [v for v in blobs.values() if v != 0]
            valid = all(type(v) is list and len(v) == 2 for v in pointers) and all(
                type(oid) is str and len(oid) == 64 and type(size) is int for oid, size in pointers
            )
            if valid:  # else start afresh: a damaged cache is only slower
                self._pointers = blobs
        return self._pointers

    def _save_pointer_cache(self, learned: Mapping[str, object], in_use: int) -> None:
        """Add what was learned; start afresh when the cache outgrows the listing by far."""
        add: dict[str, object] = {}
        for blob, value in learned.items():
            if value == 0:
                add[blob] = 0
            elif isinstance(value, Pointer) and not value.extensions:
                add[blob] = [value.oid, value.size]
        if not add:
            return
        path = self.state_dir / _POINTER_CACHE
        try:
            try:
                blobs = json.loads(path.read_bytes())["blobs"]
                if type(blobs) is not dict or len(blobs) > 4 * in_use + 1000:
                    blobs = {}  # keep the cache about the size of what is in use
            except (OSError, ValueError, KeyError, TypeError):
                blobs = {}
            blobs.update(add)
            write_atomic(
                path,
                json.dumps({"v": 1, "blobs": blobs}, separators=(",", ":")).encode(),
                durable=False,  # a cache: losing it costs speed only
            )
        except OSError:
            pass  # a cache that cannot be written is only slower

    def blob_sizes(self, oids: Iterable[str]) -> dict[str, int]:
        """oid -> size of the objects that exist (one ``git cat-file --batch-check``)."""
        oids = list(oids)
        if not oids:
            return {}
        raw = self.git.run(
            ["cat-file", "--batch-check"], input="\n".join(set(oids)).encode() + b"\n"
        )
        out = {}
        for line in raw.stdout.decode().splitlines():
            parts = line.split()
            if len(parts) == 3:
                out[parts[0]] = int(parts[2])
        return out

    def read_blob(self, name: str) -> bytes | None:
        return self._cat.read(name)

    # -- the manifest at commit time ---------------------------------------------------

    def manifest_from_index(self) -> Manifest:
        """The manifest of the staged LFS pointers, keeping what the old one said.

        Format and annotations of an entry carry over from the staged
        manifest when the digest is unchanged (they describe the content).
        """
        from ml_integrity.core.manifest import Entry, Manifest

        previous: dict[str, Entry] = {}
        old = self._cat.read(f":{MANIFEST_PATH}")
        if old:
            try:
                previous = Manifest.from_json(old, source=MANIFEST_PATH).by_path()
            except Error:
                previous = {}
        entries = []
        for path, pointer in self.lfs_pointers(INDEX).items():
            prev = previous.get(path)
            if prev is not None and prev.sha256 == pointer.oid:
                entries.append(
                    Entry(path, pointer.size, pointer.oid, prev.format, dict(prev.annotations))
                )
            else:
                entries.append(Entry(path, pointer.size, pointer.oid))
        return Manifest(tuple(entries))

    def update_manifest(self) -> bool:
        """Write ``.ml-integrity/manifest.json`` from the index and stage it.

        For the pre-commit hook: honours ``GIT_INDEX_FILE`` (``commit -a`` and
        ``commit PATH`` build a temporary index). Returns True when it changed.
        """
        manifest = self.manifest_from_index()
        data = manifest.to_json()
        if self._cat.read(f":{MANIFEST_PATH}") == data:
            return False
        write_atomic(self.root / MANIFEST_PATH, data)
        self.git.run(["add", "--", MANIFEST_PATH])
        self._listing = self._index_pointers = None
        index = os.environ.get("GIT_INDEX_FILE", "") if self.git.keep_index else ""
        real = self.git.git_dir / "index.lock"
        if os.path.basename(index).startswith("next-index-") and real.is_file():
            # `git commit PATH`: git commits a temporary index and then installs
            # index.lock as the index; stage the manifest there too, or the
            # committed manifest would show as changed afterwards.
            self.git.run(["add", "--", MANIFEST_PATH], env={"GIT_INDEX_FILE": str(real)})
        return True

    def sign_index(self, signer: Signer, *, name: str = "manifest") -> tuple[Manifest, Path]:
        """Sign the manifest of the index; write and stage the manifest and the bundle."""
        from ml_integrity.core import oms

        manifest = self.manifest_from_index()
        statement = oms.build_statement(manifest, model_name=self.root.name)
        bundle = signer.sign_statement(statement)
        bundle_path = self.root / META_DIR / f"{name}.sig"
        write_atomic(self.root / MANIFEST_PATH, manifest.to_json())
        write_atomic(bundle_path, bundle.encode("utf-8"))
        self.git.run(["add", "--", MANIFEST_PATH, f"{META_DIR}/{name}.sig"])
        self._listing = self._index_pointers = None
        return manifest, bundle_path

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
        return sorted(
            (p, o) for p, o in rows if p.endswith(".sig") and "/" not in p[len(META_DIR) + 1 :]
        )

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

        digests: dict[str, set[str]] = {}
        signers: list[str] = []
        warnings: list[str] = []
        for path, oid in sigs:
            data = self._cat.read(oid)
            if data is None:
                warnings.append(f"{path}: cannot read the bundle")
                continue
            try:
                payload = verifier.verify_bundle(data, path)
                if payload.payload_type != oms.PAYLOAD_TYPE:
                    warnings.append(f"{path}: unexpected payload type {payload.payload_type}")
                    continue
                model = oms.parse_statement(payload.payload, path)
            except Error as exc:
                warnings.append(f"{path}: {exc.message}")
                continue
            if not model.is_sha256_files:  # LFS oids are whole-file SHA-256 digests
                warnings.append(f"{path}: signs {model.hashing}, not sha256 files (LFS oids)")
                continue
            signers.append(payload.signer)
            for name, digest in model.resources.items():
                if name != oms.SINGLE_FILE_NAME:
                    digests.setdefault(name, set()).add(digest)
        if not signers:
            reason = "; ".join(warnings) or "no valid signature"
            result = VerifiedDigests(label, error=f"no valid signature in {label}: {reason}")
        else:
            result = VerifiedDigests(
                label,
                {p: frozenset(d) for p, d in digests.items()},
                tuple(signers),
                None,
                tuple(warnings),
            )
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
            return VerifiedDigests(
                label,
                {p: frozenset(d) for p, d in doc["digests"].items()},
                tuple(doc["signers"]),
                None,
                tuple(doc["warnings"]),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def _cache_write(self, key: str, result: VerifiedDigests) -> None:
        doc = {"v": _CACHE_VERSION, **result.to_json()}
        path = self._cache_path(key)
        try:
            write_atomic(path, json.dumps(doc).encode(), durable=False)  # a cache
        except OSError:
            pass  # a cache that cannot be written is only slower

    # -- verdicts ----------------------------------------------------------------------

    def check_tree(
        self,
        source: str = "HEAD",
        *,
        rehash: bool = False,
        progress: Callable[[int, int], None] | None = None,
        worktree: bool = True,
    ) -> TreeVerdict:
        """Pointer-level check of ``source`` against its signatures (no download).

        ``worktree`` also lists the files still holding pointer text. With
        ``rehash`` the work-tree files and the local objects are hashed too
        (catches a corrupted local store).
        """
        pointers = self.lfs_pointers(source)
        verified = self.verified_digests(source) if pointers else VerifiedDigests(source)
        verdict = TreeVerdict(source, verified, pointers)
        for path, pointer in pointers.items():
            reason = refusal_reason(verified, path, pointer.oid)
            if reason is not None:
                verdict.refused[path] = reason
        if worktree or rehash:
            verdict.left_as_pointer = self.pointer_files(pointers)
        if rehash:
            self._rehash(verdict, progress)
        return verdict

    def pointer_files(self, pointers: Mapping[str, Pointer]) -> list[str]:
        """Work-tree files that hold pointer text instead of their content."""
        out = []
        for path, pointer in pointers.items():
            if pointer.size == 0:
                continue
            f = self.root / path
            try:
                st = f.stat()
                if st.st_size >= 1024 or st.st_size == pointer.size:
                    continue
                if parse_pointer(f.read_bytes()) is not None:
                    out.append(path)
            except OSError:
                continue
        return sorted(out)

    def _rehash(self, verdict: TreeVerdict, progress: Callable[[int, int], None] | None) -> None:
        total = sum(p.size for p in verdict.pointers.values()) * 2
        done = 0
        for path, pointer in sorted(verdict.pointers.items()):
            obj = self.store.object_path(pointer.oid)
            if obj.is_file():
                digest = sha256_file(obj)
                if digest != pointer.oid:
                    verdict.rehash_failed[path] = (
                        f"the local LFS object {obj.name[:12]}... is corrupt "
                        f"(sha256 {digest[:12]}...)"
                    )
            done += pointer.size
            f = self.root / path
            if path not in verdict.left_as_pointer and f.is_file():
                digest = sha256_file(f)
                if digest != pointer.oid and path not in verdict.rehash_failed:
                    verdict.rehash_failed[path] = (
                        f"the work-tree file does not match its pointer (sha256 {digest[:12]}..., "
                        f"pointer {pointer.oid[:12]}...)"
                    )
            done += pointer.size
            if progress is not None:
                progress(done, total)

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


def check_policy_supported(policy: Policy, *, hint: str | None = None) -> None:
    """Refuse policies whose rules repository mode cannot enforce yet (never half apply).

    A requirement across several signers (all-of, k-of-n) and rollback rules
    need per-bundle verdicts that the union of signed digests does not keep.
    """
    from ml_integrity.errors import ConfigError

    requirement = policy.effective_requirement
    unsupported = []
    if requirement.mode != "any-of":
        unsupported.append(f"require ({requirement.describe()})")
    if policy.rollback.not_older_than is not None or policy.rollback.repository is not None:
        unsupported.append("rollback")
    if unsupported:
        raise ConfigError(
            f"the policy uses {' and '.join(unsupported)}, which is not enforced on a "
            "repository's LFS files yet",
            path=policy.source.path,
            hint=hint
            or "verify model folders with `ml-integrity verify PATH --bundle ...`, or use a "
            "policy without these rules for the repository",
        )


def refusal_reason(verified: VerifiedDigests, path: str, oid: str) -> str | None:
    if verified.error is not None:
        return verified.error
    allowed = verified.digests.get(path)
    if allowed is None:
        return f"{path} is not in the signed manifest of {verified.source}"
    if oid not in allowed:
        return (
            f"its LFS pointer (sha256:{oid[:12]}...) does not match the signed manifest of "
            f"{verified.source} (sha256:{sorted(allowed)[0][:12]}...)"
        )
    return None


# --- the filter proxy's decisions ------------------------------------------------


class SmudgeVerifier:
    """The :class:`~ml_integrity.git.lfs.SmudgeGate` of ``ml-integrity filter-process``."""

    def __init__(
        self,
        repo: Repository,
        *,
        strict: bool,
        allow_file: Path | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self.repo = repo
        self.strict = strict
        self.allow_file = allow_file
        self.stderr = stderr or sys.stderr
        self._index_source: str | None = None
        self._allowed: set[str] = set()
        self._allow_handle: TextIO | None = None
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

    def check(self, path: str, oid: str, size: int, meta: Mapping[str, str]) -> Refusal | None:
        source = self._source(meta)
        verified = self.repo.verified_digests(source)
        reason = refusal_reason(verified, path, oid)
        if reason is None:
            self._allow(oid)
            return None
        # An unsigned tree says nothing about the object, and an object that the
        # signatures allow for another path is a signed one: keep those in the store.
        signed = self._signed_oids.get(source)
        if signed is None:
            signed = self._signed_oids[source] = verified.all_oids()
        return Refusal(reason, quarantine=verified.error is None and oid not in signed)

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
            f"to recover: `{RECOVER_COMMAND}` once the content is signed\n"
        )
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
        if self._allowed is None:
            allowed: set[str] = set()
            for rev in self.trusted_revs():
                verified = self.repo.verified_digests(rev)
                if verified.error is None:
                    allowed |= verified.all_oids()
                else:
                    self._errors.append(verified.error)
            self._allowed = allowed
        return self._allowed

    def trusted_revs(self) -> list[str]:
        revs = []
        if self.repo.git.rev_parse("HEAD^{commit}"):
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
        return "it is in no verified manifest (HEAD, FETCH_HEAD, remote-tracking refs)"


def describe_verified(verified: VerifiedDigests) -> str:
    if verified.error:
        return verified.error
    return f"{verified.source}: signed by {', '.join(sorted(set(verified.signers)))}"


def now_ms() -> float:
    return time.monotonic() * 1000


def verify_repository(
    start: Path,
    *,
    verifier: BundleVerifier | None = None,
    rev: str = "HEAD",
    rehash: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> TreeVerdict:
    """``ml-integrity verify --git-repo``: the LFS pointers of ``rev`` against its signatures.

    No download and no rehash unless ``rehash`` (then the work-tree files and
    the local LFS objects are hashed too). Trust: ``verifier`` when given
    (the command line's), else the repository's git config. Raises
    IntegrityError when anything is not covered.
    """
    factory = None if verifier is None else (lambda _root: verifier)
    with Repository(Git.discover(start), verifier_factory=factory) as repo:
        verdict = repo.check_tree(rev, rehash=rehash, progress=progress, worktree=False)
    if verdict.pointers and verdict.verified.error:
        raise IntegrityError(
            f"{rev} cannot be verified: {verdict.verified.error}",
            path=start,
            hint="trust comes from --key/--cert-chain or git config ml-integrity.publicKey; "
            "sign with `ml-integrity sign-repo --key KEY`",
        )
    if not verdict.ok:
        raise verdict.error()
    return verdict
