"""``ml-integrity filter-process`` (hidden): git's ``filter.lfs.process``.

git starts it once per command and speaks the long-running filter protocol
on stdin/stdout; nothing else may be written to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

_BUFFER = 1 << 16


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "filter-process",
        description="git long-running filter in front of 'git-lfs filter-process' "
        "(set as filter.lfs.process by 'ml-integrity install'; not run by hand).",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ml_integrity.cli.hook import hint_command
    from ml_integrity.errors import Error
    from ml_integrity.git.filter import FilterProxy
    from ml_integrity.git.gates import RefuseAll, SmudgeVerifier, reported_file
    from ml_integrity.git.lfs import require_git_lfs
    from ml_integrity.git.repository import Repository
    from ml_integrity.git.runner import Git
    from ml_integrity.git.smudge_store import StoreSmudger, store_smudge_allowed
    from ml_integrity.trust.resolver import TrustRequest, resolve_trust

    git = Git.discover()
    try:
        trust = resolve_trust(TrustRequest(), "checkout", repo=git)
    except Error as exc:
        # Unusable trust settings refuse every file (its pointer stays); exiting
        # here would leave git's checkout half-done.
        where = f" ({exc.path})" if exc.path else ""
        hint = f"; {exc.hint}" if exc.hint else ""
        refuse_all = RefuseAll(f"the trust settings cannot be used: {exc.message}{where}{hint}")
        return FilterProxy(refuse_all, child_argv=[require_git_lfs(), "filter-process"]).serve()
    repo = Repository(git, trust=trust)
    store = repo.store
    store.tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, allow = tempfile.mkstemp(dir=store.tmp_dir, prefix="ml-integrity-allow-")
    os.close(fd)
    allow_file = Path(allow)
    try:
        gate = SmudgeVerifier(
            repo,
            strict=repo.strict,
            allow_file=allow_file,
            recover_command=f"{hint_command()} pull",
            # the post-checkout/post-merge hook of the same git command skips what we said
            reported_file=reported_file(repo, os.getpgrp()),
        )
        env = {**os.environ, "ML_INTEGRITY_ALLOW_FILE": str(allow_file)}
        # our own buffers: with PYTHONUNBUFFERED set, sys.stdout.buffer would make every
        # packet a system call (the proxy flushes once per answer)
        gin = open(sys.stdin.fileno(), "rb", buffering=_BUFFER, closefd=False)  # noqa: SIM115
        gout = open(sys.stdout.fileno(), "wb", buffering=_BUFFER, closefd=False)  # noqa: SIM115
        proxy = FilterProxy(
            gate,
            child_argv=[require_git_lfs(), "filter-process"],
            child_env=env,
            tmp_dir=store.tmp_dir,
            stdin=gin,
            stdout=gout,
            store=StoreSmudger(
                store,
                allowed=lambda: store_smudge_allowed(git, read_blob=repo.read_blob),
                tmp_dir=store.tmp_dir,
            ),
        )
        try:
            return proxy.serve()
        finally:
            gate.close()
            with contextlib.suppress(OSError, ValueError):
                gout.flush()
    finally:
        with contextlib.suppress(OSError):
            allow_file.unlink()
        repo.close()
