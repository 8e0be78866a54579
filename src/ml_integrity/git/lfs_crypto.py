"""Encrypted Git LFS content: the transfer agent encrypts on upload and decrypts on download.

Set ``git config ml-integrity.recipient PUB`` (repeatable) and every LFS object
the agent uploads is encrypted for those recipients first; set
``ml-integrity.decryptionKey KEY`` (repeatable) and downloads of encrypted
objects are decrypted, their plaintext checked against the pointer's oid, and
handed to git-lfs. The pointers, the local object store and the signed
manifest hold the plaintext's oid and size exactly as without encryption (as
git-annex encrypts at the special-remote transfer): nothing else in the Git
integration changes. Trade-offs and what other clients see: ``docs/lfs.md``.

On the remote, an encrypted object is stored under the plaintext's oid with
the ciphertext's size, which is a function of the plaintext size alone: the
header is padded to :data:`HEADER_SIZE` and the frames are 1 MiB
(:func:`ml_integrity.crypto.message.ciphertext_size`). A download asks the
server for that size first; an object stored in plaintext (pushed before
encryption was configured) has the plaintext size and is fetched as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml_integrity.crypto import message, stream
from ml_integrity.crypto.providers import KeyProvider
from ml_integrity.errors import Error, IntegrityError, ToolError, UsageError
from ml_integrity.git.agent import TransferAgent
from ml_integrity.git.runner import Git

if TYPE_CHECKING:
    from ml_integrity.core.lfs import Pointer
    from ml_integrity.git.repository import Repository

RECIPIENT = "ml-integrity.recipient"
DECRYPTION_KEY = "ml-integrity.decryptionKey"
HEADER_SIZE = 8192
"""Every LFS ciphertext header is padded to this size (room for about 55 X25519 recipients)."""
FRAME = message.DEFAULT_FRAME

KEY_HINT = (
    "ask the repository's publisher to add your X25519 public key as a recipient "
    "(make one with 'ml-integrity keygen --type x25519 --out KEY', send KEY.pub), then "
    "'git config ml-integrity.decryptionKey KEY' and 'ml-integrity pull'"
)


def lfs_ciphertext_size(plaintext_size: int) -> int:
    return message.ciphertext_size(plaintext_size, FRAME, HEADER_SIZE)


def _config_all(git: Git, key: str) -> list[str]:
    out = git.run(["config", "--get-all", key], check=False)
    if out.returncode != 0:
        return []
    return [v for v in out.stdout.decode("utf-8", "surrogateescape").splitlines() if v]


def _resolve(git: Git, value: str) -> str:
    path = Path(value).expanduser()
    if path.is_absolute() or not (git.root / path).exists():
        return str(path) if path.exists() else value  # a plug-in's SCHEME:REF stays as given
    return str(git.root / path)


def configured_keys(git: Git) -> tuple[list[KeyProvider], list[KeyProvider]]:
    """The recipients and the decryption keys of ``git config`` (both may be empty).

    A key of the wrong kind is a :class:`~ml_integrity.errors.UsageError` naming
    the file and the setting, so a push never falls back to plaintext.
    """
    from ml_integrity.crypto import keys

    recipients: list[KeyProvider] = []
    decryption: list[KeyProvider] = []
    for setting, loader, out in (
        (RECIPIENT, keys.load_recipient, recipients),
        (DECRYPTION_KEY, keys.load_decryption_key, decryption),
    ):
        for value in _config_all(git, setting):
            try:
                out.append(loader(_resolve(git, value)))
            except UsageError as exc:
                exc.hint = f"fix git config {setting}; {exc.hint}" if exc.hint else exc.hint
                raise
    return recipients, decryption


def wants_encryption(git: Git) -> bool:
    """Whether either setting is present (one git run; no key is read)."""
    config = git.config_matching(r"^ml-integrity\.(recipient|decryptionkey)$")
    return bool(config)


class EncryptingTransferAgent(TransferAgent):
    """The transfer agent, encrypting uploads and decrypting downloads (see the module)."""

    def __init__(
        self,
        *args: Any,
        recipients: Sequence[KeyProvider] = (),
        decryption_keys: Sequence[KeyProvider] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.recipients = list(recipients)
        self.decryption_keys = list(decryption_keys)
        self._capture: list[Mapping[str, object]] | None = None
        """Replies held back while a plaintext download is tried (see _plain_then_encrypted)."""

    def _send(self, msg: Mapping[str, object]) -> None:
        if self._capture is not None:
            self._capture.append(msg)
        else:
            super()._send(msg)

    def _complete(self, oid: str, error: str | None = None, path: Path | None = None) -> None:
        reply: dict[str, object] = {"event": "complete", "oid": oid}
        if error is not None:
            reply["error"] = {"code": 2, "message": error}
        if path is not None:
            reply["path"] = str(path)
        self._send(reply)

    def _transfer(self, msg: Mapping[str, Any]) -> None:
        oid = str(msg.get("oid", ""))
        size = int(msg.get("size", 0))
        try:
            if msg.get("event") == "upload":
                if not self.recipients:
                    super()._transfer(msg)
                    return
                self._upload(oid, Path(str(msg.get("path"))))
                return
            reason = self.gate.allow_download(oid, size)
            if reason is not None:
                super()._transfer(msg)  # the gate refuses it, with its own message
                return
            if self.decryption_keys:  # an encrypted copy first, then a plaintext one
                if not self._download(oid, size):
                    super()._transfer(msg)
                return
            self._plain_then_encrypted(msg, oid, size)
        except Error as exc:
            said = exc.message + (f"; {exc.hint}" if exc.hint else "")
            self.log(f"{oid}: {exc.message}" + (f" (hint: {exc.hint})" if exc.hint else ""))
            if isinstance(exc, IntegrityError):  # refused, not failed: clone/pull exit 1
                self.on_refusal(oid, said)
            self._complete(oid, said)

    def _plain_then_encrypted(self, msg: Mapping[str, Any], oid: str, size: int) -> None:
        """Without a key: the plaintext copy as always; when there is none, say whether an
        encrypted one exists (and how to get the key) instead of "missing object"."""
        replies: list[Mapping[str, object]] = []
        self._capture = replies
        try:
            super()._transfer(msg)
        finally:
            self._capture = None
        failed = any(r.get("event") == "complete" and r.get("error") for r in replies)
        if failed and self._download(oid, size):
            return  # _download raises for an encrypted copy without a key
        for reply in replies:
            self._send(reply)

    # -- upload: encrypt into a temporary file, send that -------------------------

    def _temp(self, oid: str, what: str) -> Path:
        self.store.tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.store.tmp_dir, prefix=f"{oid}-{what}-")
        os.close(fd)
        return Path(name)

    def _upload(self, oid: str, plain: Path) -> None:
        ct = self._temp(oid, "encrypted")
        try:
            with plain.open("rb") as src, ct.open("wb") as dst:
                stream.encrypt_stream(
                    src, dst, self.recipients, frame_length=FRAME, header_size=HEADER_SIZE
                )
            ct_size = ct.stat().st_size
            if self._child is not None:
                reply = self._relay(
                    {"event": "upload", "oid": oid, "size": ct_size, "path": str(ct)}
                )
                self._send(reply)
            elif self._http is not None:
                self._http.upload(oid, ct_size, ct, self._progress(oid))
                self._complete(oid)
            else:
                raise ToolError("transfer agent not initialised")
        finally:
            with contextlib.suppress(OSError):
                ct.unlink()

    def _relay(self, msg: Mapping[str, object]) -> dict[str, Any]:
        """Send ``msg`` to git-lfs's standalone-file child and pass its replies on."""
        self._child_send(dict(msg))
        while True:
            reply = self._child_recv()
            if reply.get("event") == "complete":
                return reply
            self._send(reply)

    # -- download: the ciphertext's size first; decrypt; check the oid ------------

    def _download(self, oid: str, size: int) -> bool:
        """Download and decrypt an encrypted object; False when the remote has no such copy."""
        ct_size = lfs_ciphertext_size(size)
        ct = self._fetch(oid, ct_size)
        if ct is None:
            return False
        try:
            if not self.decryption_keys:
                raise IntegrityError(
                    f"LFS object {oid} is encrypted and no decryption key is configured",
                    hint=KEY_HINT,
                )
            plain = self._temp(oid, "plain")
            try:
                digest = hashlib.sha256()
                n = 0
                with (
                    stream.open_decrypted(ct, self.decryption_keys) as reader,
                    plain.open("wb") as out,
                ):
                    frames = reader.frames()
                    while (frame := frames.next_frame()) is not None:
                        digest.update(frame)
                        out.write(frame)
                        n += len(frame)
                if digest.hexdigest() != oid or n != size:
                    raise IntegrityError(
                        f"LFS object {oid} decrypts to other content (sha256 "
                        f"{digest.hexdigest()}, {n} bytes)",
                        hint="the remote holds another object under this oid; it was not used",
                    )
            except BaseException:
                with contextlib.suppress(OSError):
                    plain.unlink()
                raise
        except IntegrityError as exc:
            if "not a recipient" in exc.message:
                exc.hint = KEY_HINT
            raise
        finally:
            with contextlib.suppress(OSError):
                ct.unlink()
        self._complete(oid, path=plain)
        return True

    def _fetch(self, oid: str, ct_size: int) -> Path | None:
        """The remote's copy of ``oid`` with size ``ct_size`` in a temporary file, or None."""
        if self._child is not None:
            reply = self._relay({"event": "download", "oid": oid, "size": ct_size})
            if reply.get("error") or not reply.get("path"):
                return None
            return Path(str(reply["path"]))
        if self._http is None:
            raise ToolError("transfer agent not initialised")
        try:
            obj = self._http._batch("download", oid, ct_size)
        except ToolError:
            return None  # missing, or stored with another size (plaintext): not ours
        action = (obj.get("actions") or {}).get("download")
        if not action:
            return None
        return self._get(oid, action, ct_size)

    def _get(self, oid: str, action: Mapping[str, Any], size: int) -> Path:
        import requests

        assert self._http is not None
        path = self._temp(oid, "encrypted")
        done = 0
        progress: Callable[[int, int], None] = self._progress(oid)
        try:
            resp = self._http.session.get(
                action["href"], headers=action.get("header") or {}, stream=True, timeout=60
            )
            if resp.status_code != 200:
                raise ToolError(f"download of {oid} failed: HTTP {resp.status_code}")
            with path.open("wb") as f:
                for chunk in resp.iter_content(1 << 20):
                    f.write(chunk)
                    done += len(chunk)
                    if done > size:
                        raise ToolError(f"download of {oid} is larger than announced")
            progress(done, done)
        except requests.RequestException as exc:
            path.unlink()
            raise ToolError(f"download of {oid} failed: {exc}") from exc
        except BaseException:
            path.unlink()
            raise
        return path


