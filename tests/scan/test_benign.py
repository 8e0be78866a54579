"""Benign look-alikes must pass: real files from the real libraries, text, safetensors lengths."""

from __future__ import annotations

import io
import json
import pickle
import struct
from pathlib import Path

import pytest

from ml_integrity.scan.pickles import OPCODES, pickle_view
from ml_integrity.scan.readers import BytesReader
from ml_integrity.scan.safetensors import validate_safetensors_header
from ml_integrity.scan.scanner import ScanPolicy, scan_file, scan_stream

from .make_corpus import TorchPickler, kint, torch_zip

BLOCK = ScanPolicy()
ALLOW = ScanPolicy(pickle="allowlist")


def verdict(data: bytes, policy: ScanPolicy = BLOCK) -> str:
    return scan_stream(io.BytesIO(data), "x", policy).verdict


@pytest.mark.slow
def test_safetensors_every_header_length() -> None:
    """Header lengths 2..70,000 (1 cannot hold a JSON object): valid, and never a pickle.

    Headers are built directly and validated in one pass; the pickle view runs only where the
    first byte is an opcode (for any other first byte both unpicklers fail at once, see
    test_differential), the scan of whole files on a sample.
    """
    base = b'{"__metadata__":{"p":"'
    for n in range(2, 70_001):
        raw = b"{}" + b" " * (n - 2) if n < 30 else base + b"x" * (n - len(base) - 3) + b'"}}'
        validate_safetensors_header(raw, 0)
        if n & 0xFF in OPCODES:
            view = pickle_view(BytesReader(struct.pack("<Q", n) + raw))
            assert view.status in ("not-pickle", "constant"), (n, view)
        if n % 997 == 0 or n in (128, 384, 640, 65664 - 65536 + 128):
            assert verdict(struct.pack("<Q", n) + raw) == "safe", n


def test_real_safetensors_files(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    st = pytest.importorskip("safetensors.numpy")
    for i, shape in enumerate([(1,), (3, 5), (100,), (7, 7, 7)]):
        p = tmp_path / f"m{i}.safetensors"
        st.save_file({f"t{j}": np.ones(shape, dtype=np.float32) for j in range(i + 1)}, p)
        assert scan_file(p, BLOCK).verdict == "safe", p


def test_numpy_arrays_of_every_dtype(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    for i, t in enumerate(sorted(set(np.sctypeDict.values()), key=str)):
        dt = np.dtype(t)
        if dt.hasobject:
            continue
        p = tmp_path / f"a{i}.npy"
        np.save(p, np.zeros((2, 3), dtype=dt))
        assert scan_file(p, BLOCK).verdict == "safe", dt
    np.savez_compressed(tmp_path / "z.npz", a=np.arange(5), b=np.ones((2, 2), dtype="<c16"))
    assert scan_file(tmp_path / "z.npz", BLOCK).verdict == "safe"


@pytest.mark.parametrize(
    "text",
    [
        b"cat\ndog\nbird\n",
        b"ibis\ncat\nemu\n",
        b"col_a,col_b\n1,2\n",
        b"car\ncow\ncrab\n",
        b"iguana\nimpala\n",
        json.dumps({"labels": ["cat", "dog"]}).encode(),
    ],
)
def test_word_lists_and_text(text: bytes) -> None:
    assert verdict(text) == "safe"
    assert verdict(text, ALLOW) == "safe"


def test_real_joblib_dumps(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    joblib = pytest.importorskip("joblib")
    for compress in (0, ("zlib", 3), ("gzip", 3), ("bz2", 3), ("xz", 3), ("lzma", 3)):
        p = tmp_path / f"j{compress!s}.joblib"
        joblib.dump(
            {"a": np.arange(1000.0), "b": np.ones((3, 4), dtype=np.int8)}, p, compress=compress
        )
        assert scan_file(p, ALLOW).verdict == "safe", compress
        assert scan_file(p, BLOCK).verdict == "unsafe", compress


def test_pickled_numpy_arrays_all_protocols() -> None:
    np = pytest.importorskip("numpy")
    for proto in range(2, 6):
        data = pickle.dumps({"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, protocol=proto)
        assert verdict(data, ALLOW) == "safe", proto


def test_quantized_tensor_checkpoint_passes_the_allowlist(tmp_path: Path) -> None:
    """The pickle ``torch.save`` writes for a quantized tensor (torch itself not needed)."""
    p = TorchPickler()
    p.out += b"}"
    p.put()
    p.out += b"("
    p.s("q")
    p.glob("torch._utils", "_rebuild_qtensor")
    p.out += b"(("
    p.s("storage")
    p.glob("torch", "QInt8Storage")
    p.s("0")
    p.s("cpu")
    p.out += kint(4) + b"tQ" + kint(0) + kint(4) + b"\x85" + kint(1) + b"\x85"
    p.glob("torch", "per_tensor_affine")
    p.out += b"G?\xb9\x99\x99\x99\x99\x99\x9a" + kint(0) + b"\x87\x89"
    p.ordered_dict()
    p.out += b"tR"
    p.out += b"u."
    data = bytes(p.out)
    path = tmp_path / "q.pt"
    torch_zip(path, data, [("0", 4)])
    assert scan_file(path, ALLOW).verdict == "safe", scan_file(path, ALLOW).findings


def test_real_torch_checkpoints_if_torch_is_installed(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    sd = {
        "w": torch.ones(3, 3),
        "q": torch.quantize_per_tensor(torch.ones(4), 0.1, 0, torch.qint8),
        "s": torch.ones(2, 2).to_sparse(),
    }
    p = tmp_path / "m.pt"
    torch.save(sd, p)
    torch.load(p, weights_only=True)
    assert scan_file(p, ALLOW).verdict == "safe", scan_file(p, ALLOW).findings


def test_a_pickle_past_the_childs_limits_spoils_no_other_file(tmp_path: Path) -> None:
    """Files are analysed in batches, ahead of their scan: a memory bomb (a memo index of
    2**31 makes the C unpickler allocate 16 GiB) is not scanned, and the files queued
    with it and after it are still judged, each on its own."""
    from ml_integrity.scan.scanner import scan_paths

    bomb = b"\x80\x04N" + b"r" + struct.pack("<I", 0x7FFFFFFF) + b"."
    for i in range(150):  # more than two batches: requests are queued behind the bomb
        (tmp_path / f"{i:03d}.pkl").write_bytes(pickle.dumps({"i": i}, protocol=4))
    (tmp_path / "005-bomb.pkl").write_bytes(bomb)
    (tmp_path / "070-evil.pkl").write_bytes(pickle.dumps(print, protocol=2))
    report = scan_paths([tmp_path], ScanPolicy(pickle="allowlist"))
    verdicts = {Path(f.path).name: f.verdict for f in report.files}
    assert verdicts.pop("005-bomb.pkl") == "not-scanned"
    assert verdicts.pop("070-evil.pkl") == "unsafe"
    assert set(verdicts.values()) == {"safe"} and len(verdicts) == 150
