"""Generate the scanner's test corpus: malicious files with harmless payloads, and benign files.

The malicious side follows the public bypass literature on pickle scanners
(picklescan, modelscan and fickling advisories of 2024-2025): unlisted
callables, computed and dotted STACK_GLOBAL names, memo and BUILD tricks,
INST/OBJ, nested pickles, duplicate zip entries, bad CRCs, local/central name
mismatches, legacy formats, compression wrappers, misleading extensions, Keras
Lambda layers and foreign modules. Every payload is harmless (``echo`` or
``print``) and no file is ever loaded: the scanner must refuse them by reading.

The benign side is shaped like real artifacts: PyTorch state_dict checkpoints
written opcode by opcode the way ``torch.save`` writes them (torch is not
installed), numpy arrays, joblib dumps, safetensors, GGUF, ONNX, CSV/JSON, a
PNG and Git LFS pointers.

Run as a script to write the corpus into a directory: ``python make_corpus.py DIR``.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import struct
import sys
import tarfile
import warnings
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# --- expectations -------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    verdict: str  # safe | unsafe | not-scanned
    kind: str | None = None  # a finding kind that must be present
    text: str | None = None  # a substring of that finding's message, detail or member


@dataclass
class Case:
    name: str
    path: str
    block: Expect
    allowlist: Expect
    policy: dict[str, object] = field(default_factory=dict)  # extra ScanPolicy fields


BLOCKED = Expect("unsafe", "pickle-blocked")
SAFE = Expect("safe")


def bad(kind: str, text: str | None = None) -> tuple[Expect, Expect]:
    """Unsafe in both modes with the same reason."""
    e = Expect("unsafe", kind, text)
    return e, e


# --- pickle opcodes, written by hand ------------------------------------------------


def s_line(s: str) -> bytes:
    return s.encode() + b"\n"


def glob(module: str, name: str) -> bytes:
    return b"c" + s_line(module) + s_line(name)


def uni(s: str) -> bytes:
    b = s.encode()
    if len(b) < 256:
        return b"\x8c" + bytes([len(b)]) + b
    return b"X" + struct.pack("<I", len(b)) + b


def xuni(s: str) -> bytes:
    """BINUNICODE, the way protocol 2 writes str."""
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def binbytes(b: bytes) -> bytes:
    if len(b) < 256:
        return b"C" + bytes([len(b)]) + b
    return b"B" + struct.pack("<I", len(b)) + b


def kint(i: int) -> bytes:
    if 0 <= i < 256:
        return b"K" + bytes([i])
    if 0 <= i < 65536:
        return b"M" + struct.pack("<H", i)
    return b"J" + struct.pack("<i", i)


PROTO2 = b"\x80\x02"
PROTO4 = b"\x80\x04"


def reduce_call(module: str, name: str, *args: bytes, proto: int = 2) -> bytes:
    """``module.name(*args)`` as GLOBAL/STACK_GLOBAL + tuple + REDUCE."""
    g = uni(module) + uni(name) + b"\x93" if proto >= 4 else glob(module, name)
    return g + b"(" + b"".join(args) + b"tR"


def os_system(proto: int = 2) -> bytes:
    head = PROTO4 if proto >= 4 else PROTO2
    return head + reduce_call("os", "system", xuni("echo harmless"), proto=proto) + b"."


class TorchPickler:
    """Emits a state_dict pickle the way torch.save (protocol 2) lays it out."""

    def __init__(self) -> None:
        self.out = bytearray(PROTO2)
        self.memo: dict[str, int] = {}
        self.n = 0

    def put(self) -> None:
        self.out += b"q" + bytes([self.n]) if self.n < 256 else b"r" + struct.pack("<I", self.n)
        self.n += 1

    def get(self, i: int) -> None:
        self.out += b"h" + bytes([i]) if i < 256 else b"j" + struct.pack("<I", i)

    def glob(self, module: str, name: str) -> None:
        key = f"{module}.{name}"
        if key in self.memo:
            self.get(self.memo[key])
            return
        self.out += glob(module, name)
        self.memo[key] = self.n
        self.put()

    def s(self, text: str) -> None:
        self.out += xuni(text)
        self.put()

    def ordered_dict(self) -> None:
        self.glob("collections", "OrderedDict")
        self.out += b")R"
        self.put()

    def tensor(self, storage: str, key: str, shape: tuple[int, ...], param: bool = False) -> None:
        if param:
            self.glob("torch._utils", "_rebuild_parameter")
            self.out += b"("
        self.glob("torch._utils", "_rebuild_tensor_v2")
        self.out += b"(("
        self.s("storage")
        self.glob("torch", storage)
        self.s(key)
        self.s("cpu")
        numel = 1
        for d in shape:
            numel *= d
        self.out += kint(numel) + b"t"
        self.put()
        self.out += b"Q" + kint(0)
        stride = []
        acc = 1
        for d in reversed(shape):
            stride.append(acc)
            acc *= d
        for part in (shape, tuple(reversed(stride))):
            if len(part) == 1:
                self.out += kint(part[0]) + b"\x85"
            elif len(part) == 2:
                self.out += kint(part[0]) + kint(part[1]) + b"\x86"
            else:
                self.out += b"(" + b"".join(kint(x) for x in part) + b"t"
            self.put()
        self.out += b"\x89"
        self.ordered_dict()
        self.out += b"t"
        self.put()
        self.out += b"R"
        self.put()
        if param:
            self.out += b"\x88"  # requires_grad
            self.ordered_dict()
            self.out += b"tR"
            self.put()


TENSORS = [
    ("conv1.weight", "FloatStorage", (8, 3)),
    ("conv1.bias", "FloatStorage", (8,)),
    ("bn1.running_mean", "FloatStorage", (8,)),
    ("bn1.num_batches_tracked", "LongStorage", ()),
    ("fc.weight", "BFloat16Storage", (4, 8)),
    ("fc.bias", "HalfStorage", (4,)),
]
ELEMENT = {"FloatStorage": 4, "LongStorage": 8, "BFloat16Storage": 2, "HalfStorage": 2}


def state_dict_pickle(params: bool = False) -> tuple[bytes, list[tuple[str, int]]]:
    """A state_dict pickle (with ``_metadata``) and the storages it references."""
    p = TorchPickler()
    p.ordered_dict()
    p.out += b"("
    storages = []
    for i, (name, storage, shape) in enumerate(TENSORS):
        p.s(name)
        p.tensor(storage, str(i), shape if shape else (1,), param=params)
        numel = 1
        for d in shape:
            numel *= d
        storages.append((str(i), numel * ELEMENT[storage]))
    p.out += b"u"
    # state_dict._metadata, applied with BUILD as torch writes it
    p.out += b"}"
    p.put()
    p.s("_metadata")
    p.ordered_dict()
    p.out += b"("
    for prefix in ("", "conv1", "bn1", "fc"):
        p.s(prefix)
        p.out += b"}"
        p.put()
        p.s("version")
        p.out += kint(1) + b"s"
    p.out += b"usb."
    return bytes(p.out), storages


def checkpoint_pickle() -> tuple[bytes, list[tuple[str, int]]]:
    """{'epoch': numpy int64 scalar, 'model': state_dict}, as training loops save it."""
    p = TorchPickler()
    p.out += b"}"
    p.put()
    p.out += b"("
    p.s("epoch")
    p.glob("numpy.core.multiarray", "scalar")
    p.glob("numpy", "dtype")
    p.s("i8")
    p.out += b"\x89\x88\x87R"
    p.put()
    p.out += b"(" + kint(3) + xuni("<") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xff" + kint(0)
    p.out += b"tb"
    p.glob("_codecs", "encode")
    p.s("\x07" + "\x00" * 7)
    p.s("latin1")
    p.out += b"\x86R\x86R"
    p.put()
    p.s("note")
    p.s("trained on a generated corpus")
    p.out += b"u."
    # a dict holding the numpy scalar; the state_dict goes in a second stacked-free file
    return bytes(p.out), []


def torch_zip(
    path: Path,
    pkl: bytes,
    storages: list[tuple[str, int]],
    *,
    prefix: str = "archive",
    extra: list[tuple[str, bytes]] | None = None,
) -> None:
    """The torch.save zip layout: data.pkl, byteorder, data/N, version, .data/serialization_id."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
            z.writestr(f"{prefix}/data.pkl", pkl)
            z.writestr(f"{prefix}/byteorder", b"little")
            for key, nbytes in storages:
                # deterministic "weights" whose first bytes look like a pickle opcode pair
                z.writestr(f"{prefix}/data/{key}", (b"\x80\x02" + bytes(range(256)) * 64)[:nbytes])
            z.writestr(f"{prefix}/version", b"3\n")
            z.writestr(f"{prefix}/.data/serialization_id", b"1234567890")
            for name, data in extra or []:
                z.writestr(name, data)


