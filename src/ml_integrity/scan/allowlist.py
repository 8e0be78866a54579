"""What ``--pickle allowlist`` accepts: the globals ``torch.load(weights_only=True)`` allows.

Following ``torch/_weights_only_unpickler.py`` (``_get_allowed_globals``):
tensor rebuild functions (plain, parameter, quantized, sparse, meta,
wrapper-subclass and device rebuilds), ``torch.Size``, ``torch.Tensor`` and
the legacy tensor and storage classes, dtypes, quantization schemes,
``torch.device``, ``torch.serialization._get_layout``,
``torch.nn.parameter.Parameter``, ``collections.OrderedDict`` and
``Counter``, ``_codecs.encode`` (how protocol 2 writes bytes) and
``builtins`` ``set``, ``bytearray``, ``complex``. Nothing broader from torch;
``torch._tensor._rebuild_from_type_v2`` (it sets arbitrary attributes on
tensor subclasses) is left out on purpose.

For numpy and joblib arrays: ``numpy.core``/``numpy._core``
``multiarray._reconstruct``, ``multiarray.scalar``, ``numeric._frombuffer``,
``numpy.ndarray``, ``numpy.dtype`` and ``joblib.numpy_pickle.NumpyArrayWrapper``.

A pair matches only whole: ``torch`` + ``_utils._rebuild_tensor_v2`` (a
dotted name, resolved by attribute traversal) is not allowed. Protocol 0-2
pickles may spell ``builtins`` as ``__builtin__`` (``fix_imports``).
"""

from __future__ import annotations

import _compat_pickle

__all__ = ["ALLOWLIST", "is_allowed"]

_STORAGES = [
    f"{k}Storage"
    for k in (
        "Double", "Float", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool",
        "ComplexDouble", "ComplexFloat", "QUInt8", "QInt8", "QInt32", "QUInt4x2", "QUInt2x4",
    )
]  # fmt: skip
_TENSORS = [
    f"{k}Tensor"
    for k in ("Double", "Float", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool")
]
_DTYPES = [
    "float32", "float", "float64", "double", "float16", "half", "bfloat16", "complex32",
    "complex64", "cfloat", "complex128", "cdouble", "uint8", "uint16", "uint32", "uint64",
    "int8", "int16", "short", "int32", "int", "int64", "long", "bool", "quint8", "qint8",
    "qint32", "quint4x2", "quint2x4", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz",
    "float8_e5m2fnuz", "float8_e8m0fnu", "float4_e2m1fn_x2", "bits1x8", "bits2x4", "bits4x2",
    "bits8", "bits16", "complex_half", "cdouble",
    *(f"uint{i}" for i in range(1, 8)), *(f"int{i}" for i in range(1, 8)),
]  # fmt: skip
_QSCHEMES = [
    "per_tensor_affine",
    "per_tensor_symmetric",
    "per_channel_affine",
    "per_channel_symmetric",
    "per_channel_affine_float_qparams",
]
_REBUILD = [
    "_rebuild_tensor",
    "_rebuild_tensor_v2",
    "_rebuild_tensor_v3",
    "_rebuild_parameter",
    "_rebuild_parameter_with_state",
    "_rebuild_qtensor",
    "_rebuild_sparse_tensor",
    "_rebuild_meta_tensor_no_storage",
    "_rebuild_wrapper_subclass",
    "_rebuild_device_tensor_from_numpy",
    "_rebuild_device_tensor_from_cpu_tensor",
]
_NUMPY = [
    (f"{np}.{mod}", name)
    for np in ("numpy.core", "numpy._core")
    for mod, name in (
        ("multiarray", "_reconstruct"),
        ("multiarray", "scalar"),
        ("numeric", "_frombuffer"),
    )
]

ALLOWLIST: frozenset[tuple[str, str]] = frozenset(
    [("torch._utils", n) for n in _REBUILD]
    + [("torch", n) for n in _STORAGES + _TENSORS + _DTYPES + _QSCHEMES]
    + [("torch.sparse", n) for n in _TENSORS]
    + [("torch.storage", n) for n in ("UntypedStorage", "TypedStorage")]
    + [("torch", n) for n in ("Size", "Tensor", "device", "UntypedStorage")]
    + [("torch.serialization", "_get_layout"), ("torch.nn.parameter", "Parameter")]
    + [("collections", "OrderedDict"), ("collections", "Counter")]
    + [("_codecs", "encode")]
    + [("builtins", n) for n in ("set", "bytearray", "complex")]
    + _NUMPY
    + [("numpy", "ndarray"), ("numpy", "dtype")]
    + [("joblib.numpy_pickle", "NumpyArrayWrapper")]
)
"""``(module, name)`` pairs a pickle may import in ``allowlist`` mode."""


def mapped(module: str, name: str) -> tuple[str, str]:
    """The name ``fix_imports`` loads for a protocol 0-2 pickle (Python 2 spellings)."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    if module in _compat_pickle.IMPORT_MAPPING:
        return _compat_pickle.IMPORT_MAPPING[module], name
    return module, name


def is_allowed(module: str, name: str) -> bool:
    """Is this global, as written in the pickle, allowed whatever the protocol?

    Written names are loaded as written (protocol 3+) or mapped (0-2): both
    readings must be allowed, or the unmapped one must be a Python 2 module
    name that Python 3 cannot import (``__builtin__``).
    """
    target = mapped(module, name)
    if target == (module, name):
        return target in ALLOWLIST
    return target in ALLOWLIST and module == "__builtin__"
