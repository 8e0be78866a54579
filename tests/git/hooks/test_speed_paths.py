"""The fast paths behind the hooks' speed: they must give the same answers as the slow ones.

- what each blob holds (an LFS pointer's oid, or the sha256 of its content) is cached
  by blob id (``.git/ml-integrity/blobs.json``); a damaged cache is ignored, never trusted;
- the command line imports only the command it runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

from ml_integrity.cli.main import build_parser
from ml_integrity.git.repository import INDEX, Repository
from ml_integrity.git.runner import Git
from tests.git.hooks.support import SAFE, git, lfs_repo, write

EXT_POINTER = (
    "version https://git-lfs.github.com/spec/v1\n"
    f"ext-0-foo sha256:{'1' * 64}\noid sha256:{'2' * 64}\nsize 12\n"
)


def _files(repo: Path) -> dict[str, tuple[str, str, int]]:
    with Repository(Git(repo)) as r:
        return {f.path: (f.kind, f.digest, f.size) for f in r.tree_files(INDEX)}


def test_blob_cache_gives_the_same_answers(tmp_path: Path) -> None:
    repo = lfs_repo(tmp_path / "r")
    write(repo, {"a.bin": SAFE, "b.bin": b"other\n", "plain.txt": b"not a pointer\n"})
    # a pointer with an extension, committed as is (not through git-lfs): its oid counts
    (repo / "ext.dat").write_text(EXT_POINTER)
    git("add", ".", cwd=repo)
    cache = repo / ".git" / "ml-integrity" / "blobs.json"
    first = _files(repo)
    assert first["a.bin"] == ("lfs", hashlib.sha256(SAFE).hexdigest(), len(SAFE))
    assert first["ext.dat"] == ("lfs", "2" * 64, 12)
    plain_digest = hashlib.sha256(b"not a pointer\n").hexdigest()
    assert first["plain.txt"] == ("blob", plain_digest, 14)
    doc = json.loads(cache.read_text())
    plain = git("rev-parse", ":plain.txt", cwd=repo).stdout.strip()
    assert doc["blobs"][plain] == [0, plain_digest, 14]  # known not to be a pointer
    assert _files(repo) == first  # answered from the cache
    # damaged caches are ignored (and rebuilt), never trusted
    a = git("rev-parse", ":a.bin", cwd=repo).stdout.strip()
    for value in ([1, 2], "x", [1, "2" * 64, "12"], [2, "2" * 64, 12], ["2" * 64], 7):
        cache.write_text(json.dumps({"v": 2, "blobs": {**doc["blobs"], a: value}}))
        assert _files(repo) == first, value
    for damage in ("not json", '{"v": 2, "blobs": []}', '{"v": 1, "blobs": {}}', "[" * 100_000):
        cache.write_text(damage)
        assert _files(repo) == first


def test_the_cli_imports_only_the_command_it_runs() -> None:
    def names(parser: argparse.ArgumentParser) -> list[str]:
        sub = next(a for a in parser._actions if a.dest == "command")
        assert sub.choices is not None
        return sorted(sub.choices)

    assert names(build_parser("scan")) == ["scan"]
    assert names(build_parser("check-staged")) == ["check-staged"]
    full = names(build_parser())
    assert "uninstall" in full and "scan" in full
    assert names(build_parser("uninstall")) == full  # defined in install.py: all are loaded
    assert names(build_parser("no-such-command")) == full
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from ml_integrity.cli import main; "
            "main.build_parser('scan'); print(sorted(m for m in sys.modules if '.cli.' in m))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = probe.stdout
    assert "ml_integrity.cli.scan" in loaded and "ml_integrity.cli.verify" not in loaded