def patch_crc(path: Path, entry: str) -> None:
    """Corrupt the CRC of an entry in both its local header and the central directory."""
    data = bytearray(path.read_bytes())
    name = entry.encode()
    for sig, crc_at, name_at in ((b"PK\x03\x04", 14, 30), (b"PK\x01\x02", 16, 46)):
        i = data.find(sig)
        while i >= 0:
            if data[i + name_at : i + name_at + len(name)] == name:
                data[i + crc_at : i + crc_at + 4] = b"\xde\xad\xbe\xef"
            i = data.find(sig, i + 4)
    path.write_bytes(bytes(data))


def rename_local(path: Path, old: str, new: str) -> None:
    """Rename an entry in its local header only (same length): the views disagree."""
    assert len(old) == len(new)
    data = bytearray(path.read_bytes())
    i = data.find(b"PK\x03\x04")
    while i >= 0:
        at = i + 30
        if data[at : at + len(old)] == old.encode():
            data[at : at + len(old)] = new.encode()
            break
        i = data.find(b"PK\x03\x04", i + 4)
    path.write_bytes(bytes(data))


def hide_entry(path: Path, name: str, payload: bytes) -> None:
    """Insert an entry that only local headers show (not in the central directory)."""
    data = path.read_bytes()
    first_cd = data.find(b"PK\x01\x02")
    raw = name.encode()
    crc = zlib.crc32(payload)
    local = (
        struct.pack(
            "<4s5H3I2H", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, len(payload), len(payload), len(raw), 0
        )
        + raw
        + payload
    )
    # the new entry sits between the last entry and the central directory: only the
    # central directory's own offset in the EOCD moves
    body, cd = data[:first_cd], bytearray(data[first_cd:])
    shift = len(local)
    e = cd.find(b"PK\x05\x06")
    (cd_off,) = struct.unpack_from("<I", cd, e + 16)
    struct.pack_into("<I", cd, e + 16, cd_off + shift)
    path.write_bytes(body + local + bytes(cd))


