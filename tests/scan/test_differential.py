"""Differential tests: the real loaders decide, the scanner must agree (issue 10).

Each class of the issue has a test here: pickles the sniffer or the walk
misjudged (mutations judged by the real C and pure-Python unpicklers),
formats that are also pickles, containers read the way their loaders read
them (zip directories, tar member types, joblib compressions), numpy
headers judged by numpy, folders walked completely. ``make fuzz`` runs the
hypothesis tests with many more examples (``FUZZ_EXAMPLES``).
"""

from __future__ import annotations

import io
import lzma
import os
import pickle
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_integrity.scan.pickles import OPCODES
from ml_integrity.scan.scanner import ScanPolicy, scan_paths, scan_stream

from .make_corpus import os_system
from .oracles import reached_globals, runs_unlisted

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ALLOW = ScanPolicy(pickle="allowlist")
P0_EVIL = b"cos\nsystem\n(S'echo harmless'\ntR."


def verdict(data: bytes, policy: ScanPolicy = ALLOW) -> str:
    return scan_stream(io.BytesIO(data), "x", policy).verdict


class _Evil:
    def __reduce__(self) -> tuple[object, ...]:
        return (os.system, ("echo harmless",))


def _seeds() -> list[bytes]:
    out = [P0_EVIL, os_system(2), os_system(4)]
    for proto in range(6):
        out.append(pickle.dumps({"a": [1, 2.5, "x", b"y"], "e": _Evil()}, protocol=proto))
        out.append(pickle.dumps([_Evil(), {1, 2}], protocol=proto))
    return out


SEEDS = _seeds()
MAGICS = [b"GGUF\x03\x00\x00\x00", b"\x89PNG\r\n\x1a\n", b"PK\x03\x04", b"\x93NUMPY\x01\x00",
          b"N", b"I010\n0", b"(", b"}", b"\x80\x02", b"S'" + b"a" * 10 + b"'\n0"]  # fmt: skip
OPS = [bytes([b]) for b in sorted(OPCODES)]


@st.composite
def mutants(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(data)))
        how = draw(st.sampled_from(["insert", "replace", "remove", "prepend"]))
        if how == "insert":
            data[i:i] = draw(st.sampled_from(OPS))
        elif how == "replace" and i < len(data):
            data[i] = draw(st.sampled_from(sorted(OPCODES)))
        elif how == "remove" and i < len(data):
            del data[i]
        elif how == "prepend":
            data[0:0] = draw(st.sampled_from(MAGICS))
    return bytes(data)


@SETTINGS
@given(data=mutants())
def test_mutated_pickles_agree_with_the_real_unpicklers(data: bytes) -> None:
    """Whenever a real unpickler reaches an unlisted global, the scan is not safe."""
    if runs_unlisted(data):
        assert verdict(data) in ("unsafe", "not-scanned"), (data, reached_globals(data))


@pytest.mark.parametrize(
    "data",
    [
        b"I010\n0" + P0_EVIL,  # an integer literal the walk refused (octal, C strtol reads it)
        b"S'" + b"a" * (2 << 20) + b"'\n0" + P0_EVIL,  # a line longer than the walk's limit
        b"N0" + P0_EVIL,  # no PROTO, an unusual first opcode
        b"GGUF\x03\x00\x00\x00\x00" + P0_EVIL,  # a GGUF magic is a BINFLOAT opcode
        pickle.dumps(None, protocol=0) + P0_EVIL,  # stacked, the second without PROTO
    ],
    ids=["int-literal", "long-line", "first-opcode", "gguf-magic", "stacked-no-proto"],
)
def test_pickles_the_old_walk_missed(data: bytes) -> None:
    assert runs_unlisted(data)
    assert verdict(data) == "unsafe"
    assert verdict(data, ScanPolicy()) == "unsafe"


def test_tar_header_that_is_also_a_pickle() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo(P0_EVIL.decode())
        data = b"x,y\n1,2\n"
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    assert runs_unlisted(raw)
    assert verdict(raw) == "unsafe"


def test_every_first_byte_outside_the_opcode_set_fails_in_both_unpicklers() -> None:
    """The scanner's shortcut (no child process for such streams) is a fact about CPython."""
    for b in range(256):
        data = bytes([b]) + P0_EVIL
        for cls in (pickle.Unpickler, pickle._Unpickler):
            try:
                cls(io.BytesIO(data)).load()
                loaded = True
            except Exception as exc:
                loaded = "invalid load key" not in str(exc) and not isinstance(exc, KeyError)
                if b not in OPCODES:
                    assert not loaded or "load key" in str(exc), (b, exc)
            if b not in OPCODES:
                assert not loaded, b


def test_ext_opcode_is_an_unlisted_global() -> None:
    data = b"\x80\x02\x82\x42X\x02\x00\x00\x00hi\x85R."
    assert runs_unlisted(data)
    assert verdict(data) == "unsafe"


# --- compression the way joblib opens it ----------------------------------------------


def test_lzma_alone_with_any_dictionary_size() -> None:
    raw = bytearray(lzma.compress(os_system(), format=lzma.FORMAT_ALONE))
    raw[1:5] = struct.pack("<I", 1024)  # below the 4 KiB the old sniffer required
    assert lzma.decompress(bytes(raw), format=lzma.FORMAT_ALONE) == os_system()
    assert verdict(bytes(raw)) == "unsafe"


def test_joblib_zf_format() -> None:
    payload = os_system()
    raw = b"ZF" + hex(len(payload)).encode().ljust(19) + zlib.compress(payload)
    from joblib.numpy_pickle_compat import read_zfile

    assert read_zfile(io.BytesIO(raw)) == payload
    assert verdict(raw) == "unsafe"


