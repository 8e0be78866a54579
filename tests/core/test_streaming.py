"""The streaming manifest: walk order, bounded listing, and the writer's bytes.

Differential: the stream must give what the in-memory path gives
(``list_files`` for the walk, ``Manifest.to_json`` for the bytes).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_integrity.core import manifest, streaming
from ml_integrity.core.manifest import Entry, Manifest
from ml_integrity.core.streaming import FileRecord
from ml_integrity.engines.threads import ThreadEngine
from ml_integrity.errors import ManifestError, UsageError
from tests.engines.trees import make_tree

_component = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="/\\\x00"),
    min_size=1,
    max_size=6,
).filter(lambda s: s not in (".", ".."))


@st.composite
def _manifests(draw: st.DrawFn) -> Manifest:
    paths = draw(st.lists(st.lists(_component, min_size=1, max_size=3), max_size=12))
    entries: dict[str, Entry] = {}
    for parts in paths:
        try:
            path = manifest.normalize_path("/".join(parts))
        except ManifestError:
            continue
        entries[path] = Entry(
            path=path,
            size=draw(st.integers(0, 2**40)),
            sha256=draw(st.text("0123456789abcdef", min_size=64, max_size=64)),
            format=draw(st.sampled_from([None, "pickle", "safetensors", 'we"ird\n'])),
        )
    return Manifest(
        tuple(entries.values()),
        repository=draw(st.none() | st.text(max_size=8)),
        version=draw(st.none() | st.integers(0, 10**6)),
    )


@settings(max_examples=150, deadline=None)
@given(_manifests())
def test_writer_gives_the_bytes_of_to_json(m: Manifest) -> None:
    out = io.BytesIO()
    records = [FileRecord(e.path, e.size, e.sha256, e.format) for e in m.entries]
    count, total = streaming.write_canonical(
        records, out, repository=m.repository, version=m.version
    )
    assert out.getvalue() == m.to_json()
    assert (count, total) == (len(m.entries), m.total_size)


def test_writer_refuses_records_out_of_order() -> None:
    records = [FileRecord("b", 0, "0" * 64), FileRecord("a", 0, "0" * 64)]
    with pytest.raises(ManifestError, match="out of order"):
        streaming.write_canonical(records, io.BytesIO())


def test_walk_lists_what_list_files_lists(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "data")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("x")
    (root / "skip").mkdir()
    (root / "skip" / "f").write_text("x")
    walked = [f.rel for f in streaming.walk(root, ignore=["skip"])]
    assert walked == manifest.list_files(root, ignore=["skip"])
    assert all(f.full == os.path.join(root, *f.rel.split("/")) for f in streaming.walk(root))


def test_huge_directories_are_sorted_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_tree(tmp_path / "data", dirs=3, files_per_dir=30)
    expected = [f.rel for f in streaming.walk(root)]
    monkeypatch.setattr(streaming, "SPILL_NAMES", 4)  # every listing spills runs
    assert [f.rel for f in streaming.walk(root)] == expected


def test_stream_equals_in_memory_manifest(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "data")
    out = io.BytesIO()
    streaming.build_to_file(root, ThreadEngine(use_cache=False), out)
    assert out.getvalue() == manifest.build_from_directory(root, use_cache=False).to_json()


def test_names_that_normalise_alike_are_refused(tmp_path: Path) -> None:
    (tmp_path / "caf\u00e9").write_text("1")
    (tmp_path / "cafe\u0301").write_text("2")
    with pytest.raises(ManifestError, match="normalise"):
        list(streaming.walk(tmp_path))


def test_symlinks_and_fifos_are_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "f")
    with pytest.raises(ManifestError, match="symbolic link"):
        list(streaming.walk(tmp_path))
    assert [f.rel for f in streaming.walk(tmp_path, allow_symlinks=True)] == ["f", "link"]
    (tmp_path / "out").symlink_to("/etc/hostname")
    with pytest.raises(ManifestError, match="outside the root"):
        list(streaming.walk(tmp_path, allow_symlinks=True))
    (tmp_path / "out").unlink()
    (tmp_path / "link").unlink()
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ManifestError, match="not a regular file"):
        list(streaming.walk(tmp_path))


def test_empty_folder_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    out = tmp_path / "m.json"
    with pytest.raises(UsageError, match="no files"):
        streaming.build_to_path(tmp_path / "empty", ThreadEngine(), out)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_fast_path_takes_only_small_regular_files(tmp_path: Path) -> None:
    # anything else (large, a link, missing) goes to the careful path, which
    # hashes it or raises the error with its hint
    (tmp_path / "f").write_bytes(b"abc")
    buf = memoryview(bytearray(16))
    from ml_integrity.engines.threads import hash_small

    assert hash_small(str(tmp_path / "f"), buf, False) is not None
    (tmp_path / "big").write_bytes(b"x" * 17)
    assert hash_small(str(tmp_path / "big"), buf, False) is None
    (tmp_path / "link").symlink_to(tmp_path / "f")
    assert hash_small(str(tmp_path / "link"), buf, False) is None
    assert hash_small(str(tmp_path / "missing"), buf, False) is None


def test_helper_processes_give_the_same_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ml_integrity.engines import threads

    root = make_tree(tmp_path / "data", dirs=6, files_per_dir=50)
    expected = manifest.build_from_directory(root, use_cache=False).to_json()
    # small windows and batches: the forked helpers take over after the first window
    monkeypatch.setattr(threads, "WINDOW", 20)
    monkeypatch.setattr(threads, "BATCH", 7)
    started: list[int] = []
    real = threads._Helpers.__init__

    def spy(self: threads._Helpers, processes: int) -> None:
        started.append(processes)
        real(self, processes)

    monkeypatch.setattr(threads._Helpers, "__init__", spy)
    out = io.BytesIO()
    engine = ThreadEngine(use_cache=False, workers=2)
    streaming.write_canonical(
        engine.hash_stream(root, streaming.walk(root), follow_symlinks=False), out
    )
    assert out.getvalue() == expected
    assert started == [2]


@pytest.mark.parametrize("job_max", [1000, 15])  # 15: directories too big for a job
def test_directory_jobs_give_the_same_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, job_max: int
) -> None:
    from ml_integrity.engines import tree

    root = make_tree(tmp_path / "data", dirs=8, files_per_dir=30)
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("x")
    expected = manifest.build_from_directory(root, use_cache=False, ignore=["skip"]).to_json()
    (root / "skip").mkdir()
    (root / "skip" / "f").write_text("ignored")
    monkeypatch.setattr(tree, "FORK_AFTER_FILES", 10)  # helpers after the first directory
    monkeypatch.setattr(tree, "JOB_MAX_FILES", job_max)
    monkeypatch.setattr(tree, "WINDOW", 5)
    forked: list[int] = []
    real_pool = tree.TreeRunner._submit

    def spy(self: tree.TreeRunner, directory: str, prefix: str) -> object:
        forked.append(int(self.pool is not None))
        return real_pool(self, directory, prefix)

    monkeypatch.setattr(tree.TreeRunner, "_submit", spy)
    out = io.BytesIO()
    streaming.build_to_file(root, ThreadEngine(use_cache=False, workers=2), out, ignore=["skip"])
    assert out.getvalue() == expected
    if job_max == 1000:
        assert 1 in forked  # some jobs ran in helper processes
    else:
        assert forked == [0]  # the root's job handed its whole tree back to the walk


def test_directory_jobs_refuse_what_the_walk_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ml_integrity.engines import tree

    root = make_tree(tmp_path / "data", dirs=4, files_per_dir=30)
    deep = sorted(p for p in root.rglob("*") if p.is_dir())[-1]
    (deep / "zz-link").symlink_to(deep)
    monkeypatch.setattr(tree, "FORK_AFTER_FILES", 10)
    with pytest.raises(ManifestError, match="symbolic link") as info:
        streaming.build_to_file(root, ThreadEngine(use_cache=False, workers=2), io.BytesIO())
    assert info.value.path == str(deep / "zz-link")
