"""``VerifiedDataset``: a dataset folder whose items are verified as they are read.

On construction the dataset's bundle is verified once, through the same
verdict as ``ml-integrity verify`` (:func:`ml_integrity.trust.verdict.verify_signatures`:
signature, signer, the policy's requirement, rollback and deny lists), and
every signed path is checked to be present. No item is hashed then; each is
hashed when it is read (:mod:`.reader`), and its bytes are released only as
far as the digest allows: :meth:`VerifiedDataset.read_bytes` returns nothing
before the whole item matched, :meth:`VerifiedDataset.open` withholds the last
chunk until it did.

The stat cache (:class:`ml_integrity.core.hashing.StatCache`, the file
``sign`` and ``verify`` use; what it trusts: ``docs/data.md``) lets a second
epoch skip the hashing: an item whose stat key is the one recorded when it
was last hashed (outside the racy window), is read without hashing and its
stat key is checked again after the read. ``use_cache=False`` hashes every
read. Items are checked as the bundle signs them (:mod:`.items`: SHA-256,
BLAKE2b or BLAKE3 over whole files, or each shard of a shard bundle).

Small items may be read ahead (:mod:`.prefetch`): a helper process reads and
hashes the items expected next (a :meth:`VerifiedDataset.prefetch` hint, or the
signed order once two consecutive items of it were read) in shared memory;
``read_bytes`` compares that digest with the signed one and copies exactly the
hashed bytes out; anything else is read and checked on the caller's own path.

Worker processes (a ``torch.utils.data.DataLoader`` with workers, or any
``multiprocessing`` child, forked or spawned) re-open the bundle: the first
use in a new process verifies it again there, and the journal's records from
that process are merged into the parent's (:mod:`.journal`).
"""

from __future__ import annotations

import hashlib
import os
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from ml_integrity.core import hashing, oms
from ml_integrity.core.manifest import normalize_path
from ml_integrity.data import process as _process
from ml_integrity.data.decryption import decryptor as _decryptor
from ml_integrity.data.items import ItemCheck, TeeHasher
from ml_integrity.data.prefetch import MAX_ITEM, Prefetcher
from ml_integrity.data.reader import (
    O_FLAGS,
    FdSource,
    Source,
    VerifiedReader,
    check_present,
    open_item,
    read_upto,
    stat_key,
)
from ml_integrity.data.trust import library_trust
from ml_integrity.errors import (
    IntegrityError,
    ManifestDiff,
    ManifestError,
    PolicyError,
    UsageError,
)

if TYPE_CHECKING:
    from ml_integrity.data.journal import DatasetInfo, Journal
    from ml_integrity.trust.policy import IdentityRule, Policy

__all__ = ["SPLITS", "Split", "VerifiedDataset"]

Split = Literal["train", "validation", "test"]
SPLITS: tuple[str, ...] = ("train", "validation", "test")

_REGULAR = 0o100000
_TYPE = 0o170000
_SURELY_OLD = hashing.RACY_MARGIN_COARSE_NS  # older than this before a read: never racy


_STATE = {  # what a spawned worker gets (pickled): it opens the bundle again
    "root": "root",
    "bundle": "bundle",
    "split": "split",
    "journal": "journal",
    "trust": "_trust",
    "decryption_key": "_decryption_key",
    "use_cache": "_use_cache",
    "readahead": "_readahead_options",
}