# --- numpy / npy ---------------------------------------------------------------------


def npy_bytes(descr: object, shape: tuple[int, ...], payload: bytes) -> bytes:
    header = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {shape!r}, }}"
    pad = 64 - (10 + len(header) + 1) % 64
    header += " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + payload


def object_array_pickle(element: bytes) -> bytes:
    """pickle of a 1-element numpy object array holding ``element`` (opcodes)."""
    return (
        PROTO2
        + glob("numpy.core.multiarray", "_reconstruct")
        + glob("numpy", "ndarray")
        + kint(0)
        + b"\x85"
        + binbytes(b"b")
        + b"\x87R("
        + kint(1)
        + kint(1)
        + b"\x85"
        + glob("numpy", "dtype")
        + xuni("O8")
        + b"\x89\x88\x87R("
        + kint(3)
        + xuni("|")
        + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xff"
        + kint(63)
        + b"tb\x89]"
        + element
        + b"atb."
    )


# --- other formats ----------------------------------------------------------------


def safetensors_bytes(ok: bool = True) -> bytes:
    data = struct.pack("<4f", 1, 2, 3, 4) + struct.pack("<2q", 5, 6)
    header = {
        "__metadata__": {"format": "pt"},
        "w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
        "n": {"dtype": "I64", "shape": [2], "data_offsets": [16, 32 if ok else 40]},
    }
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


def gguf_bytes() -> bytes:
    def gstr(s: str) -> bytes:
        return struct.pack("<Q", len(s)) + s.encode()

    kv = gstr("general.architecture") + struct.pack("<I", 8) + gstr("llama")
    tensor = gstr("tok.weight") + struct.pack("<I", 1) + struct.pack("<Q", 4) + struct.pack("<I", 0)
    tensor += struct.pack("<Q", 0)
    body = b"GGUF" + struct.pack("<IQQ", 3, 1, 1) + kv + tensor
    body += b"\0" * (-len(body) % 32)
    return body + struct.pack("<4f", 0, 1, 2, 3)


def pb_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pb_field(num: int, wire: int, payload: bytes) -> bytes:
    key = pb_varint(num << 3 | wire)
    if wire == 2:
        return key + pb_varint(len(payload)) + payload
    return key + payload


def onnx_bytes() -> bytes:
    """A minimal ModelProto: ir_version, producer, a graph with one Identity node, opset."""
    node = pb_field(1, 2, b"x") + pb_field(2, 2, b"y") + pb_field(4, 2, b"Identity")
    vi_x = pb_field(1, 2, b"x")
    vi_y = pb_field(1, 2, b"y")
    graph = (
        pb_field(1, 2, node) + pb_field(2, 2, b"g") + pb_field(11, 2, vi_x) + pb_field(12, 2, vi_y)
    )
    opset = pb_field(2, 0, pb_varint(17))
    return (
        pb_field(1, 0, pb_varint(8))
        + pb_field(2, 2, b"ml-integrity-tests")
        + pb_field(7, 2, graph)
        + pb_field(8, 2, opset)
    )


def png_bytes() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    raw = b"".join(b"\0" + bytes([x * 16, 0, 255 - x * 16]) * 4 for x in range(4))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def lfs_pointer(data: bytes) -> tuple[bytes, str]:
    oid = hashlib.sha256(data).hexdigest()
    text = f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(data)}\n"
    return text.encode(), oid


