"""Running git-lfs: the one place (with :mod:`.runner`) that starts processes for LFS.

- :func:`require_git_lfs` finds ``git-lfs`` or raises a ToolError (exit 3)
  with an install hint;
- :class:`Child` is a helper process with pipes (``git-lfs filter-process``
  behind the filter proxy, ``git-lfs standalone-file`` behind the transfer
  agent), stopped with a timeout;
- :func:`run_git_lfs` runs ``git lfs ARGS`` with its output going to ours;
- :func:`git_credential_fill` asks git for HTTP credentials.

The LFS parts themselves: :mod:`.pktline` (the filter protocol's framing),
:mod:`.filter` (the filter proxy), :mod:`.agent` (the transfer agent),
:mod:`.batch` (the batch API client); pointers and the object store are
:mod:`ml_integrity.core.lfs`.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, cast

from ml_integrity.errors import ToolError

__all__ = ["INSTALL_HINT", "Child", "git_credential_fill", "require_git_lfs", "run_git_lfs"]

INSTALL_HINT = (
    "install Git LFS (Debian/Ubuntu: apt-get install git-lfs; macOS: brew install git-lfs; "
    "https://git-lfs.com) and run `git lfs install`"
)


def require_git_lfs() -> str:
    """Path of the ``git-lfs`` executable, or a ToolError (exit 3) with an install hint."""
    exe = shutil.which("git-lfs")
    if exe is None:
        raise ToolError("git-lfs is not installed or not on PATH", hint=INSTALL_HINT)
    return exe


class Child:
    """A helper process with its stdin and stdout as pipes (stderr is ours)."""

    def __init__(self, proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
        self._proc = proc

    @classmethod
    def start(
        cls,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        text: bool = False,
        cwd: Path | None = None,
    ) -> Child:
        """Start ``argv``; a ToolError (exit 3) when it cannot be started."""
        try:
            proc: subprocess.Popen[bytes] | subprocess.Popen[str]
            if text:
                proc = subprocess.Popen(
                    list(argv),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    env=None if env is None else dict(env),
                    cwd=cwd,
                    text=True,
                    bufsize=1,
                )
            else:
                proc = subprocess.Popen(
                    list(argv),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    env=None if env is None else dict(env),
                    cwd=cwd,
                )
        except OSError as exc:
            raise ToolError(f"cannot start {argv[0]}: {exc}", hint=INSTALL_HINT) from exc
        return cls(proc)

    def binary_pipes(self) -> tuple[IO[bytes], IO[bytes]]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        return cast("IO[bytes]", self._proc.stdin), cast("IO[bytes]", self._proc.stdout)

    def text_pipes(self) -> tuple[IO[str], IO[str]]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        return cast("IO[str]", self._proc.stdin), cast("IO[str]", self._proc.stdout)

    def poll(self) -> int | None:
        return self._proc.poll()

    def kill(self) -> None:
        """End it at once (a helper that was never asked anything)."""
        with contextlib.suppress(OSError):
            self._proc.kill()
        self._proc.wait()
        for pipe in (self._proc.stdin, self._proc.stdout):
            with contextlib.suppress(OSError, ValueError):
                if pipe is not None:
                    pipe.close()

    def stop(self, *, timeout: float) -> None:
        """Close its stdin and wait; kill it when it does not end in time."""
        with contextlib.suppress(OSError, ValueError):
            assert self._proc.stdin is not None
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def git_credential_fill(url: str, *, cwd: Path, env: Mapping[str, str]) -> dict[str, str]:
    """Ask ``git credential fill`` for credentials of ``url`` (no prompt: GIT_TERMINAL_PROMPT=0)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    query = f"protocol={parts.scheme}\nhost={parts.netloc}\npath={parts.path.lstrip('/')}\n\n"
    proc = subprocess.run(
        ["git", "credential", "fill"],
        input=query.encode(),
        capture_output=True,
        cwd=cwd,
        env={**env, "GIT_TERMINAL_PROMPT": "0"},
        check=False,
    )
    if proc.returncode != 0:
        return {}
    out = {}
    for line in proc.stdout.decode().splitlines():
        k, _, v = line.partition("=")
        out[k] = v
    return out


def run_git_lfs(
    args: list[str], *, cwd: Path, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``git lfs ARGS`` with its output going to our stdout/stderr."""
    require_git_lfs()
    return subprocess.run(
        ["git", "lfs", *args], cwd=cwd, env=None if env is None else dict(env), check=False
    )