class VerifiedDataset:
    """A signed dataset folder whose items can only be read verified.

    Trust, as for ``ml-integrity verify``: ``key`` (a public key file),
    ``cert_chain`` (root CA files), ``identity`` (a Sigstore identity: an
    :class:`~ml_integrity.trust.policy.IdentityRule` or a mapping such as
    ``{"identity": "ci@example.com", "issuer": "https://accounts.google.com"}``,
    with ``trusted_root`` / ``offline`` for the Sigstore root) or ``policy``
    (a :class:`~ml_integrity.trust.policy.Policy` or a policy file; its
    ``deny`` and ``allow`` lists apply item by item). ``journal`` records every
    item read, under ``split``. ``decryption_key`` reads encrypted items
    (needs :mod:`ml_integrity.crypto`). ``readahead`` (:mod:`.prefetch`): None
    (default) where it can help (Linux, a second CPU, not in a ``DataLoader``
    worker), 0 never, a positive number wherever it can; within
    ``readahead_memory`` bytes and ``readahead_items`` items ahead.

    Raises :class:`~ml_integrity.errors.IntegrityError` (exit 1 in CLI terms)
    when the bundle does not verify, is for another folder, or a signed item
    is missing; :class:`~ml_integrity.errors.UsageError` for wrong arguments.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        bundle: str | Path,
        key: str | Path | None = None,
        cert_chain: str | Path | Sequence[str | Path] | None = None,
        policy: Policy | str | Path | None = None,
        identity: IdentityRule | Mapping[str, str] | None = None,
        journal: Journal | None = None,
        decryption_key: object = None,
        split: Split | None = None,
        trusted_root: str | Path | None = None,
        offline: bool = False,
        use_cache: bool = True,
        readahead: int | None = None,
        readahead_memory: int = 64 << 20,
        readahead_items: int = 256,
    ) -> None:
        if split is not None and split not in SPLITS:
            raise UsageError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
        self.root = Path(root)
        self.bundle = Path(bundle)
        self.split: Split | None = split
        self.journal = journal
        self._trust = library_trust(
            key=key,
            cert_chain=cert_chain,
            policy=policy,
            identity=identity,
            trusted_root=trusted_root,
            offline=offline,
        )
        self._decryption_key = decryption_key
        self._use_cache = use_cache
        mode = -1 if readahead is None else max(0, int(readahead))
        if readahead_memory <= 0 or readahead_items <= 0:
            mode = 0
        self._readahead_options = (mode, readahead_memory, readahead_items)
        self._open_bundle()

    # --- opening (once per process) ---------------------------------------------

    def _open_bundle(self) -> None:
        from ml_integrity.trust import verdict

        self._pid = os.getpid()
        if not self.root.is_dir():
            raise UsageError("the dataset is not a folder", path=self.root)
        self._decrypt = _decryptor(self._decryption_key)
        trust = self._trust.resolve()
        policy = trust.policy
        assert policy is not None  # the model purpose always resolves to a policy
        checked = verdict.verify_signatures(
            [self.bundle], policy, trust.backends(), target=self.root, check_denied=False
        )
        signed = checked.signed
        if signed.is_single_file:
            raise IntegrityError(
                "the bundle signs a single file, not a dataset folder",
                path=self.bundle,
                hint="sign the dataset folder: ml-integrity sign DATASET --bundle B",
            )
        self.policy = policy
        self.signer = checked.signer
        self.name = signed.name
        self.root_digest = oms.root_digest(list(signed.resources.values()))
        self.bundle_digest = hashlib.sha256(self.bundle.read_bytes()).hexdigest()
        self.details = dict(checked.bundles[0].details)
        check = self._check = ItemCheck(signed)
        self._fast = check.sha256_files
        self.hashing = check.description
        """How the bundle signs the items (``sha256 files``, ``blake2b shards of N bytes``)."""
        self._sizes = check.sizes
        self.denied: dict[str, str] = verdict.denied_resources(signed, policy)
        """Signed paths the policy refuses, with the reason; they are not in :attr:`files`."""
        self._resources = {p: d for p, d in check.expected.items() if p not in self.denied}
        self._files = list(self._resources)
        self._root_str = os.fspath(self.root)
        self._prefix = os.path.join(self._root_str, "")
        check_present(
            self.root,
            list(check.expected),
            {} if self._decrypt is not None else self._sizes,
            name=self.name,
            bundle=self.bundle,
        )
        self._cache: hashing.StatCache | None = None
        self._cache_root = ""
        # in-process memory of verified stat keys; with a journal and digests that are not
        # SHA-256, every read is hashed (the journal records the SHA-256 of what was read)
        self._remember = (
            self._use_cache
            and self._decrypt is None
            and (check.sha256_files or self.journal is None)
        )
        self._verified: dict[str, tuple[tuple[int, int, int, int, int], int]] = {}
        """What this process verified: rel -> (stat key, recorded_ns, or 0 once saved)."""
        if self._remember and check.sha256_files:  # the cache file holds SHA-256 only
            self._cache = hashing.StatCache.load(hashing.default_cache_path(self.root))
            self._cache_root = hashing.StatCache.root_key(self.root)
            _save_at_exit(self._save_cache)
        # whether the cache file had entries (what this process adds is in _verified too)
        self._cache_on_disk = self._cache is not None and len(self._cache) > 0
        self._log = None if self.journal is None else self.journal.dataset(self._info(signed))
        self._ahead: Prefetcher | None = None  # a forked child drops its parent's
        self._predict = bool(self._readahead_options[0])  # off once the caller gives hints
        self._index: dict[str, int] | None = None
        self._last = -2

    def _info(self, signed: oms.SignedModel) -> DatasetInfo:
        from ml_integrity.data.journal import DatasetInfo

        return DatasetInfo(
            name=signed.name,
            split=self.split,
            root_digest=self.root_digest,
            files=len(signed.files),
            bundle_digest=self.bundle_digest,
            signer=self.signer,
            method=str(self.details.get("method", "sigstore")),
            repository=signed.repository,
            version=signed.version,
        )

    def _ensure_process(self) -> None:
        if self._pid != os.getpid():  # a forked worker: verify again here
            self._open_bundle()

    def __getstate__(self) -> dict[str, Any]:
        return {key: getattr(self, attr) for key, attr in _STATE.items()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, attr in _STATE.items():
            setattr(self, attr, state[key])
        self._open_bundle()  # a spawned worker: verify again here

    # --- the API ----------------------------------------------------------------

    @property
    def files(self) -> list[str]:
        """The signed relative paths the policy allows, in signed order."""
        return list(self._resources)

    def __len__(self) -> int:
        return len(self._resources)

    def __iter__(self) -> Iterator[str]:
        return iter(self._resources)

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str | PurePath) and self._find(path)[1] is not None

    def _find(self, path: str | PurePath) -> tuple[str, str | None]:
        """(the relative path, its signed digest or None)."""
        if isinstance(path, str):
            digest = self._resources.get(path)
            if digest is not None:
                return path, digest
            raw = path
        else:
            p = Path(path)
            if p.is_absolute():
                try:
                    p = p.relative_to(self.root.absolute())
                except ValueError:
                    raise IntegrityError("not inside the dataset folder", path=str(path)) from None
            raw = p.as_posix()
        try:
            rel = normalize_path(raw)
        except ManifestError as exc:
            raise IntegrityError(exc.message, path=raw, hint=exc.hint) from None
        return rel, self._resources.get(rel)

    def _expect(self, path: str | PurePath) -> tuple[str, str | None, Callable[[str], bool] | None]:
        """(rel, signed digest, or a test of an unsigned item's digest); raises when refused."""
        self._ensure_process()
        rel, digest = self._find(path)
        if digest is not None:
            return rel, digest, None
        reason = self.denied.get(rel)
        if reason is not None:
            raise PolicyError(
                f"the policy refuses this item ({reason})",
                path=rel,
                diff=ManifestDiff(changed=(rel,), notes={rel: reason}),
                hint=f"policy: {self.policy.source.describe()}",
            )
        if self.policy.allow_digests:
            policy = self.policy

            def accept(d: str) -> bool:  # the policy's digests are SHA-256
                return d in policy.allow_digests and policy.denies(rel, d) is None

            return rel, None, accept
        raise IntegrityError(
            f"not signed: {self.bundle.name} does not list this item",
            path=rel,
            diff=ManifestDiff(extra=(rel,)),
            hint="only signed items can be read; re-sign the dataset to add it",
        )

    def open(self, path: str | PurePath) -> BinaryIO:
        """A binary file object over one item; hashes as it reads, withholds the last chunk."""
        rel, expected, accept = self._expect(path)
        cached = False
        if self._decrypt is not None:
            source: Source = self._decrypt(os.path.join(self._root_str, rel), rel)
            st = None
            recorded_ns = 0
        else:
            recorded_ns = time.time_ns()
            fd, st = open_item(self._prefix, rel)
            source = FdSource(fd, st, rel)
            if expected is not None:
                cached = self._cached(rel, stat_key(st), st, expected)
        fd_source = source if isinstance(source, FdSource) else None
        hasher = None
        if expected is not None and not cached:
            hasher = self._check.hasher()
            if self._log is not None and self._check.journal_needs_sha256:
                hasher = TeeHasher(hasher)

        def verified(digest: str, size: int) -> None:
            if self._log is not None:
                journal_digest = digest  # an allowed unsigned item: its SHA-256
                if expected is not None:
                    journal_digest = self._check.expected[rel]
                    if isinstance(hasher, TeeHasher):
                        journal_digest = hasher.sha256
                self._log.read(rel, journal_digest)
            if (
                not cached
                and expected is not None
                and self._remember
                and fd_source is not None
                and st is not None
                and fd_source.after is not None
                and stat_key(fd_source.after) == stat_key(st)
                and not hashing.is_racy(st.st_mtime_ns, st.st_ctime_ns, recorded_ns)
            ):
                self._verified[rel] = (stat_key(st), recorded_ns)

        return VerifiedReader(  # type: ignore[return-value]
            source,
            name=rel,
            expected=expected,
            accept=accept,
            expected_size=self._sizes.get(rel) if expected is not None else None,
            hashing=not cached,
            on_verified=verified,
            hasher=hasher,
        )

    def read_bytes(self, path: str | PurePath) -> bytes:
        """The whole content of one item, returned only after its digest matched."""
        expected = self._resources.get(path) if type(path) is str else None
        if expected is None or self._pid != _process.PID or self._decrypt is not None:
            return self._read_bytes(path)
        rel: str = path  # type: ignore[assignment]
        seen = self._verified.get(rel)
        if seen is None:  # it needs hashing: has the helper read it?
            ahead = self._ahead
            if ahead is not None and ahead._order:
                got = ahead.take(rel)
                if got is not None:  # a copy of bytes the helper read, and their digest
                    data, key, ns, digest = got
                    if (
                        digest == expected.encode()
                        if digest is not None
                        else self._check.matches(rel, data)
                    ):
                        if self._remember and (
                            max(key[3], key[4]) < ns - _SURELY_OLD
                            or not hashing.is_racy(key[3], key[4], ns)
                        ):
                            self._verified[rel] = (key, ns)
                        if self._log is not None:
                            sha = expected if self._fast else hashlib.sha256(data).hexdigest()
                            self._log.read(rel, sha)
                        return data
        recorded_ns = time.time_ns()
        try:
            fd = os.open(self._prefix + rel, O_FLAGS)
            st = os.fstat(fd)
        except OSError:
            fd, st = open_item(self._prefix, rel)  # raises naming the item (or it is back)
        try:
            size = st.st_size
            if size > MAX_ITEM or st.st_mode & _TYPE != _REGULAR:
                os.close(fd)
                fd = -1
                return self._read_bytes(rel)
            try:
                data = os.read(fd, size + 1)
            except OSError:
                data = b""
            if len(data) < size:  # a short read (or an error, reported there)
                data = read_upto(fd, size, rel, data)
            key = (st.st_dev, st.st_ino, size, st.st_mtime_ns, st.st_ctime_ns)
            if len(data) == size and (
                seen[0] == key
                if seen is not None
                else self._cache_on_disk and self._cached(rel, key, st, expected)
            ):
                post = os.fstat(fd)  # nothing changed while it was read
                if (post.st_ino, post.st_size, post.st_mtime_ns, post.st_ctime_ns) == key[1:]:
                    if self._log is not None:
                        self._log.read(rel, expected)  # a cache hit: SHA-256 files only
                    return data
        finally:
            if fd >= 0:
                os.close(fd)
        if len(data) != self._sizes.get(rel, size) or not (
            hashlib.sha256(data).hexdigest() == expected
            if self._fast
            else self._check.matches(rel, data)
        ):
            raise IntegrityError(
                "content differs from what was signed (tampered)",
                path=rel,
                diff=ManifestDiff(changed=(rel,)),
                hint="restore the item from a trusted copy, or re-sign the dataset",
            )
        # What was read is what was signed, whatever happened to the file meanwhile;
        # ``key`` is its stat before the read: a later change gives another key.
        if self._remember and (
            max(key[3], key[4]) < recorded_ns - _SURELY_OLD
            or not hashing.is_racy(key[3], key[4], recorded_ns)
        ):
            self._verified[rel] = (key, recorded_ns)
        if self._log is not None:
            self._log.read(rel, expected if self._fast else hashlib.sha256(data).hexdigest())
        if self._predict and (self._ahead is None or not self._ahead._order):
            self._observe(rel)
        return data

    def _cached(self, rel: str, key: tuple[int, ...], st: os.stat_result, expected: str) -> bool:
        """Does the stat cache vouch for ``rel`` with stat ``key`` holding ``expected``?"""
        seen = self._verified.get(rel)
        if seen is not None:
            return seen[0] == key
        cache = self._cache
        if cache is None or not self._cache_on_disk:
            return False
        hit = cache.lookup(self._cache_root, rel, st)
        if hit is not None and hit.sha256 == expected:
            self._verified[rel] = (stat_key(st), 0)  # already in the cache file
            return True
        return False

    def _read_bytes(self, path: str | PurePath) -> bytes:
        """``read_bytes`` for large, unsigned-but-allowed and encrypted items."""
        rel, expected, _accept = self._expect(path)
        if expected is not None and self._decrypt is None and path != rel:
            return self.read_bytes(rel)  # a Path, or another spelling: the fast path
        with self.open(rel) as f:
            return f.read()

    def _save_cache(self) -> None:
        """Move what this process verified into the stat cache file (SHA-256 files only)."""
        cache = self._cache
        if cache is None:
            return
        for rel, (key, recorded_ns) in list(self._verified.items()):
            if recorded_ns:
                digest = self._resources.get(rel)
                if digest is not None:
                    cache.record_key(
                        self._cache_root, rel, key, recorded_ns, hashing.FileDigest(key[2], digest)
                    )
                self._verified[rel] = (key, 0)
        cache.save()

    def verify_all(self, *, workers: int | None = None) -> int:
        """Hash every allowed item; raise one IntegrityError listing every difference.

        SHA-256 files go to the threaded hashing engine, other bundles item by
        item. Returns the number of items checked. Unchanged items recorded in
        the stat cache are not read again (``use_cache=False`` reads them all).
        """
        from ml_integrity.data.verify_all import verify_all

        self._ensure_process()
        return verify_all(self, workers)

    # --- read-ahead (prefetch.py) -----------------------------------------------------

    def _readahead(self) -> Prefetcher | None:
        """This process's helper (made on first use), or None where it is off."""
        if self._ahead is None and self._readahead_options[0] and self._decrypt is None:
            self._ahead = Prefetcher.for_dataset(self)
            if self._ahead is None:
                self._readahead_options = (0, *self._readahead_options[1:])
                self._predict = False
            else:
                self._ahead_finalizer = weakref.finalize(self, self._ahead.close)
        return self._ahead

    def _observe(self, rel: str) -> None:
        """Two consecutive items of the signed order, read here: plan the rest of it."""
        index = self._index
        if index is None:
            index = self._index = {p: i for i, p in enumerate(self._files)}
        i = index.get(rel, -2)
        last, self._last = self._last, i
        if i == last + 1 and i + 1 < len(self._files):
            ahead = self._readahead()
            if ahead is not None:
                ahead.plan(self._files, i + 1, explicit=False)

    def prefetch(self, paths: Iterable[str | PurePath]) -> None:
        """Read these items ahead, in this order: a hint, replacing any earlier one.

        A helper process reads the next items of ``paths`` (see :mod:`.prefetch`;
        at most ``readahead_items`` ahead); :meth:`read_bytes` then hashes and
        serves what it read. Paths that are not signed, or denied, are left to
        :meth:`read_bytes` (reading them still raises). Use it with a
        sampler's order, e.g. ``ds.prefetch([paths[i] for i in indices])``.
        """
        self._ensure_process()
        self._predict = False  # the caller says what comes next: nothing is predicted
        ahead = self._readahead()
        if ahead is None:
            return
        resources = self._resources
        order: list[str] = []
        for p in paths:
            if type(p) is str and p in resources:
                order.append(p)
                continue
            try:
                order.append(self._find(p)[0])
            except IntegrityError:
                order.append("")  # keeps the positions; never read ahead
        ahead.plan(order)

    def iter_bytes(
        self, paths: Iterable[str | PurePath] | None = None
    ) -> Iterator[tuple[str, bytes]]:
        """``(path, verified content)`` of each item in order (default: ``files``), read ahead."""
        order = list(self._resources) if paths is None else [self._find(p)[0] for p in paths]
        self.prefetch(order)
        for rel in order:
            yield rel, self.read_bytes(rel)

    def close(self) -> None:
        """End the read-ahead helper, write the stat cache (also at exit), flush the journal."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            self._ahead_finalizer()  # ahead.close(), once: a no-op in a forked child
        self._save_cache()
        if self.journal is not None:
            self.journal.flush()

    def __enter__(self) -> VerifiedDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"VerifiedDataset({os.fspath(self.root)!r}, {len(self)} items, "
            f"signed by {self.signer}, split={self.split!r})"
        )


def _save_at_exit(save: Callable[[], None]) -> None:
    """Save the stat cache when this process ends, a multiprocessing worker included."""
    import atexit
    import multiprocessing.util

    atexit.register(save)
    multiprocessing.util.Finalize(None, save, exitpriority=0)