def keras_zip(path: Path, layers: Sequence[Mapping[str, object]]) -> None:
    config = {
        "module": "keras",
        "class_name": "Sequential",
        "config": {"name": "seq", "layers": layers},
        "registered_name": None,
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.6.0"}))
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n" + b"\0" * 64)


DENSE = {
    "module": "keras.layers",
    "class_name": "Dense",
    "config": {
        "units": 4,
        "activation": {
            "module": "keras.activations",
            "class_name": "function",
            "config": "relu",
            "registered_name": "relu",
        },
    },
    "registered_name": None,
}
LAMBDA = {
    "module": "keras.layers",
    "class_name": "Lambda",
    "config": {"function": {"class_name": "__lambda__", "config": {"code": "4wEAAAAAAAAA"}}},
    "registered_name": None,
}
FOREIGN = {
    "module": "os",
    "class_name": "function",
    "config": "system",
    "registered_name": "system",
}


# --- the corpus --------------------------------------------------------------------------


class Corpus:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.cases: list[Case] = []

    def add(
        self,
        name: str,
        rel: str,
        content: bytes | Callable[[Path], object],
        expect: tuple[Expect, Expect],
        **policy: object,
    ) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            content(path)
        self.cases.append(Case(name, rel, expect[0], expect[1], dict(policy)))


def build(root: Path) -> list[Case]:
    c = Corpus(root)
    mal = "malicious"
    ben = "benign"
    u_os = bad("unsafe-global", "os.system")

    # unlisted callables, by each opcode that imports or calls
    c.add(
        "os.system protocol 0",
        f"{mal}/p0_os_system.pkl",
        b"cos\nsystem\n(S'echo harmless'\ntR.",
        u_os,
    )
    c.add("os.system protocol 2", f"{mal}/p2_os_system.pkl", os_system(2), u_os)
    c.add("os.system protocol 4", f"{mal}/p4_os_system.bin", os_system(4), u_os)
    c.add(
        "posix.system (platform module)",
        f"{mal}/posix_system.pkl",
        PROTO2 + reduce_call("posix", "system", xuni("echo harmless")) + b".",
        bad("unsafe-global", "posix.system"),
    )
    c.add(
        "builtins.exec spelled __builtin__",
        f"{mal}/py2_exec.pkl",
        PROTO2 + reduce_call("__builtin__", "exec", xuni("print('harmless')")) + b".",
        bad("unsafe-global", "builtins.exec"),
    )
    c.add(
        "builtins.eval via STACK_GLOBAL",
        f"{mal}/eval.pkl",
        PROTO4 + reduce_call("builtins", "eval", uni("print('harmless')"), proto=4) + b".",
        bad("unsafe-global", "builtins.eval"),
    )
    getattr_chain = (
        PROTO2
        + glob("builtins", "getattr")
        + b"("
        + reduce_call("builtins", "__import__", xuni("os"))
        + xuni("system")
        + b"tR("
        + xuni("echo harmless")
        + b"tR."
    )
    c.add(
        "getattr(__import__('os'), 'system')(...)",
        f"{mal}/getattr.pkl",
        getattr_chain,
        bad("unsafe-call"),
    )
    c.add(
        "builtins.getattr is unlisted",
        f"{mal}/getattr2.pkl",
        getattr_chain,
        bad("unsafe-global", "builtins.getattr"),
    )
    c.add(
        "runpy._run_code",
        f"{mal}/runpy.pkl",
        PROTO2 + reduce_call("runpy", "_run_code", xuni("print('harmless')"), b"}") + b".",
        bad("unsafe-global", "runpy._run_code"),
    )
    c.add(
        "pkgutil.resolve_name then call",
        f"{mal}/resolve_name.pkl",
        PROTO2
        + reduce_call("pkgutil", "resolve_name", xuni("os:system"))
        + b"("
        + xuni("echo")
        + b"tR.",
        bad("unsafe-global", "pkgutil.resolve_name"),
    )
    c.add(
        "operator.attrgetter",
        f"{mal}/attrgetter.pkl",
        PROTO2 + reduce_call("operator", "attrgetter", xuni("system")) + b".",
        bad("unsafe-global", "operator.attrgetter"),
    )
    c.add(
        "nested torch.load",
        f"{mal}/torch_load.pkl",
        PROTO2 + reduce_call("torch", "load", xuni("other.pt")) + b".",
        bad("unsafe-global", "torch.load"),
    )
    c.add(
        "torch.storage._load_from_bytes (unlisted)",
        f"{mal}/load_from_bytes.pkl",
        PROTO2 + reduce_call("torch.storage", "_load_from_bytes", binbytes(os_system())) + b".",
        bad("unsafe-global", "torch.storage._load_from_bytes"),
    )
    # STACK_GLOBAL names resolved through the memo, and computed ones
    memo_names = (
        PROTO4
        + uni("os")
        + b"\x94"
        + uni("system")
        + b"\x94"
        + b"0"
        + b"0"
        + b"h\x00h\x01\x93"
        + b"("
        + uni("echo harmless")
        + b"tR."
    )
    c.add("STACK_GLOBAL names from memo GET", f"{mal}/memo_names.pkl", memo_names, u_os)
    memo_overwrite = (
        PROTO4
        + uni("collections")
        + b"\x94"
        + uni("OrderedDict")
        + b"\x94"
        + uni("os")
        + b"q\x00"
        + uni("system")
        + b"q\x01"
        + b"00"
        + b"00"
        + b"h\x00h\x01\x93)R."
    )
    c.add(
        "memo index overwritten (PUT over MEMOIZE)",
        f"{mal}/memo_overwrite.pkl",
        memo_overwrite,
        u_os,
    )
    computed = (
        PROTO4 + uni("os") + reduce_call("builtins", "str", uni("system"), proto=4) + b"\x93)R."
    )
    c.add(
        "STACK_GLOBAL name from a REDUCE result",
        f"{mal}/computed_name.pkl",
        computed,
        bad("unresolved-global"),
    )
    computed_allowed = (
        PROTO4 + uni("os") + reduce_call("collections", "OrderedDict", proto=4) + b"\x93."
    )
    c.add(
        "STACK_GLOBAL name from an allowlisted call",
        f"{mal}/computed_name2.pkl",
        computed_allowed,
        bad("unresolved-global"),
    )
    c.add(
        "dotted name traversal",
        f"{mal}/dotted.pkl",
        PROTO4 + uni("torch") + uni("serialization.os.system") + b"\x93(" + uni("echo") + b"tR.",
        bad("unsafe-global", "torch.serialization.os.system"),
    )
    c.add(
        "dotted spelling of an allowlisted function",
        f"{mal}/dotted_allowed.pkl",
        PROTO4 + uni("torch") + uni("_utils._rebuild_tensor_v2") + b"\x93.",
        bad("unsafe-global", "torch._utils._rebuild_tensor_v2"),
    )
    # BUILD and SETITEM tricks
    c.add(
        "BUILD sets __setstate__",
        f"{mal}/build_setstate.pkl",
        PROTO2
        + reduce_call("collections", "OrderedDict")
        + b"}"
        + xuni("__setstate__")
        + glob("builtins", "dict")
        + b"sb"
        + b"}"
        + xuni("x")
        + kint(1)
        + b"sb.",
        bad("unsafe-build", "__setstate__"),
    )
    c.add(
        "BUILD on an imported class",
        f"{mal}/build_global.pkl",
        PROTO2 + glob("torch", "Size") + b"}" + xuni("__module__") + xuni("evil") + b"sb.",
        bad("unsafe-build", "torch.Size"),
    )
    c.add(
        "SETITEM on an imported object",
        f"{mal}/setitem_global.pkl",
        PROTO2 + glob("collections", "OrderedDict") + xuni("k") + xuni("v") + b"s.",
        bad("unsafe-build", "collections.OrderedDict"),
    )
    c.add(
        "INST opcode",
        f"{mal}/inst.pkl",
        b"(S'echo harmless'\nios\nsystem\n.",
        bad("unsafe-global", "os.system"),
    )
    c.add(
        "OBJ opcode",
        f"{mal}/obj.pkl",
        PROTO2 + b"(" + glob("os", "system") + xuni("echo harmless") + b"o.",
        bad("unsafe-global", "os.system"),
    )
    c.add(
        "NEWOBJ_EX of an unlisted class",
        f"{mal}/newobj_ex.pkl",
        PROTO4 + uni("subprocess") + uni("Popen") + b"\x93" + uni("echo") + b"\x85}\x92.",
        bad("unsafe-global", "subprocess.Popen"),
    )
    c.add(
        "extension registry opcode",
        f"{mal}/ext.pkl",
        PROTO2 + b"\x82\x01)R.",
        bad("unresolved-global", "extension"),
    )
    c.add(
        "PERSID result called",
        f"{mal}/persid_call.pkl",
        PROTO2 + b"Pid\n" + b")R.",
        bad("unsafe-call", "persistent"),
    )
    # nested pickles in constants
    c.add(
        "pickle inside a bytes constant",
        f"{mal}/nested_bytes.pkl",
        PROTO4 + b"}" + uni("blob") + binbytes(os_system(4)) + b"s.",
        bad("unsafe-global", "os.system"),
    )
    c.add(
        "pickle at the head of a large (skipped) bytes constant",
        f"{mal}/nested_large.pkl",
        PROTO4 + b"}" + uni("blob") + binbytes(os_system(4) + b"\0" * 100_000) + b"s.",
        bad("unsafe-global", "os.system"),
    )
    c.add(
        ".npy object array inside a bytes constant",
        f"{mal}/nested_npy.pkl",
        PROTO4
        + binbytes(
            npy_bytes("|O", (1,), object_array_pickle(reduce_call("os", "system", xuni("echo"))))
        )
        + b".",
        bad("unsafe-global", "os.system"),
    )
    c.add(
        "latin-1 text through _codecs.encode",
        f"{mal}/codecs_nested.pkl",
        PROTO2
        + reduce_call("_codecs", "encode", xuni(os_system().decode("latin-1")), xuni("latin1"))
        + b".",
        bad("unsafe-global", "os.system"),
    )
    # parse failures after something ran
    c.add(
        "truncated after the call (no STOP)",
        f"{mal}/truncated.pkl",
        os_system()[:-1],
        bad("malformed", "no STOP"),
    )
    c.add(
        "unknown opcode after the call",
        f"{mal}/unknown_opcode.pkl",
        os_system()[:-1] + b"\xff.",
        bad("malformed", "unknown opcode"),
    )
    c.add(
        "PROTO then garbage",
        f"{mal}/garbage.pkl",
        b"\x80\x02" + bytes(range(200, 256)),
        bad("malformed"),
    )
    c.add(
        "stacked pickles: benign first, malicious second",
        f"{mal}/stacked.pkl",
        PROTO2 + b"}." + os_system(),
        bad("unsafe-global", "pickle #2"),
    )
    # PyTorch zip tricks
    sd, storages = state_dict_pickle()
    evil = os_system()

    def dup(path: Path) -> None:
        torch_zip(path, sd, storages, extra=[("archive/data.pkl", evil)])

    c.add(
        "torch zip, duplicate data.pkl (benign first)",
        f"{mal}/dup_entry.pt",
        dup,
        bad("unsafe-global", "os.system"),
    )

    def badcrc(path: Path) -> None:
        torch_zip(path, evil, storages)
        patch_crc(path, "archive/data.pkl")

    c.add(
        "torch zip, bad CRC on data.pkl",
        f"{mal}/bad_crc.pt",
        badcrc,
        bad("unsafe-global", "os.system"),
    )

    def mismatch(path: Path) -> None:
        torch_zip(path, sd, storages, extra=[("archive/data/999", evil)])
        rename_local(path, "archive/data/999", "archive/data.pkl")

    c.add(
        "torch zip, local name differs from central",
        f"{mal}/name_mismatch.pt",
        mismatch,
        bad("unsafe-global", "os.system"),
    )

    def hidden(path: Path) -> None:
        torch_zip(path, sd, storages)
        hide_entry(path, "archive/data.pkl", evil)

    c.add(
        "torch zip, entry only in local headers",
        f"{mal}/hidden_entry.pt",
        hidden,
        bad("unsafe-global", "local header"),
    )

    def deflated(path: Path) -> None:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("model/data.pkl", evil)
            z.writestr("model/version", b"3\n")

    c.add(
        "torch zip, deflated data.pkl",
        f"{mal}/deflated.pt",
        deflated,
        bad("unsafe-global", "os.system"),
    )

    def polyglot(path: Path) -> None:
        buf = path.with_suffix(".zip-part")
        torch_zip(buf, evil, [])
        path.write_bytes(PROTO2 + b"}." + buf.read_bytes())
        buf.unlink()

    c.add(
        "pickle with a zip appended (polyglot)",
        f"{mal}/polyglot.pkl",
        polyglot,
        bad("unsafe-global", "zip view"),
    )
    # legacy torch
    magic = PROTO2 + b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little") + b"."
    legacy_tail = PROTO2 + kint(1001) + b"." + PROTO2 + b"}."
    c.add(
        "legacy torch stacked pickles, malicious object",
        f"{mal}/legacy.pt",
        magic + legacy_tail + evil + PROTO2 + b"]." + b"\0" * 64,
        bad("unsafe-global", "object pickle"),
    )

    def legacy_tar(path: Path) -> None:
        with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
            for name, data in (
                ("sys_info", PROTO2 + b"}."),
                ("pickle", evil),
                ("storages", PROTO2 + kint(0) + b"." + PROTO2 + b"]."),
                ("tensors", PROTO2 + kint(0) + b"."),
            ):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))

    c.add("legacy torch tar", f"{mal}/legacy_tar.pt", legacy_tar, bad("unsafe-global", "os.system"))
    # compression wrappers
    c.add(
        "gzip wrapper",
        f"{mal}/model.pkl.gz",
        gzip.compress(evil),
        bad("unsafe-global", "gzip stream"),
    )
    c.add(
        "bz2 wrapper",
        f"{mal}/model.pkl.bz2",
        bz2.compress(evil),
        bad("unsafe-global", "bzip2 stream"),
    )
    c.add(
        "xz wrapper", f"{mal}/model.pkl.xz", lzma.compress(evil), bad("unsafe-global", "xz stream")
    )
    c.add(
        "lzma-alone wrapper",
        f"{mal}/model.pkl.lzma",
        lzma.compress(evil, format=lzma.FORMAT_ALONE),
        bad("unsafe-global", "lzma stream"),
    )
    c.add(
        "zlib wrapper (joblib compress)",
        f"{mal}/model.joblib.z",
        zlib.compress(evil),
        bad("unsafe-global", "zlib stream"),
    )
    c.add(
        "gzip second member",
        f"{mal}/two_members.gz",
        gzip.compress(PROTO2 + b"}.") + gzip.compress(b"") + gzip.compress(evil),
        bad("unsafe-global", "os.system"),
    )
    c.add(
        "decompression bomb",
        f"{mal}/bomb.gz",
        gzip.compress(PROTO2 + b"B" + struct.pack("<I", 8 << 20) + b"\0" * (8 << 20) + b"."),
        (Expect("not-scanned", "not-scanned", "cap"),) * 2,
        max_decompressed_bytes=1 << 20,
    )

    def unsupported_method(path: Path) -> None:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
            z.writestr("weights.bin", evil)
        data = bytearray(path.read_bytes())  # method 99 (AES) in both headers
        for sig, method_at in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
            i = data.find(sig)
            data[i + method_at : i + method_at + 2] = struct.pack("<H", 99)
        path.write_bytes(bytes(data))

    c.add(
        "zip entry with an unsupported compression method",
        f"{mal}/unsupported_method.zip",
        unsupported_method,
        (Expect("not-scanned", "not-scanned", "compression method 99"),) * 2,
    )
    c.add(
        "nesting deeper than the limit",
        f"{mal}/deep.gz",
        gzip.compress(gzip.compress(gzip.compress(evil))),
        (Expect("not-scanned", "not-scanned", "nest"),) * 2,
        max_depth=2,
    )
    # misleading extensions
    c.add(
        "pickle named .safetensors",
        f"{mal}/model.safetensors",
        evil,
        bad("unsafe-global", "os.system"),
    )
    c.add("pickle named .png", f"{mal}/image.png", evil, bad("unsafe-global", "os.system"))
    # numpy
    c.add(
        ".npy object array",
        f"{mal}/objects.npy",
        npy_bytes("|O", (1,), object_array_pickle(reduce_call("os", "system", xuni("echo")))),
        bad("unsafe-global", "object array"),
    )

    def npz(path: Path) -> None:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("weights.npy", npy_bytes("<f4", (2,), struct.pack("<2f", 1, 2)))
            z.writestr(
                "objects.npy",
                npy_bytes(
                    "|O", (1,), object_array_pickle(reduce_call("os", "system", xuni("echo")))
                ),
            )

    c.add(
        ".npz with an object-array member",
        f"{mal}/arrays.npz",
        npz,
        bad("unsafe-global", "objects.npy"),
    )
    c.add(
        "structured .npy with an object field",
        f"{mal}/structured.npy",
        npy_bytes(
            [("a", "<f4"), ("b", "|O")],
            (1,),
            object_array_pickle(reduce_call("os", "system", xuni("echo"))),
        ),
        bad("unsafe-global", "os.system"),
    )
    c.add(
        "unparseable .npy header",
        f"{mal}/broken.npy",
        b"\x93NUMPY\x01\x00\x10\x00{'descr': __imp",
        bad("malformed"),
    )
    # Keras
    c.add(
        "Keras .keras with a Lambda layer",
        f"{mal}/lambda.keras",
        lambda p: keras_zip(p, [DENSE, LAMBDA]),
        bad("keras-lambda"),
    )
    c.add(
        "Keras .keras with a foreign-module function",
        f"{mal}/foreign.keras",
        lambda p: keras_zip(
            p,
            [
                DENSE,
                {
                    "module": "keras.layers",
                    "class_name": "Activation",
                    "config": {"activation": FOREIGN},
                },
            ],
        ),
        bad("keras-foreign-module", "os"),
    )
    c.add(
        "Keras .keras calling keras.utils.get_file",
        f"{mal}/get_file.keras",
        lambda p: keras_zip(
            p, [{"module": "keras.utils", "class_name": "function", "config": "get_file"}]
        ),
        bad("keras-foreign-module", "get_file"),
    )
    # safetensors that lies
    c.add(
        "safetensors with overlapping offsets",
        f"{mal}/bad.safetensors",
        safetensors_bytes(ok=False),
        bad("malformed"),
    )
    c.add(
        "safetensors header length past the end",
        f"{mal}/short.safetensors",
        struct.pack("<Q", 1000) + b'{"a": 1}',
        bad("malformed"),
    )

    # --- benign ---------------------------------------------------------------------
    def mode(block: Expect, allow: Expect = SAFE) -> tuple[Expect, Expect]:
        return block, allow

    c.add(
        "torch state_dict checkpoint",
        f"{ben}/state_dict.pt",
        lambda p: torch_zip(p, sd, storages),
        mode(BLOCKED),
    )
    sdp, st2 = state_dict_pickle(params=True)
    c.add(
        "torch Parameters",
        f"{ben}/params.pth",
        lambda p: torch_zip(p, sdp, st2, prefix="params"),
        mode(BLOCKED),
    )
    ck, _ = checkpoint_pickle()
    c.add(
        "training checkpoint with a numpy scalar",
        f"{ben}/checkpoint.ckpt",
        lambda p: torch_zip(p, ck, []),
        mode(BLOCKED),
    )

    def big_torch(path: Path) -> None:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
            z.writestr("archive/data.pkl", sd)
            for key, _ in storages:
                z.writestr(f"archive/data/{key}", b"\x80\x02\x00" * 50_000)
            z.writestr("archive/version", b"3\n")

    c.add(
        "torch zip whose tensor data starts like a pickle",
        f"{ben}/tensors_like_pickle.pt",
        big_torch,
        mode(BLOCKED),
    )
    c.add(
        "legacy torch stacked pickles",
        f"{ben}/legacy.pt",
        magic
        + legacy_tail
        + sd
        + PROTO2
        + b"("
        + b"".join(xuni(k) for k, _ in storages)
        + b"l."
        + struct.pack("<q", 2)
        + b"\x80\x02\0\0\0\0\0\0",
        mode(BLOCKED),
    )
    c.add("protocol 0 pickle of a list", f"{ben}/list_p0.pkl", b"(lp0\nI1\naI2\na.", mode(BLOCKED))
    c.add(
        ".npy float array",
        f"{ben}/floats.npy",
        npy_bytes("<f4", (3,), struct.pack("<3f", 1, 2, 3)),
        mode(SAFE),
    )
    c.add(
        ".npy object array of ints",
        f"{ben}/objects_ok.npy",
        npy_bytes("|O", (1,), object_array_pickle(kint(7))),
        mode(Expect("unsafe", "pickle-blocked", "object array")),
    )
    c.add("safetensors", f"{ben}/model.safetensors", safetensors_bytes(), mode(SAFE))
    c.add("GGUF", f"{ben}/model.gguf", gguf_bytes(), mode(SAFE))
    c.add("ONNX", f"{ben}/model.onnx", onnx_bytes(), mode(SAFE))
    c.add("PNG", f"{ben}/image.png", png_bytes(), mode(SAFE))
    c.add("CSV starting with c", f"{ben}/cols.csv", b"col_a,col_b\n1,2\n3,4\n", mode(SAFE))
    c.add("CSV starting with i", f"{ben}/ids.csv", b"id,name\n1,ada\n", mode(SAFE))
    c.add("CSV starting with P", f"{ben}/prices.csv", b"Price,Qty\n1.5,2\n", mode(SAFE))
    c.add(
        "JSON", f"{ben}/config.json", json.dumps({"lr": 0.1, "layers": [1, 2]}).encode(), mode(SAFE)
    )
    c.add("empty file", f"{ben}/empty.bin", b"", mode(SAFE))
    c.add(
        "Keras .keras with Dense layers",
        f"{ben}/dense.keras",
        lambda p: keras_zip(p, [DENSE, DENSE]),
        mode(SAFE),
    )
    c.add("gzip of a CSV", f"{ben}/table.csv.gz", gzip.compress(b"a,b\n1,2\n" * 1000), mode(SAFE))
    c.add(
        "tar of data files",
        f"{ben}/data.tar",
        lambda p: _tar(p, {"a.csv": b"x,y\n", "w.safetensors": safetensors_bytes()}),
        mode(SAFE),
    )
    c.add(
        "gzip of a torch checkpoint",
        f"{ben}/state_dict.pt.gz",
        lambda p: p.write_bytes(gzip.compress((root / f"{ben}/state_dict.pt").read_bytes())),
        mode(BLOCKED),
    )
    _optional(c, root)
    return c.cases


