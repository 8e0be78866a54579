"""Fuzz the sniffer, the pickle walker and the containers with hypothesis.

Properties: scanning random bytes raises nothing but our Error types, and a
stream the sniffer takes for a pickle that does not parse is never "safe".
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_integrity.core.sniff import Format, sniff
from ml_integrity.errors import Error
from ml_integrity.scan.formats import BytesReader
from ml_integrity.scan.pickles import analyze, looks_like_pickle
from ml_integrity.scan.scanner import ScanPolicy, scan_file

from .make_corpus import PROTO2, glob, os_system, xuni

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
OPCODES = st.sampled_from(
    [
        b"(",
        b".",
        b"0",
        b"2",
        b"N",
        b"K\x01",
        b"]",
        b"}",
        b")",
        b"t",
        b"a",
        b"s",
        b"R",
        b"b",
        b"\x85",
        b"\x86",
        b"\x93",
        b"\x94",
        b"h\x00",
        b"q\x00",
        b"X\x01\x00\x00\x00a",
        b"\x8c\x02os",
        b"\x8c\x06system",
        glob("os", "system"),
        glob("collections", "OrderedDict"),
        b"C\x03abc",
        b"\x81",
        b"o",
        b"e",
        b"u",
        b"\x95" + b"\x00" * 8,
        b"\xff",
    ]
)


def _scan_bytes(tmp: Path, data: bytes, mode: str = "allowlist") -> tuple[str, list[str]]:
    p = tmp / "f.bin"
    p.write_bytes(data)
    try:
        report = scan_file(p, ScanPolicy(pickle=mode))  # type: ignore[arg-type]
    except Error:
        return "error", []
    return report.verdict, [f.kind for f in report.findings]


@SETTINGS
@given(data=st.binary(max_size=600))
def test_random_bytes_never_crash(tmp_path: Path, data: bytes) -> None:
    verdict, _ = _scan_bytes(tmp_path, data)
    assert verdict in ("safe", "unsafe", "not-scanned", "error")


@SETTINGS
@given(body=st.binary(max_size=300), proto=st.integers(0, 5))
def test_proto_prefixed_garbage_is_never_safe_unless_it_parses(
    tmp_path: Path, body: bytes, proto: int
) -> None:
    data = b"\x80" + bytes([proto]) + body
    assert sniff(data) is Format.PICKLE
    a = analyze(BytesReader(data))
    verdict, kinds = _scan_bytes(tmp_path, data)
    if not a.complete or a.issues:
        assert verdict != "safe", (data, kinds)


@SETTINGS
@given(ops=st.lists(OPCODES, max_size=30))
def test_opcode_soup_is_safe_only_when_it_parses_to_allowed_globals(
    tmp_path: Path, ops: list[bytes]
) -> None:
    data = PROTO2 + b"".join(ops)
    a = analyze(BytesReader(data))
    verdict, _ = _scan_bytes(tmp_path, data)
    if verdict == "safe":
        assert a.complete and not a.issues and all(g.allowed for g in a.globals)
    if any(not g.allowed for g in a.globals):
        assert verdict == "unsafe"


@SETTINGS
@given(body=st.binary(max_size=200))
def test_weak_start_is_data_or_refused(tmp_path: Path, body: bytes) -> None:
    """Without PROTO, a stream is a pickle only when the walk imports or calls something."""
    data = b"c" + body
    a = analyze(BytesReader(data))
    verdict, _ = _scan_bytes(tmp_path, data)
    if looks_like_pickle(a) and (a.issues or not a.complete):
        assert verdict != "safe"


@SETTINGS
@given(cut=st.integers(0, 400), flip=st.integers(4, 400), value=st.integers(0, 255))
def test_damaged_zip_never_hides_the_pickle(
    tmp_path: Path, cut: int, flip: int, value: int
) -> None:
    """A zip (by its signature) with a damaged byte or cut short still shows its pickle."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", os_system())
        z.writestr("archive/version", b"3\n")
    data = bytearray(buf.getvalue())
    if flip < len(data):
        data[flip] = value
    data = data[: max(cut, 40)] if cut < len(data) else data
    verdict, _ = _scan_bytes(tmp_path, bytes(data), "allowlist")
    assert verdict != "safe" or b"os\nsystem" not in bytes(data)


@SETTINGS
@given(blob=st.binary(max_size=64), n=st.integers(0, 3))
def test_nested_payloads(tmp_path: Path, blob: bytes, n: int) -> None:
    inner = os_system() if n == 0 else blob
    data = PROTO2 + b"}" + xuni("k") + b"C" + bytes([len(inner) % 256]) + inner[:255] + b"s."
    verdict, _ = _scan_bytes(tmp_path, data)
    if n == 0:
        assert verdict == "unsafe"
