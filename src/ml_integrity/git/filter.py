"""The filter proxy: ``filter.lfs.process`` in front of ``git-lfs filter-process``.

:class:`FilterProxy` is a long-running git filter (pkt-line protocol v2,
:mod:`.pktline`). Clean requests stream through untouched. Smudge requests
are shown to a :class:`SmudgeGate` first (the path and its pointer against
the signed manifest), then the produced content is hashed against the
pointer oid. The ``delay`` capability is passed through (git-lfs downloads
in parallel only when it may delay); a delayed re-request comes with empty
content, so the pointer of every delayed path is remembered. A refused file
keeps its pointer as a refusal stub (the pointer and one more line), which
git-lfs leaves alone and which this proxy cleans back to the pointer.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from ml_integrity.core.lfs import MAX_POINTER_SIZE, Pointer, parse_pointer, parse_refusal_stub
from ml_integrity.errors import ToolError
from ml_integrity.git.early_delay import EarlyDelays
from ml_integrity.git.lfs import Child, require_git_lfs
from ml_integrity.git.pktline import (
    FLUSH,
    MAX_PKT_DATA,
    PktError,
    parse_meta,
    read_list,
    read_pkt,
    write_list,
    write_pkt,
)
from ml_integrity.git.smudge_store import Missing, StoreSmudger

__all__ = ["FilterProxy", "Refusal", "SmudgeGate"]


@dataclass(frozen=True)
class Refusal:
    """Why a smudge was refused, and whether the object must be quarantined."""

    reason: str
    quarantine: bool = True
    internal: bool = False
    """Our own failure, not a verdict: the pointer is kept even in strict mode."""


class SmudgeGate(Protocol):
    """The decisions of the filter proxy (implemented in ``repository.py``)."""

    strict: bool

    def check(self, path: str, oid: str, size: int, meta: Mapping[str, str]) -> Refusal | None:
        """``None`` to let git-lfs smudge ``path``; a Refusal otherwise."""
        ...

    def refused(
        self, path: str, oid: str, size: int, refusal: Refusal, meta: Mapping[str, str]
    ) -> None:
        """Called once per refused file: quarantine the object, say so loudly."""
        ...


@dataclass
class _Pending:
    pointer: Pointer
    meta: dict[str, str] = field(default_factory=dict)


_SPOOL_LIMIT = 32 << 20
_CHILD_CAPS = ("clean", "smudge", "delay")
"""What git is offered: git-lfs's capabilities (``delay`` is dropped from the requests
of a git-lfs without it)."""


class _Buffer:
    """Packets kept in memory up to a limit, then spilled to a temporary file."""

    def __init__(self, tmp_dir: Path | None, limit: int = _SPOOL_LIMIT) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.limit = limit
        self.tmp_dir = tmp_dir
        self.file: IO[bytes] | None = None

    def add(self, pkt: bytes) -> None:
        self.size += len(pkt)
        if self.file is not None:
            self.file.write(pkt)
            return
        self.chunks.append(pkt)
        if self.size > self.limit:
            tmp = None if self.tmp_dir is None else str(self.tmp_dir)
            self.file = tempfile.TemporaryFile(dir=tmp)  # noqa: SIM115 - closed in close()
            for chunk in self.chunks:
                self.file.write(chunk)
            self.chunks = []

    def packets(self) -> Iterator[bytes]:
        if self.file is None:
            yield from self.chunks
            return
        self.file.seek(0)
        while chunk := self.file.read(MAX_PKT_DATA):
            yield chunk

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


class FilterProxy:
    """``filter.lfs.process``: a pkt-line v2 filter in front of ``git-lfs filter-process``."""

    def __init__(
        self,
        gate: SmudgeGate,
        *,
        child_argv: list[str] | None = None,
        child_env: Mapping[str, str] | None = None,
        tmp_dir: Path | None = None,
        stdin: IO[bytes] | None = None,
        stdout: IO[bytes] | None = None,
        store: StoreSmudger | None = None,
    ) -> None:
        self.gate = gate
        self.store = store
        """Smudges allowed objects that the local store holds without git-lfs."""
        self.child_argv = child_argv or [require_git_lfs(), "filter-process"]
        self.child_env = dict(child_env) if child_env is not None else None
        self.tmp_dir = tmp_dir
        self.gin = stdin or sys.stdin.buffer
        self.gout = stdout or sys.stdout.buffer
        self.delayed: dict[str, _Pending] = {}
        self.refusals = 0
        self._child: Child | None = None
        self._git_caps: list[str] = []
        self._child_caps: set[str] | None = None
        self._early = EarlyDelays()

    # -- main loop --

    def serve(self) -> int:
        """Serve git until it closes our stdin. Returns 0, or 3 on a protocol failure."""
        try:
            # git-lfs starts while we talk to git and check the first file; its
            # handshake waits for the first request that needs it (_ensure_child)
            self._child = Child.start(self.child_argv, env=self.child_env)
            self._git_caps = [c for c in self._handshake_git() if c in _CHILD_CAPS]
            write_list(self.gout, [f"capability={c}" for c in self._git_caps])
            self.gout.flush()
            while True:
                try:
                    lines = read_list(self.gin)
                except PktError:
                    break  # git is done with us
                meta = parse_meta(lines)
                try:
                    self._serve_one(lines, meta)
                except PktError as exc:
                    self._child_failed(exc)
                self.gout.flush()
        finally:
            self._stop_child()
        return 0

    def _serve_one(self, lines: list[str], meta: dict[str, str]) -> None:
        cmd = meta.get("command")
        if cmd == "smudge":
            self._smudge(lines, meta)
        elif cmd == "clean":
            self._clean(lines)
        elif cmd == "list_available_blobs":
            self._list_available(lines)
        else:
            self._passthrough(lines, with_content=False)

    def _child_failed(self, exc: PktError) -> None:
        """git-lfs stopped in the middle of a request: its own message is on stderr
        already; say that it stopped (exit 3), never a protocol traceback."""
        code = None
        if self._child is not None:
            self._child.stop(timeout=10)
            code = self._child.poll()
            self._child = None
        raise ToolError(
            f"git-lfs filter-process stopped ({exc}; exit {code}): see git-lfs's message above",
            hint="an object missing on the LFS server, or a network failure; nothing refused "
            "was written",
        )

    # -- handshake --

    def _handshake_git(self) -> list[str]:
        try:
            hello = read_list(self.gin)
        except PktError as exc:  # started by hand, or git went away
            raise ToolError(
                f"no filter handshake from git ({exc})",
                hint="filter-process is run by git (filter.lfs.process), not by hand",
            ) from None
        if not hello or hello[0] != "git-filter-client" or "version=2" not in hello[1:]:
            raise ToolError(f"unexpected filter handshake from git: {hello!r}")
        write_list(self.gout, ["git-filter-server", "version=2"])
        self.gout.flush()
        return [c.partition("=")[2] for c in read_list(self.gin) if c.startswith("capability=")]

    def _ensure_child(self) -> tuple[IO[bytes], IO[bytes]]:
        """git-lfs's stdin and stdout, after its handshake (once)."""
        assert self._child is not None
        cin, cout = self._child.binary_pipes()
        if self._child_caps is None:
            write_list(cin, ["git-filter-client", "version=2"])
            cin.flush()
            hello = read_list(cout)
            if hello[:1] != ["git-filter-server"] or "version=2" not in hello:
                raise ToolError(f"unexpected handshake from git-lfs filter-process: {hello!r}")
            write_list(cin, [f"capability={c}" for c in self._git_caps])
            cin.flush()
            got = {c.partition("=")[2] for c in read_list(cout) if c.startswith("capability=")}
            missing = {"clean", "smudge"} & set(self._git_caps) - got
            if missing:
                raise ToolError(
                    f"git-lfs filter-process does not support {', '.join(sorted(missing))}",
                    hint="update git-lfs (https://git-lfs.com)",
                )
            self._child_caps = got
        return cin, cout

    def _pipes(self) -> tuple[IO[bytes], IO[bytes]]:
        """git-lfs's stdin and stdout, once the answers to requests sent ahead are read."""
        cin, cout = self._ensure_child()
        if self._early.in_flight:
            self._early.settle(cin, cout)
        return cin, cout

    def _stop_child(self) -> None:
        if self._child is None:
            return
        if self._child_caps is None:
            # never greeted (every file came from the store, or git asked nothing): it has
            # done nothing, and closing its stdin would make it complain on stderr
            self._child.kill()
        else:
            self._child.stop(timeout=60)

    # -- requests --

    def _send_request(self, lines: list[str], content: bytes | None) -> None:
        cin, _ = self._pipes()
        if "delay" not in (self._child_caps or ()):  # we offered git delay; this git-lfs cannot
            lines = [x for x in lines if not x.startswith("can-delay=")]
        write_list(cin, lines)
        if content is not None:
            write_pkt(cin, content)
            cin.write(FLUSH)
        cin.flush()

    def _passthrough(self, lines: list[str], *, with_content: bool) -> None:
        """Forward a request and its response untouched, streaming packet by packet."""
        cin, cout = self._pipes()
        write_list(cin, lines)
        if with_content:
            while (pkt := read_pkt(self.gin)) is not None:
                write_pkt(cin, pkt)
            cin.write(FLUSH)
        cin.flush()
        self._copy_response(cout)

    def _copy_response(self, cout: IO[bytes]) -> None:
        status = read_list(cout)
        write_list(self.gout, status)
        if parse_meta(status).get("status") != "success":
            return
        if not _is_content_response(status):
            return
        while (pkt := read_pkt(cout)) is not None:
            write_pkt(self.gout, pkt)
        self.gout.write(FLUSH)
        write_list(self.gout, read_list(cout))

    def _clean(self, lines: list[str]) -> None:
        """Clean streams through git-lfs, except a refusal stub (see
        :meth:`~ml_integrity.core.lfs.Pointer.refusal_stub`): that is cleaned back to
        the pointer it stands for, so a refused path never shows as modified and is
        never committed as a new object."""
        head: list[bytes] = []
        size = 0
        ended = False
        while size < MAX_POINTER_SIZE:
            pkt = read_pkt(self.gin)
            if pkt is None:
                ended = True
                break
            head.append(pkt)
            size += len(pkt)
        if ended and (stub := parse_refusal_stub(b"".join(head))) is not None:
            write_list(self.gout, ["status=success"])
            write_pkt(self.gout, stub.text())
            self.gout.write(FLUSH)
            write_list(self.gout, [])
            return
        cin, cout = self._pipes()
        write_list(cin, lines)
        for pkt in head:
            write_pkt(cin, pkt)
        if not ended:
            while (pkt := read_pkt(self.gin)) is not None:
                write_pkt(cin, pkt)
        cin.write(FLUSH)
        cin.flush()
        self._copy_response(cout)

    def _list_available(self, lines: list[str]) -> None:
        """The delayed files now available (:meth:`EarlyDelays.available`)."""
        cin, cout = self._pipes()
        present = None if self.store is None else self.store.present
        paths, status = self._early.available(cin, cout, lines, self.delayed, present)
        write_list(self.gout, [f"pathname={p}" for p in paths])
        write_list(self.gout, status)

    def _smudge(self, lines: list[str], meta: dict[str, str]) -> None:
        path = meta.get("pathname", "")
        content, spool = self._read_small(self.gin)
        if spool is not None:  # large: cannot be a pointer
            self._smudge_raw(lines, meta, path, spool)
            return
        pending = self.delayed.pop(path, None) if content == b"" else None
        if pending is not None:  # git re-requests a delayed blob with no content
            if self._from_store(path, pending.pointer, meta) != "served":
                # as an ordinary smudge: git-lfs may not have delayed it (EarlyDelays)
                self._early.answered.pop(path, None)
                again = [x for x in lines if not x.startswith("can-delay=")]
                self._forward_and_check(again, pending.pointer.text(), path, pending.pointer, meta)
            return
        pointer = parse_pointer(content)
        if pointer is None:
            spool = self._spool()
            spool.write(content)
            self._smudge_raw(lines, meta, path, spool)
            return
        refusal = self._check(path, pointer.oid, pointer.size, meta)
        if refusal is not None:
            self._refuse(path, pointer, refusal, meta)
            return
        stored = self._from_store(path, pointer, meta)
        if stored == "served":
            return
        if stored == "missing" and self._can_delay_early(pointer, meta):
            self._delay_early(lines, content, path, pointer, meta)
            return
        self._forward_and_check(lines, content, path, pointer, meta)

    def _can_delay_early(self, pointer: Pointer, meta: Mapping[str, str]) -> bool:
        """Would git-lfs surely delay this smudge (an allowed object it must download)?"""
        if meta.get("can-delay") != "1":
            return False
        self._ensure_child()
        return (
            "delay" in (self._child_caps or ())
            and self.store is not None
            and self._early.may_send(pointer)
        )

    def _delay_early(
        self, lines: list[str], content: bytes, path: str, pointer: Pointer, meta: dict[str, str]
    ) -> None:
        """Tell git ``delayed`` now; git-lfs's answer is read later (:mod:`.early_delay`)."""
        assert self._child is not None
        cin, cout = self._child.binary_pipes()
        self._early.send(cin, cout, lines, content, path, pointer.oid)
        self.delayed[path] = _Pending(pointer, dict(meta))
        write_list(self.gout, ["status=delayed"])

    def _from_store(self, path: str, pointer: Pointer, meta: Mapping[str, str]) -> str:
        """Smudge an allowed file from the local store (no round trip through git-lfs):
        ``served`` when answered, only with content whose sha256 and size are the
        pointer's (a mismatch refuses the file). Otherwise git-lfs is asked (and what it
        produces is checked): ``missing`` when the store has no file for it, ``ask``
        for the rest (a failure reading it, another size, the store not in use)."""
        if self.store is None:
            return "ask"
        try:
            got = self.store.load(pointer)
        except Exception:  # e.g. unreadable: git-lfs tries, we check what it gives
            return "ask"
        if got is None:
            return "ask"
        if isinstance(got, Missing):
            return "missing"
        with got:
            if got.matches(pointer):
                got.write_response(self.gout)
            else:
                self._refuse(path, pointer, _corrupt(got.digest, pointer), meta)
        return "served"

    def _check(self, path: str, oid: str, size: int, meta: Mapping[str, str]) -> Refusal | None:
        """The gate's decision; a failure of ours refuses the file (its pointer stays),
        it never aborts the checkout half-way."""
        try:
            return self.gate.check(path, oid, size, meta)
        except Exception as exc:  # fail closed on this one file, keep serving
            return Refusal(
                f"could not be verified (ml-integrity failed: {type(exc).__name__}: {exc})",
                quarantine=False,
                internal=True,
            )

    def _spool(self) -> IO[bytes]:
        """A buffer that stays in memory for small content and spills to the LFS tmp dir."""
        tmp = None if self.tmp_dir is None else str(self.tmp_dir)
        return tempfile.SpooledTemporaryFile(_SPOOL_LIMIT, dir=tmp)

    def _read_small(self, stream: IO[bytes]) -> tuple[bytes, IO[bytes] | None]:
        """The request content; spooled (second item) when not pointer-sized."""
        buf = bytearray()
        spool: IO[bytes] | None = None
        while (pkt := read_pkt(stream)) is not None:
            if spool is None:
                buf += pkt
                if len(buf) >= MAX_POINTER_SIZE:
                    spool = self._spool()
                    spool.write(buf)
            else:
                spool.write(pkt)
        return bytes(buf), spool

    def _forward_and_check(
        self, lines: list[str], content: bytes, path: str, pointer: Pointer, meta: dict[str, str]
    ) -> None:
        self._send_request(lines, content)
        _, cout = self._pipes()
        status = read_list(cout)
        state = parse_meta(status).get("status")
        if state == "delayed":
            self.delayed[path] = _Pending(pointer, dict(meta))
            self._early.waiting.add(path)
            write_list(self.gout, status)
            return
        if state != "success":
            write_list(self.gout, status)
            return
        h = hashlib.sha256()
        buf = _Buffer(self.tmp_dir)
        try:
            while (pkt := read_pkt(cout)) is not None:
                h.update(pkt)
                buf.add(pkt)
            trailer = read_list(cout)
            if parse_meta(trailer).get("status", "success") != "success":
                write_list(self.gout, status)
                write_list(self.gout, [])
                write_list(self.gout, trailer)
                return
            if buf.size < MAX_POINTER_SIZE and _same_pointer(buf, pointer):
                # git-lfs gave the pointer back (GIT_LFS_SKIP_SMUDGE=1, or the object is
                # not local): the file is not fetched, nothing is corrupt. Pass it on.
                write_list(self.gout, status)
                for chunk in buf.packets():
                    write_pkt(self.gout, chunk)
                self.gout.write(FLUSH)
                write_list(self.gout, trailer)
                return
            if h.hexdigest() != pointer.oid or buf.size != pointer.size:
                self._refuse(path, pointer, _corrupt(h.hexdigest(), pointer), meta)
                return
            write_list(self.gout, status)
            for chunk in buf.packets():
                self.gout.write(b"%04x" % (len(chunk) + 4))
                self.gout.write(chunk)
            self.gout.write(FLUSH)
            write_list(self.gout, trailer)
        finally:
            buf.close()

    def _smudge_raw(
        self, lines: list[str], meta: dict[str, str], path: str, spool: IO[bytes]
    ) -> None:
        """Content that is not a pointer (a file committed without LFS): check its digest,
        then give git those bytes as they are (what git-lfs does with such content)."""
        with spool:
            spool.seek(0)
            h = hashlib.sha256()
            size = 0
            while chunk := spool.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
            refusal = self._check(path, h.hexdigest(), size, meta)
            if refusal is not None:
                # There is no pointer to leave in its place: refuse the file outright.
                self._report(path, h.hexdigest(), size, Refusal(refusal.reason, False), meta)
                self.refusals += 1
                write_list(self.gout, ["status=error"])
                return
            # Answered with exactly the bytes just verified, never through git-lfs: it
            # reads some blobs that are no pointer to us (CRLF lines, `size 08`) as
            # pointers, and would write an object in their place.
            write_list(self.gout, ["status=success"])
            spool.seek(0)
            while chunk := spool.read(MAX_PKT_DATA):
                write_pkt(self.gout, chunk)
            self.gout.write(FLUSH)
            write_list(self.gout, [])

    def _report(
        self, path: str, oid: str, size: int, refusal: Refusal, meta: Mapping[str, str]
    ) -> None:
        """The gate's report of a refusal (quarantine, a loud line); its failure is said
        on stderr and never stops the checkout."""
        try:
            self.gate.refused(path, oid, size, refusal, meta)
        except Exception as exc:  # the refusal stands; keep serving
            sys.stderr.write(
                f"ml-integrity: REFUSED {path}: {refusal.reason} (and reporting it failed: "
                f"{type(exc).__name__}: {exc})\n"
            )

    def _refuse(
        self, path: str, pointer: Pointer, refusal: Refusal, meta: Mapping[str, str]
    ) -> None:
        self.refusals += 1
        self._report(path, pointer.oid, pointer.size, refusal, meta)
        if self.gate.strict and not refusal.internal:
            write_list(self.gout, ["status=error"])
            return
        # Lenient: the work tree keeps the pointer as a refusal stub, which git-lfs
        # leaves alone (`git lfs pull` cannot fill it) and our clean turns back into
        # the pointer (git status stays clean).
        write_list(self.gout, ["status=success"])
        write_pkt(self.gout, pointer.refusal_stub())
        self.gout.write(FLUSH)
        write_list(self.gout, [])


def _corrupt(digest: str, pointer: Pointer) -> Refusal:
    return Refusal(
        f"the local LFS object is corrupt (its sha256 is {digest[:12]}..., "
        f"the pointer says {pointer.oid[:12]}...)",
        quarantine=True,
    )


def _same_pointer(buf: _Buffer, pointer: Pointer) -> bool:
    """Is the buffered content the pointer itself (an unfetched file)?"""
    got = parse_pointer(b"".join(buf.packets()))
    return got is not None and got.oid == pointer.oid and got.size == pointer.size


def _is_content_response(status: list[str]) -> bool:
    return parse_meta(status).get("status") == "success"
