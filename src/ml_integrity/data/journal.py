"""The training journal: which items of which signed datasets training read.

A :class:`Journal` is handed to every :class:`~ml_integrity.data.VerifiedDataset`
of a run. It records, per dataset and split, the dataset's manifest root
digest, its bundle's digest and signer, and per item the path, the signed
digest and how many times it was read (an item counts once its digest was
verified). :meth:`Journal.seal` signs it as an in-toto Statement whose
subject is the model (its OMS root digest, the folder hashed as ``sign``
hashes it) and whose predicate, :data:`JOURNAL_PREDICATE_TYPE`, is documented
in ``docs/format.md``. It is wrapped in a DSSE envelope inside a Sigstore
bundle, by the same signers as ``ml-integrity sign`` (a key, a key with a
certificate chain, or Sigstore keyless).

Worker processes: a journal used in a process other than the one that made
it (a forked or spawned ``DataLoader`` worker) appends its records, one JSON
line per read, to its own file in the journal's spool folder; the owner merges
every spool file when it is asked for its records (:meth:`Journal.items`,
:meth:`Journal.seal`). Nothing is lost when a worker is killed after a read.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml_integrity.core import oms
from ml_integrity.data import merkle
from ml_integrity.data import process as _process
from ml_integrity.errors import UsageError

if TYPE_CHECKING:
    from ml_integrity.core.signing import Signer

__all__ = [
    "INLINE_LIMIT",
    "JOURNAL_PREDICATE_TYPE",
    "DatasetInfo",
    "DatasetLog",
    "Journal",
    "SealResult",
    "model_digest",
]

JOURNAL_PREDICATE_TYPE = "https://ml-integrity.github.io/training-journal/v1"
"""The predicate type of a sealed journal (``docs/format.md``, "Training journal")."""

INLINE_LIMIT = 10_000
"""Items up to which the predicate lists them inline; beyond, a JSON-lines sidecar."""

SIDECAR_SUFFIX = ".items.jsonl"


@dataclass(frozen=True)
class DatasetInfo:
    """One opened dataset (and split), as the journal names it."""

    name: str
    split: str | None
    root_digest: str
    files: int
    bundle_digest: str
    signer: str
    method: str
    repository: str | None = None
    version: int | None = None

    @property
    def key(self) -> str:
        return f"{self.root_digest}/{self.bundle_digest}/{self.split or ''}"


@dataclass
class DatasetLog:
    """The reads of one dataset (and split): path -> [signed digest, reads]."""

    info: DatasetInfo
    journal: Journal
    items: dict[str, list[Any]] = field(default_factory=dict)

    def read(self, path: str, digest: str) -> None:
        journal = self.journal
        if journal._owner_pid != _process.PID:
            journal._spool_read(self, path, digest)
            return
        entry = self.items.get(path)
        if entry is None:
            self.items[path] = [digest, 1]
        else:
            entry[1] += 1


@dataclass(frozen=True)
class SealResult:
    output: Path
    sidecar: Path | None
    model_name: str
    model_digest: str
    datasets: int
    items: int
    signer: str


class Journal:
    """Records what :class:`~ml_integrity.data.VerifiedDataset` objects read."""

    def __init__(self) -> None:
        self._owner_pid = os.getpid()
        self._logs: dict[str, DatasetLog] = {}
        self._spool = Path(tempfile.mkdtemp(prefix="ml-integrity-journal-"))
        self._spool_file: Any = None
        self._spool_pid = 0
        self._announced: set[str] = set()
        self.started = _now()

    # --- recording ---------------------------------------------------------------

    def dataset(self, info: DatasetInfo) -> DatasetLog:
        """The log of ``info`` (made on first use); its reads go into this journal."""
        log = self._logs.get(info.key)
        if log is None:
            log = self._logs[info.key] = DatasetLog(info, self)
        return log

    def _spool_read(self, log: DatasetLog, path: str, digest: str) -> None:
        if self._spool_pid != os.getpid():  # first record in this process
            self._spool_pid = os.getpid()
            self._announced = set()
            self._logs = {k: DatasetLog(v.info, self) for k, v in self._logs.items()}
            name = f"{os.getpid()}-{os.urandom(4).hex()}.jsonl"
            self._spool_file = open(self._spool / name, "ab", buffering=0)  # noqa: SIM115
        out = self._spool_file
        key = log.info.key
        if key not in self._announced:
            out.write(json.dumps({"dataset": asdict(log.info)}).encode() + b"\n")
            self._announced.add(key)
        out.write(json.dumps({"key": key, "path": path, "sha256": digest}).encode() + b"\n")

    def flush(self) -> None:
        """Nothing is buffered (worker records are written as they happen); kept for symmetry."""
        return None

    def _collect(self) -> None:
        """Merge the spool files of worker processes into this journal (owner only)."""
        if self._owner_pid != os.getpid() or not self._spool.is_dir():
            return
        for spool in sorted(self._spool.glob("*.jsonl")):
            try:
                data = spool.read_bytes()
            except OSError:
                continue
            keep = data[: data.rfind(b"\n") + 1]  # a line being written is left for later
            for line in keep.splitlines():
                self._merge_line(json.loads(line))
            rest = data[len(keep) :]
            if rest:
                spool.write_bytes(rest)  # pragma: no cover - a worker still writing
            else:
                spool.unlink()

    def _merge_line(self, doc: dict[str, Any]) -> None:
        if "dataset" in doc:
            info = DatasetInfo(**doc["dataset"])
            self.dataset(info)
            return
        log = self._logs[doc["key"]]
        entry = log.items.get(doc["path"])
        if entry is None:
            log.items[doc["path"]] = [doc["sha256"], 1]
        else:
            entry[1] += 1

    def merge(self, other: Journal) -> None:
        """Add ``other``'s records (another rank or host) to this journal."""
        other._collect()
        for key, log in other._logs.items():
            mine = self.dataset(log.info)
            for path, (digest, reads) in log.items.items():
                entry = mine.items.get(path)
                if entry is None:
                    mine.items[path] = [digest, reads]
                else:
                    entry[1] += reads
            del key

    def items(self) -> dict[DatasetInfo, dict[str, tuple[str, int]]]:
        """Every dataset and what was read of it: path -> (digest, reads)."""
        self._collect()
        return {
            log.info: {p: (d, n) for p, (d, n) in log.items.items()} for log in self._logs.values()
        }

    def close(self) -> None:
        """Remove the spool folder (after :meth:`seal`, or to drop the records)."""
        if self._owner_pid == os.getpid():
            shutil.rmtree(self._spool, ignore_errors=True)

    def __getstate__(self) -> dict[str, Any]:
        return {
            "owner": self._owner_pid,
            "logs": [log.info for log in self._logs.values()],
            "spool": self._spool,
            "started": self.started,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._owner_pid = state["owner"]
        self._spool = state["spool"]
        self._spool_file = None
        self._spool_pid = 0
        self._announced = set()
        self.started = state["started"]
        self._logs = {}
        for info in state["logs"]:
            self.dataset(info)

    # --- sealing -----------------------------------------------------------------

    def statement(
        self,
        *,
        model_name: str,
        model_root: str,
        inline_limit: int = INLINE_LIMIT,
        sidecar_name: str = "",
    ) -> tuple[bytes, bytes | None]:
        """The in-toto statement to sign and, for many items, the sidecar's bytes."""
        from ml_integrity import __version__

        datasets = self.items()
        if not datasets:
            raise UsageError(
                "the journal recorded no dataset",
                hint="pass journal=JOURNAL to every VerifiedDataset the training reads",
            )
        ordered = sorted(
            datasets.items(), key=lambda kv: (kv[0].name, kv[0].split or "", kv[0].key)
        )
        total = sum(len(items) for _, items in ordered)
        inline = total <= inline_limit
        sidecar_lines: list[bytes] = []
        entries: list[dict[str, object]] = []
        for index, (info, items) in enumerate(ordered):
            lines = [
                merkle.item_line(index, path, reads, digest)
                for path, (digest, reads) in sorted(items.items())
            ]
            entry: dict[str, object] = {
                "name": info.name,
                "split": info.split,
                "manifest": {"sha256": info.root_digest, "files": info.files},
                "bundle": {
                    "sha256": info.bundle_digest,
                    "signer": info.signer,
                    "method": info.method,
                },
                "items": {
                    "count": len(items),
                    "reads": sum(n for _, n in items.values()),
                    "merkleRoot": {"sha256": merkle.merkle_root(lines)},
                },
            }
            if info.repository is not None or info.version is not None:
                entry["binding"] = {"repository": info.repository, "version": info.version}
            if inline:
                entry["items"]["list"] = [json.loads(line) for line in lines]  # type: ignore[index]
            else:
                sidecar_lines.extend(lines)
            entries.append(entry)
        predicate: dict[str, object] = {
            "tool": {"name": "ml-integrity", "version": __version__},
            "started": self.started,
            "sealed": _now(),
            "datasets": entries,
        }
        sidecar = None
        if not inline:
            import hashlib

            sidecar = b"".join(line + b"\n" for line in sidecar_lines)
            predicate["sidecar"] = {
                "name": sidecar_name,
                "sha256": hashlib.sha256(sidecar).hexdigest(),
                "lines": len(sidecar_lines),
            }
        statement = {
            "_type": oms.STATEMENT_TYPE,
            "subject": [{"name": model_name, "digest": {"sha256": model_root}}],
            "predicateType": JOURNAL_PREDICATE_TYPE,
            "predicate": predicate,
        }
        return json.dumps(statement, indent=2, ensure_ascii=False).encode("utf-8"), sidecar

    def seal(
        self,
        *,
        model: str | Path,
        key: str | Path | None = None,
        sigstore: bool = False,
        output: str | Path,
        cert_chain: Sequence[str | Path] = (),
        password: bytes | None = None,
        identity_token: str | None = None,
        staging: bool = False,
        trust_config: str | Path | None = None,
        signer: Signer | None = None,
        ignore_paths: Sequence[str] = (),
        inline_limit: int = INLINE_LIMIT,
    ) -> SealResult:
        """Sign the journal for ``model`` (a folder or file) into ``output``.

        Signers, as ``ml-integrity sign``: ``key`` (a private key, optionally
        with ``cert_chain``), or ``sigstore=True`` (keyless: ``identity_token``,
        else the CI's ambient credential; ``staging`` or ``trust_config`` for
        other instances), or a ready ``signer``. With more than ``inline_limit``
        items, the items go into ``OUTPUT.items.jsonl`` beside the journal.
        """
        from ml_integrity.core.signing import write_atomic

        out = Path(output)
        model_path = Path(model)
        chosen = _signer(
            key=key,
            sigstore=sigstore,
            cert_chain=cert_chain,
            password=password,
            identity_token=identity_token,
            staging=staging,
            trust_config=trust_config,
            signer=signer,
        )
        sidecar_path = out.with_name(out.name + SIDECAR_SUFFIX)
        name, root = model_digest(model_path, [*ignore_paths], outputs=[out, sidecar_path])
        statement, sidecar = self.statement(
            model_name=name,
            model_root=root,
            inline_limit=inline_limit,
            sidecar_name=sidecar_path.name,
        )
        bundle = chosen.sign_statement(statement)
        if sidecar is not None:
            write_atomic(sidecar_path, sidecar)
        write_atomic(out, bundle.encode("utf-8"))
        counts = self.items()
        return SealResult(
            output=out,
            sidecar=sidecar_path if sidecar is not None else None,
            model_name=name,
            model_digest=root,
            datasets=len(counts),
            items=sum(len(v) for v in counts.values()),
            signer=chosen.describe(),
        )


def model_digest(
    model: Path, ignore_paths: Sequence[str] = (), *, outputs: Sequence[Path] = ()
) -> tuple[str, str]:
    """(name, OMS root digest) of a model folder or file, hashed as ``sign`` hashes it.

    ``outputs`` inside the folder (the journal and its sidecar) are left out,
    as ``sign`` leaves out a bundle written inside the folder.
    """
    from ml_integrity.core import manifest, signing

    if not model.exists():
        raise UsageError("no such file or directory", path=model)
    ignores = [*ignore_paths, *(i for o in outputs for i in signing.bundle_ignores(model, o))]
    m = manifest.build_from_directory(model, ignore=ignores)
    return model.resolve().name, oms.root_digest([e.sha256 for e in m.entries])


def _signer(
    *,
    key: str | Path | None,
    sigstore: bool,
    cert_chain: Sequence[str | Path],
    password: bytes | None,
    identity_token: str | None,
    staging: bool,
    trust_config: str | Path | None,
    signer: Signer | None,
) -> Signer:
    given = [n for n, on in (("key", key), ("sigstore", sigstore), ("signer", signer)) if on]
    if len(given) != 1:
        raise UsageError(
            "give exactly one of key=, sigstore=True or signer= to seal the journal",
            hint="the journal is signed as 'ml-integrity sign' signs a model",
        )
    if signer is not None:
        return signer
    if key is not None:
        from ml_integrity.trust.keys import KeySigner

        return KeySigner(Path(key), cert_chain=[Path(c) for c in cert_chain], password=password)
    from ml_integrity.trust.sigstore import SigstoreSigner

    return SigstoreSigner(
        identity_token=identity_token,
        staging=staging,
        trust_config=None if trust_config is None else Path(trust_config),
    )


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
