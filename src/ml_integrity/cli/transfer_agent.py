"""``ml-integrity transfer-agent`` (hidden): git-lfs's standalone transfer agent.

git-lfs starts it for downloads and uploads (``lfs.standalonetransferagent``)
and speaks JSON lines on stdin/stdout. Downloads of objects that no verified
manifest names are refused, so they never enter the local store. With git
config ml-integrity.recipient / ml-integrity.decryptionKey it encrypts uploads
and decrypts downloads (git/lfs_crypto.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "transfer-agent",
        description="git-lfs standalone custom transfer agent that gates downloads "
        "(configured by 'ml-integrity install'; not run by hand).",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ml_integrity.git.gates import DownloadGate
    from ml_integrity.git.lfs import git_credential_fill
    from ml_integrity.git.lfs_crypto import make_agent
    from ml_integrity.git.repository import Repository
    from ml_integrity.git.runner import Git, clean_env
    from ml_integrity.trust.resolver import TrustRequest, resolve_trust

    git = Git.discover()
    repo = Repository(git, trust=resolve_trust(TrustRequest(), "checkout", repo=git))
    allow = os.environ.get("ML_INTEGRITY_ALLOW_FILE")
    gate = DownloadGate(repo, Path(allow) if allow else None)

    def log(message: str) -> None:
        print(f"ml-integrity: REFUSED: {message}", file=sys.stderr, flush=True)

    agent = make_agent(  # encrypting when git config ml-integrity.recipient/decryptionKey
        repo.git,
        gate,
        repo.lfs_endpoint,
        store=repo.store,
        credentials=lambda url: git_credential_fill(url, cwd=repo.root, env=clean_env()),
        log=log,
        on_refusal=gate.refused,  # so clone and pull exit 1, not 3 (git-lfs says "failed")
    )
    try:
        return agent.serve()
    finally:
        repo.close()