def test_lz4_frame() -> None:
    lz4frame = pytest.importorskip("lz4.frame")
    raw = lz4frame.compress(os_system())
    assert verdict(raw) == "unsafe"


# --- zips: every entry zipfile (or miniz) opens ---------------------------------------


@SETTINGS
@given(
    prefix=st.binary(max_size=64),
    names=st.lists(
        st.sampled_from(["a.bin", "model/data.pkl", "x", "a.bin", "w.npy"]), min_size=1, max_size=4
    ),
    evil_at=st.integers(0, 3),
    comment=st.sampled_from([b"", b"hello", b"PK\x05\x06" + b"\0" * 18]),
)
def test_every_zip_entry_zipfile_opens_is_scanned(
    prefix: bytes, names: list[str], evil_at: int, comment: bytes
) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i, n in enumerate(names):
            z.writestr(n, os_system() if i == evil_at % len(names) else b"col,a\n1,2\n")
        z.comment = comment
    raw = prefix + buf.getvalue()
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            opened = [z.open(info).read() for info in z.infolist()]
    except (zipfile.BadZipFile, OSError, ValueError):
        opened = []
    if any(runs_unlisted(d) for d in opened):
        assert verdict(raw) == "unsafe"


def test_zip_entry_only_miniz_sees() -> None:
    """miniz (torch) uses the offsets as written; zipfile shifts them by the prefix."""
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"w": 1}, protocol=2))
    benign = inner.getvalue()
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("archive/data.pkl", os_system())
    local_evil = evil.getvalue()[: evil.getvalue().find(b"PK\x01\x02")]
    raw = local_evil + benign  # zipfile: the benign entry (offsets shifted); miniz: the evil one
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        assert not runs_unlisted(z.read("archive/data.pkl"))
    assert raw[0:4] == b"PK\x03\x04"
    assert verdict(raw) == "unsafe"


# --- tar: every member tarfile extracts as a file ---------------------------------------


@pytest.mark.parametrize("kind", [b"0", b"\0", b"7", b"Z", b"9"])
def test_tar_members_tarfile_extracts_as_files(kind: bytes) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        info = tarfile.TarInfo("weights")
        info.size = len(os_system())
        info.type = kind
        t.addfile(info, io.BytesIO(os_system()))
    raw = buf.getvalue()
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        m = t.getmember("weights")
        assert m.isreg() or m.type not in tarfile.SUPPORTED_TYPES  # extracted as a file
    assert verdict(raw) == "unsafe"


# --- numpy headers: every descr numpy accepts that holds an object -----------------------

np = pytest.importorskip("numpy")
SIMPLE = ["O", "|O", "<O", "O8", "object", "object_", "f4", "<i8", "S3", "U2", "V8", "?", "M8[ns]",
          "f4,O", "i4,f8", "b", "float32", "int64", "bool", "str", "p"]  # fmt: skip


def descrs() -> st.SearchStrategy[object]:
    base = st.sampled_from(SIMPLE)
    return st.recursive(
        base,
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from([(2,), (1, 3)])),
            st.lists(
                st.tuples(st.sampled_from(["a", "b", "c"]), inner)
                | st.tuples(st.sampled_from(["d", "e"]), inner, st.sampled_from([(2,), ()])),
                min_size=1,
                max_size=3,
                unique_by=lambda f: f[0],
            ),
        ),
        max_leaves=6,
    )


def npy(descr: object, body: bytes) -> bytes:
    header = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': (1,), }}".encode()
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + body


@SETTINGS
@given(descr=descrs())
def test_numpy_descrs_with_objects_are_never_safe_without_numpy(descr: object) -> None:
    from ml_integrity.scan.npy import descr_has_object

    try:
        has_object = np.lib.format.descr_to_dtype(descr).hasobject
    except Exception:
        return  # numpy refuses it: np.load fails before reading data
    if has_object:
        assert descr_has_object(descr) is not False, descr  # own grammar, numpy not asked
        assert verdict(npy(descr, os_system())) == "unsafe", descr


def test_every_numpy_dtype_is_proven_object_free_by_the_grammar() -> None:
    from ml_integrity.scan.npy import descr_has_object

    for t in set(np.sctypeDict.values()):
        dt = np.dtype(t)
        if dt.hasobject:
            continue
        for order in ("<", ">"):
            d = dt.newbyteorder(order) if dt.byteorder not in ("|",) else dt
            descr = np.lib.format.dtype_to_descr(d)
            assert descr_has_object(descr) is False, descr


# --- folders: nothing skipped in silence ------------------------------------------------


def test_symlinked_folder_inside_the_root_is_scanned(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "m.pkl").write_bytes(os_system())
    root = tmp_path / "root"
    root.mkdir()
    (root / "inside").mkdir()
    (root / "inside" / "m.pkl").write_bytes(os_system())
    (root / "link_in").symlink_to(root / "inside")
    (root / "link_out").symlink_to(tmp_path / "real")
    report = scan_paths([root], ALLOW)
    by = {Path(f.path).name: f.verdict for f in report.files}
    assert by["link_out"] == "not-scanned"
    assert not report.ok
    assert any("link_in" not in f.path and f.verdict == "unsafe" for f in report.files)


def test_nested_git_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "sub" / ".git").mkdir(parents=True)
    (tmp_path / "sub" / ".git" / "evil.pkl").write_bytes(os_system())
    (tmp_path / "ok.txt").write_bytes(b"cat\ndog\n")
    report = scan_paths([tmp_path], ALLOW)
    assert not report.ok
    assert [f.verdict for f in report.files if f.path.endswith(".git")] == ["not-scanned"]
