"""``VerifiedDataset``: a dataset folder whose items are verified as they are read.

On construction the dataset's bundle is verified once, through the same
verdict as ``ml-integrity verify`` (:func:`ml_integrity.trust.verdict.verify_signatures`:
signature, signer, the policy's requirement, rollback and deny lists), and
every signed path is checked to be present. No item is hashed then; each is
hashed when it is read (:mod:`.reader`), and its bytes are released only as
far as the digest allows: :meth:`VerifiedDataset.read_bytes` returns nothing
before the whole item matched, :meth:`VerifiedDataset.open` withholds the last
chunk until it did.

The stat cache (:class:`ml_integrity.core.hashing.StatCache`, the same file
``sign`` and ``verify`` use) lets a second epoch skip the hashing: an item
whose stat key (device, inode, size, mtime_ns, ctime_ns) is the one recorded
when its digest was last computed, outside the racy window, and whose
recorded digest is the signed one, is read without hashing; its stat key is
checked again after the read. What that trusts, exactly: that whoever could
rewrite an item without changing its ctime (root, or a changed clock) cannot
also write the cache file, which lives in the git directory or the user's
cache directory. ``use_cache=False`` hashes every read.

Small items may be read ahead (:mod:`.readahead`): threads read and hash the
items expected next (a :meth:`VerifiedDataset.prefetch` hint, or a constant
step through :attr:`VerifiedDataset.files`), and ``read_bytes`` returns the
very bytes a thread hashed and found matching; nothing else is served.

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
from ml_integrity.data.decryption import decryptor as _decryptor
from ml_integrity.data.readahead import MAX_ITEM, ReadAhead
from ml_integrity.data.reader import (
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
    OperationalError,
    PolicyError,
    UsageError,
)

if TYPE_CHECKING:
    from ml_integrity.data.journal import DatasetInfo, Journal
    from ml_integrity.trust.policy import IdentityRule, Policy

__all__ = ["SPLITS", "Split", "VerifiedDataset"]

Split = Literal["train", "validation", "test"]
SPLITS: tuple[str, ...] = ("train", "validation", "test")


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
    (needs :mod:`ml_integrity.crypto`). ``readahead`` threads (default
    0: none; None: 2 while the machine has a core to spare; N: N) read and hash
    small items ahead, keeping at most ``readahead_memory`` bytes and
    ``readahead_items`` items (:mod:`.readahead`).

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
        readahead: int | None = 0,
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
        threads = 2 if readahead is None else readahead
        if readahead_memory <= 0 or readahead_items <= 0:
            threads = 0
        self._readahead_options = (threads, readahead_memory, readahead_items, readahead is None)
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
        self._sizes = dict(signed.sizes)
        self.denied: dict[str, str] = verdict.denied_resources(signed, policy)
        """Signed paths the policy refuses, with the reason; they are not in :attr:`files`."""
        self._resources = {p: d for p, d in signed.resources.items() if p not in self.denied}
        self._root_str = os.fspath(self.root)
        self._prefix = os.path.join(self._root_str, "")
        check_present(
            self.root,
            list(signed.resources),
            {} if self._decrypt is not None else self._sizes,
            name=self.name,
            bundle=self.bundle,
        )
        self._cache: hashing.StatCache | None = None
        self._cache_root = ""
        self._verified: dict[str, tuple[tuple[int, ...], os.stat_result, int]] = {}
        """What this process verified: rel -> (stat key, stat, recorded_ns or 0 once saved)."""
        if self._use_cache and self._decrypt is None:
            self._cache = hashing.StatCache.load(hashing.default_cache_path(self.root))
            self._cache_root = hashing.StatCache.root_key(self.root)
            _save_at_exit(self._save_cache)
        # whether the cache file had entries (what this process adds is in _verified too)
        self._cache_on_disk = self._cache is not None and len(self._cache) > 0
        self._log = None if self.journal is None else self.journal.dataset(self._info(signed))
        self._ahead: ReadAhead | None = None  # a forked child drops its parent's (no threads)

    def _info(self, signed: oms.SignedModel) -> DatasetInfo:
        from ml_integrity.data.journal import DatasetInfo

        return DatasetInfo(
            name=signed.name,
            split=self.split,
            root_digest=self.root_digest,
            files=len(signed.resources),
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
        return {
            "root": self.root,
            "bundle": self.bundle,
            "split": self.split,
            "journal": self.journal,
            "trust": self._trust,
            "decryption_key": self._decryption_key,
            "use_cache": self._use_cache,
            "readahead": self._readahead_options,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.root = state["root"]
        self.bundle = state["bundle"]
        self.split = state["split"]
        self.journal = state["journal"]
        self._trust = state["trust"]
        self._decryption_key = state["decryption_key"]
        self._use_cache = state["use_cache"]
        self._readahead_options = state["readahead"]
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

            def accept(d: str) -> bool:
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

        def verified(digest: str, size: int) -> None:
            if self._log is not None:
                self._log.read(rel, digest)
            if (
                not cached
                and expected is not None
                and self._cache is not None
                and fd_source is not None
                and st is not None
                and fd_source.after is not None
                and stat_key(fd_source.after) == stat_key(st)
                and not hashing.is_racy(st.st_mtime_ns, st.st_ctime_ns, recorded_ns)
            ):
                self._verified[rel] = (stat_key(st), st, recorded_ns)

        return VerifiedReader(  # type: ignore[return-value]
            source,
            name=rel,
            expected=expected,
            accept=accept,
            expected_size=self._sizes.get(rel) if expected is not None else None,
            hashing=not cached,
            on_verified=verified,
        )

    def read_bytes(self, path: str | PurePath) -> bytes:
        """The whole content of one item, returned only after its digest matched."""
        expected = self._resources.get(path) if type(path) is str else None
        if expected is None or self._pid != os.getpid() or self._decrypt is not None:
            return self._read_bytes(path)
        rel: str = path  # type: ignore[assignment]
        seen = self._verified.get(rel)
        if seen is None:  # it needs hashing: has a read-ahead thread done it?
            ahead = self._ahead
            if ahead is None and self._readahead_options[0] > 0:
                ahead = self._start_readahead()
            got = None if ahead is None else ahead.take(rel)
            if got is not None:  # the very bytes that thread hashed, and they matched
                data, st, recorded_ns = got
                if self._cache is not None and not hashing.is_racy(
                    st.st_mtime_ns, st.st_ctime_ns, recorded_ns
                ):
                    self._verified[rel] = (stat_key(st), st, recorded_ns)
                if self._log is not None:
                    self._log.read(rel, expected)
                return data
        recorded_ns = time.time_ns()
        fd, st = open_item(self._prefix, rel)
        try:
            size = st.st_size
            if size > MAX_ITEM:
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
                        self._log.read(rel, expected)
                    return data
        finally:
            if fd >= 0:
                os.close(fd)
        if hashlib.sha256(data).hexdigest() != expected or len(data) != self._sizes.get(rel, size):
            raise IntegrityError(
                "content differs from what was signed (tampered)",
                path=rel,
                diff=ManifestDiff(changed=(rel,)),
                hint="restore the item from a trusted copy, or re-sign the dataset",
            )
        # What was read is what was signed, whatever happened to the file meanwhile;
        # ``key`` is its stat before the read: a later change gives another key.
        if self._cache is not None and not hashing.is_racy(key[3], key[4], recorded_ns):
            self._verified[rel] = (key, st, recorded_ns)
        if self._log is not None:
            self._log.read(rel, expected)
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
            self._verified[rel] = (key, st, 0)  # already in the cache file
            return True
        return False

    def _read_bytes(self, path: str | PurePath) -> bytes:
        """``read_bytes`` for large, unsigned-but-allowed and encrypted items."""
        rel, expected, accept = self._expect(path)
        if expected is not None and self._decrypt is None and path != rel:
            return self.read_bytes(rel)  # a Path, or another spelling: the fast path
        if self._decrypt is not None or expected is None:
            with self.open(rel) as f:
                return f.read()
        recorded_ns = time.time_ns()
        fd, st = open_item(self._prefix, rel)
        with VerifiedReader(
            FdSource(fd, st, rel),
            name=rel,
            expected=expected,
            accept=accept,
            expected_size=self._sizes.get(rel),
        ) as reader:
            data = reader.read()
        if self._log is not None:
            self._log.read(rel, expected)
        if self._cache is not None and not hashing.is_racy(
            st.st_mtime_ns, st.st_ctime_ns, recorded_ns
        ):
            self._verified[rel] = (stat_key(st), st, recorded_ns)
        return data

    def _save_cache(self) -> None:
        """Move what this process verified into the stat cache file."""
        cache = self._cache
        if cache is None:
            return
        for rel, (_key, st, recorded_ns) in list(self._verified.items()):
            if recorded_ns:
                digest = self._resources.get(rel)
                if digest is not None:
                    size = st.st_size
                    cache.record(
                        self._cache_root, rel, st, recorded_ns, hashing.FileDigest(size, digest)
                    )
                self._verified[rel] = (_key, st, 0)
        cache.save()

    def verify_all(self, *, workers: int | None = None) -> int:
        """Hash every allowed item on the threaded hashing engine; raise on any difference.

        Returns the number of items checked. Unchanged items recorded in the
        stat cache are not read again (``use_cache=False`` reads them all).
        """
        self._ensure_process()
        if self._decrypt is not None:
            for rel in self._resources:
                with self.open(rel) as f:
                    while f.read(1 << 20):
                        pass
            return len(self._resources)
        missing = [
            rel
            for rel in self._resources
            if not os.path.isfile(os.path.join(self._root_str, rel))
            or os.path.islink(os.path.join(self._root_str, rel))
        ]
        present = [rel for rel in self._resources if rel not in set(missing)]
        try:
            digests = hashing.hash_files(
                self.root, present, workers=workers, cache=self._cache, rehash=False
            )
        except OperationalError as exc:
            raise IntegrityError(
                f"an item could not be verified: {exc.message}", path=exc.path, hint=exc.hint
            ) from None
        changed = [rel for rel in present if digests[rel].sha256 != self._resources[rel]]
        self._save_cache()
        if changed or missing:
            raise IntegrityError(
                f"{self.root} does not match what {self.signer} signed "
                f"({len(changed)} changed, {len(missing)} missing)",
                path=self.bundle,
                diff=ManifestDiff(changed=tuple(sorted(changed)), missing=tuple(sorted(missing))),
                hint="restore the listed items, or re-sign if the change is intended",
            )
        return len(present)

    # --- read-ahead (readahead.py) --------------------------------------------------

    def _start_readahead(self) -> ReadAhead | None:
        threads, memory, items, auto = self._readahead_options
        if threads <= 0 or memory <= 0 or self._decrypt is not None:
            return None
        cache = self._cache
        probe = None
        if cache is not None and len(cache):
            root = self._cache_root
            resources = self._resources

            def probe(rel: str, st: os.stat_result) -> bool:
                hit = cache.lookup(root, rel, st)
                return hit is not None and hit.sha256 == resources.get(rel)

        ahead = ReadAhead(
            prefix=self._prefix,
            resources=self._resources,
            sizes=self._sizes,
            files=list(self._resources),
            skip=self._verified,
            probe=probe,
            threads=threads,
            max_bytes=memory,
            max_items=items,
            spare_cpu_only=auto,
        )
        self._ahead = ahead
        self._ahead_finalizer = weakref.finalize(self, ahead.close)  # at GC and at exit
        return ahead

    def prefetch(self, paths: Iterable[str | PurePath]) -> None:
        """Read these items ahead, in this order: a hint, replacing any earlier one.

        Threads read and hash the next items of ``paths`` (see
        :mod:`.readahead`; at most ``readahead_items`` ahead and
        ``readahead_memory`` bytes); :meth:`read_bytes` then serves the bytes
        they hashed. Paths that are not signed, or denied, are left out here
        (reading them still raises). Use it with a sampler's order, e.g.
        ``ds.prefetch([paths[i] for i in indices])``.
        """
        self._ensure_process()
        ahead = self._ahead if self._ahead is not None else self._start_readahead()
        if ahead is None:
            return
        resources = self._resources
        order: list[str] = []
        for p in paths:
            if type(p) is str and p in resources:
                order.append(p)
                continue
            try:
                rel, digest = self._find(p)
            except IntegrityError:
                continue
            if digest is not None:
                order.append(rel)
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
        """Stop the read-ahead threads, write the stat cache (also at exit), flush the journal."""
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
