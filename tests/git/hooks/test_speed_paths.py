"""The fast paths behind the hooks' speed: they must give the same answers as the slow ones.

- which blobs are LFS pointers is cached by blob id (``.git/ml-integrity/pointers.json``);
  a damaged cache is ignored, never trusted;
- the command line imports only the command it runs.
"""

from __future__ import annotations

import argparse
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


def _pointers(repo: Path) -> dict[str, tuple[str, int, tuple[object, ...]]]:
    with Repository(Git(repo)) as r:
        return {p: (ptr.oid, ptr.size, ptr.extensions) for p, ptr in r.lfs_pointers(INDEX).items()}


def test_pointer_cache_gives_the_same_answers(tmp_path: Path) -> None:
    repo = lfs_repo(tmp_path / "r")
    write(repo, {"a.bin": SAFE, "b.bin": b"other\n", "plain.txt": b"not a pointer\n"})
    # a pointer with an extension, committed as is (not through git-lfs): never cached
    (repo / "ext.dat").write_text(EXT_POINTER)
    git("add", ".", cwd=repo)
    blob = git("rev-parse", ":ext.dat", cwd=repo).stdout.strip()
    cache = repo / ".git" / "ml-integrity" / "pointers.json"
    first = _pointers(repo)
    assert set(first) == {"a.bin", "b.bin", "ext.dat"}
    assert first["ext.dat"][2] == ((0, "foo", "1" * 64),)
    doc = json.loads(cache.read_text())
    assert blob not in doc["blobs"]  # extensions are not cached
    plain = git("rev-parse", ":plain.txt", cwd=repo).stdout.strip()
    assert doc["blobs"][plain] == 0  # known not to be a pointer
    assert _pointers(repo) == first  # answered from the cache
    # damaged caches are ignored (and rebuilt), never trusted
    a = git("rev-parse", ":a.bin", cwd=repo).stdout.strip()
    for value in ([1, 2], "x", ["2" * 64, "12"], ["2" * 64], 7):
        cache.write_text(json.dumps({"v": 1, "blobs": {**doc["blobs"], a: value}}))
        assert _pointers(repo) == first, value
    for damage in ("not json", '{"v": 1, "blobs": []}', '{"v": 2, "blobs": {}}'):
        cache.write_text(damage)
        assert _pointers(repo) == first


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


def test_canonical_manifest_is_byte_for_byte_the_manifest_writer() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from ml_integrity.core.lfs import Pointer
    from ml_integrity.core.manifest import Entry, Manifest
    from ml_integrity.git.staged import canonical_manifest

    component = st.text(
        alphabet=st.sampled_from(list("ab-_.Z09 \"'\\é\u0301\u00e9\u4e2d\t")),
        min_size=1,
        max_size=6,
    ).filter(lambda c: c not in (".", ".."))
    paths = st.lists(
        st.lists(component, min_size=1, max_size=3).map("/".join), max_size=12, unique=True
    )

    @settings(max_examples=200, deadline=None)
    @given(paths, st.integers(min_value=0, max_value=2**40))
    def check(names: list[str], size: int) -> None:
        pointers = {n: Pointer(f"{i:064x}", size + i) for i, n in enumerate(names)}
        written = Manifest(tuple(Entry(p, q.size, q.oid) for p, q in pointers.items())).to_json()
        assert canonical_manifest(pointers) == written

    check()