def make_agent(git: Git, *args: Any, **kwargs: Any) -> TransferAgent:
    """The transfer agent for this repository: it encrypts and decrypts when git config
    asks for it, and without keys it still tells an encrypted object from a missing one."""
    try:
        recipients, decryption = configured_keys(git) if wants_encryption(git) else ([], [])
    except UsageError as exc:
        return _Misconfigured(exc, *args, **kwargs)
    return EncryptingTransferAgent(
        *args, recipients=recipients, decryption_keys=decryption, **kwargs
    )


def refused_downloads(
    repo: Repository, pointers: Mapping[str, Pointer], remote: str = "origin"
) -> dict[str, str]:
    """path -> why its object was refused rather than downloaded, for the pointers whose
    object is not in the local store: git-lfs reports an agent's refusal as a failed
    transfer, and ``clone`` and ``pull`` must tell a refusal (exit 1) from an object
    missing on the server (exit 3).

    Refusals come from the transfer agent's record (:func:`.gates.download_refusals`)
    and, with no decryption key configured, from the remote itself: ``clone`` runs
    git-lfs's own transfers, which call an encrypted object "missing", so each absent
    object is looked up at its ciphertext's size (nothing is kept)."""
    from ml_integrity.git.gates import download_refusals

    recorded = download_refusals(repo)
    out: dict[str, str] = {}
    absent: dict[str, Pointer] = {}
    for path, pointer in pointers.items():
        if pointer.oid in recorded:
            out[path] = recorded[pointer.oid]
        elif not repo.store.has(pointer.oid):
            absent[path] = pointer
    if absent and not _config_all(repo.git, DECRYPTION_KEY):
        out.update(_encrypted_on_remote(repo, absent, remote))
    return out