def _tar(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))


def _optional(c: Corpus, root: Path) -> None:
    """Cases made with numpy, joblib and h5py, when they are installed (the ``test`` extra)."""
    try:
        import numpy as np
    except ImportError:
        return
    mal, ben = "malicious", "benign"

    def save(path: Path, arr: Any, **kw: Any) -> None:
        with open(path, "wb") as f:
            np.save(f, arr, **kw)

    c.add(
        "numpy .npy (np.save)",
        f"{ben}/np_floats.npy",
        lambda p: save(p, np.arange(10.0)),
        (SAFE, SAFE),
    )

    def npz(path: Path) -> None:
        with open(path, "wb") as f:
            np.savez_compressed(f, a=np.ones((3, 3)), b=np.arange(4))

    c.add("numpy .npz (savez_compressed)", f"{ben}/np_arrays.npz", npz, (SAFE, SAFE))
    c.add(
        "numpy object array (np.save)",
        f"{ben}/np_objects.npy",
        lambda p: save(p, np.array([1, "a", None], dtype=object), allow_pickle=True),
        (BLOCKED, SAFE),
    )
    import pickle

    for proto in (2, 4, 5):
        c.add(
            f"pickled numpy array, protocol {proto}",
            f"{ben}/np_p{proto}.pkl",
            pickle.dumps(
                {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.float64(1.5)},
                protocol=proto,
            ),
            (BLOCKED, SAFE),
        )

    class Evil:
        def __reduce__(self) -> tuple[object, ...]:
            import os

            return (os.system, ("echo harmless",))

    try:
        import joblib
    except ImportError:
        joblib = None
    if joblib is not None:
        c.add(
            "joblib dump of arrays",
            f"{ben}/arrays.joblib",
            lambda p: joblib.dump(
                {
                    "a": np.arange(100.0),
                    "b": np.ones((3, 4), dtype=np.int8),
                    "o": np.array([1, None], dtype=object),
                },
                p,
            ),
            (BLOCKED, SAFE),
        )
        c.add(
            "joblib dump, zlib compressed",
            f"{ben}/arrays_z.joblib",
            lambda p: joblib.dump({"a": np.arange(100.0)}, p, compress=("zlib", 3)),
            (BLOCKED, SAFE),
        )
        c.add(
            "joblib dump with an os.system reduce",
            f"{mal}/evil.joblib",
            lambda p: joblib.dump({"a": np.arange(100.0), "x": Evil()}, p),
            bad("unsafe-global", "system"),
        )
        c.add(
            "joblib dump, gzip, os.system after an array",
            f"{mal}/evil_gz.joblib",
            lambda p: joblib.dump([np.arange(1000.0), Evil()], p, compress=("gzip", 3)),
            bad("unsafe-global", "system"),
        )
    try:
        import h5py
    except ImportError:
        return

    def h5(path: Path, layers: Sequence[Mapping[str, object]]) -> None:
        config = {"class_name": "Sequential", "config": {"name": "seq", "layers": layers}}
        with h5py.File(path, "w") as f:
            f.attrs["keras_version"] = b"2.13.1"
            f.attrs["backend"] = b"tensorflow"
            f.attrs["model_config"] = json.dumps(config).encode()
            g = f.create_group("model_weights")
            g.create_dataset("dense/kernel:0", data=np.ones((4, 4), dtype=np.float32))

    k2_dense = {"class_name": "Dense", "config": {"units": 4, "activation": "relu"}}
    k2_lambda = {
        "class_name": "Lambda",
        "config": {"function": ["4wEAAAAAAAAAAAAAAAEAAAAB", None, None], "function_type": "lambda"},
    }
    c.add(
        "Keras 2 .h5 with Dense layers",
        f"{ben}/dense.h5",
        lambda p: h5(p, [k2_dense]),
        (SAFE, SAFE),
    )
    c.add(
        "Keras 2 .h5 with a Lambda layer",
        f"{mal}/lambda.h5",
        lambda p: h5(p, [k2_dense, k2_lambda]),
        bad("keras-lambda"),
    )


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "corpus")
    cases = build(root)
    for case in cases:
        print(f"{case.path}\t{case.block.verdict}/{case.allowlist.verdict}\t{case.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
