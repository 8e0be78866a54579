"""Keras: the JSON model config of ``.keras`` zips and of HDF5 (``.h5``) files.

A ``Lambda`` layer (Keras 2) or ``__lambda__`` object (Keras 3) carries
Python bytecode; an object whose ``module`` is outside the Keras namespaces
is imported and called on load. HDF5 is not parsed: its raw bytes are
searched for JSON configs (see ``docs/scanning.md``); h5py itself reads no
code, so an HDF5 file is judged by the Keras configs it holds.
"""

from __future__ import annotations

from ml_integrity.scan.readers import FileReader
from ml_integrity.scan.records import Value

__all__ = ["HDF5_MAGIC", "KerasIssue", "find_hdf5", "keras_config_issues"]

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

HDF5_OFFSETS = (0, 512, 1024, 2048, 4096)


def find_hdf5(reader: FileReader) -> bool:
    return any(reader.read_at(off, 8) == HDF5_MAGIC for off in HDF5_OFFSETS)


_KERAS_FUNCTION_MODULES = frozenset(
    f"{p}{m}"
    for p in ("keras.", "keras.src.", "tf_keras.", "tensorflow.keras.")
    for m in ("activations", "losses", "metrics", "initializers", "regularizers", "constraints")
)
_KERAS_NAMESPACES = ("keras", "tf_keras", "keras_hub", "keras_nlp", "keras_cv", "tensorflow.keras")


class KerasIssue(Value):
    """``kind``: "keras-lambda" | "keras-foreign-module"; ``where``: a JSON path."""

    __slots__ = ("kind", "message", "where")

    def __init__(self, kind: str, message: str, where: str) -> None:
        self.kind = kind
        self.message = message
        self.where = where


def keras_config_issues(config: object, path: str = "$") -> list[KerasIssue]:
    """Objects in a Keras config that make loading run code from the file or import a module.

    - ``Lambda`` layers (and Keras 3 ``__lambda__`` objects): the config
      carries marshalled Python bytecode.
    - an object whose ``module`` is outside the Keras namespaces: loading
      imports that module and calls into it (the safe-mode bypasses of
      2025 used this).
    - a ``function`` reference outside Keras' activation/loss/metric/
      initializer/regularizer/constraint modules (for example
      ``keras.utils.get_file``).
    """
    out: list[KerasIssue] = []
    stack: list[tuple[object, str]] = [(config, path)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        cls = node.get("class_name")
        module = node.get("module")
        if cls in ("Lambda", "__lambda__", "TFOpLambda") or node.get("function_type") == "lambda":
            out.append(KerasIssue("keras-lambda", f"Keras {cls or 'lambda'} layer", where))
        if isinstance(module, str):
            if not (
                module in _KERAS_NAMESPACES
                or module.startswith(tuple(n + "." for n in _KERAS_NAMESPACES))
            ):
                out.append(
                    KerasIssue(
                        "keras-foreign-module",
                        f"Keras object {cls!r} from module {module!r}",
                        where,
                    )
                )
            elif cls == "function" and module not in _KERAS_FUNCTION_MODULES:
                name = node.get("config")
                out.append(
                    KerasIssue(
                        "keras-foreign-module",
                        f"Keras config calls function {module}.{name}",
                        where,
                    )
                )
        elif module is not None:
            out.append(KerasIssue("keras-foreign-module", "Keras module is not a string", where))
        stack.extend((v, f"{where}.{k}") for k, v in node.items())
    return out


def hdf5_config_issues(r: FileReader) -> list[tuple[str, str, str | None]]:
    """(kind, message, where) for the Keras JSON configs found in the raw bytes of an HDF5 file."""
    import json
    import re

    step = 8 << 20
    starts = re.compile(rb'\{\s*"(?:class_name|module|config)"\s*:')
    tokens = (b'"Lambda"', b'"__lambda__"', b'"function_type"', b'"module"')
    spans: list[tuple[int, int]] = []
    loose: list[tuple[int, bytes]] = []
    out: list[tuple[str, str, str | None]] = []
    saw_model_config = False
    decoder = json.JSONDecoder()
    pos = 0
    while pos < r.length:
        chunk = r.read_at(pos, step + 64)
        saw_model_config = saw_model_config or b"model_config" in chunk
        for m in starts.finditer(chunk):
            at = pos + m.start()
            if m.start() >= step or any(s <= at < e for s, e in spans):
                continue
            text = r.read_at(at, 64 << 20).decode("latin-1")
            try:
                obj, end = decoder.raw_decode(text)
            except (ValueError, RecursionError):
                continue
            spans.append((at, at + end))
            out.extend(
                (i.kind, f"{i.message} at {i.where} (Keras config at byte {at})", i.where)
                for i in keras_config_issues(obj)
            )
        for tok in tokens:
            i = chunk.find(tok)
            while 0 <= i < step:
                loose.append((pos + i, tok))
                i = chunk.find(tok, i + 1)
        pos += step
    for at, tok in loose:
        if not any(s <= at < e for s, e in spans) and tok != b'"module"':
            out.append(
                (
                    "keras-lambda",
                    f"{tok.decode()} appears at byte {at} outside any parseable Keras config",
                    None,
                )
            )
    if saw_model_config and not spans:
        out.append(
            (
                "not-scanned",
                "HDF5 file has a model_config attribute but no contiguous JSON config was found",
                None,
            )
        )
    return out
