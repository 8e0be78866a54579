"""Helpers of the hook tests: small git + Git LFS repositories, signing keys, pickles."""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.support.proc import Proc as Proc
from tests.support.proc import run as _run

REPO_ROOT = Path(__file__).resolve().parents[3]

SAFE = b"tensor bytes, not a pickle\n" * 4
"""Content that every scanner accepts (plain data)."""


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo this would run at load time",))


EVIL_PICKLE = pickle.dumps(_Evil(), protocol=4)
"""A pickle that would call os.system when loaded (never loaded here)."""
PLAIN_PICKLE = pickle.dumps({"weights": [1, 2, 3]}, protocol=4)
"""A harmless pickle: refused anyway under the default policy (pickle: block)."""


def run(
    args: list[str | Path],
    cwd: Path,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    *,
    inherit: bool = True,
) -> Proc:
    """Run a command; ``env`` is added to this process's environment (or, without
    ``inherit``, is the whole environment)."""
    return _run(args, cwd, env, check, inherit=inherit)


def git(
    *args: str | Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> Proc:
    return run(["git", *args], cwd, env, check=check)


def mi(*args: str | Path, cwd: Path, env: Mapping[str, str] | None = None) -> Proc:
    """``python -m ml_integrity`` with the interpreter of this test run."""
    return run([sys.executable, "-m", "ml_integrity", *args], cwd, env, check=False)


@dataclass
class Keys:
    key: Path
    pub: Path


def make_keys(where: Path, name: str = "signer") -> Keys:
    from ml_integrity.trust import keys as _keys

    key, pub = _keys.generate(where / f"{name}.pem", "ec-p256")
    return Keys(key, pub)


def lfs_repo(root: Path) -> Path:
    """A fresh repository whose ``*.bin`` and ``*.pt`` files are Git LFS files."""
    root.mkdir(parents=True, exist_ok=True)
    git("init", "-q", root, cwd=root.parent)
    git("lfs", "track", "*.bin", "*.pt", cwd=root)
    git("add", ".gitattributes", cwd=root)
    git("commit", "-q", "-m", "track LFS files", cwd=root)
    return root


def write(repo: Path, files: Mapping[str, bytes]) -> None:
    for name, data in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