class _Everything:
    def allow_download(self, oid: str, size: int) -> str | None:
        return None  # a lookup only: nothing it finds enters the store


def _encrypted_on_remote(
    repo: Repository, pointers: Mapping[str, Pointer], remote: str
) -> dict[str, str]:
    from ml_integrity.git.lfs import git_credential_fill
    from ml_integrity.git.runner import clean_env

    agent = EncryptingTransferAgent(
        _Everything(),
        repo.lfs_endpoint,
        store=repo.store,
        credentials=lambda url: git_credential_fill(url, cwd=repo.root, env=clean_env()),
        stdin=io.StringIO(),
        stdout=io.StringIO(),
        cwd=repo.root,
    )
    out: dict[str, str] = {}
    try:
        agent._init({"event": "init", "operation": "download", "remote": remote})
        for path, pointer in pointers.items():
            ct = agent._fetch(pointer.oid, lfs_ciphertext_size(pointer.size))
            if ct is not None:
                with contextlib.suppress(OSError):
                    ct.unlink()
                out[path] = (
                    f"LFS object {pointer.oid} is encrypted and no decryption key is "
                    f"configured; {KEY_HINT}"
                )
    except Error:
        pass  # cannot tell: git-lfs's own message stands (exit 3)
    finally:
        agent._stop()
    return out


class _Misconfigured(TransferAgent):
    """Answers git-lfs's ``init`` with the configuration error: git-lfs shows that message
    (it hides the agent's stderr), and nothing is transferred, in plaintext or otherwise."""

    def __init__(self, error: UsageError, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.error = error

    def _init(self, msg: Mapping[str, Any]) -> None:
        where = f"{self.error.path}: " if self.error.path else ""
        hint = f" (hint: {self.error.hint})" if self.error.hint else ""
        raise UsageError(f"ml-integrity: {where}{self.error.message}{hint}")
