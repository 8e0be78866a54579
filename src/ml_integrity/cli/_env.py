"""The environment variables of the command line, validated like the options they stand for.

Each variable is checked once, before the parser is built, so a bad value is a
usage error (exit 2) that names the variable, never a traceback or a value
silently ignored. Commands read the validated values through :func:`get`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ml_integrity.errors import UsageError

__all__ = ["VARIABLES", "check", "flag", "get", "log_level", "workers"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


@dataclass(frozen=True)
class Variable:
    name: str
    option: str
    expects: str
    valid: Callable[[str], bool]
    example: str


def _positive_int(value: str) -> bool:
    return value.isdigit() and int(value) > 0


def _boolean(value: str) -> bool:
    return value.strip().lower() in _TRUE | _FALSE


def _one_of(*choices: str) -> Callable[[str], bool]:
    return lambda value: value in choices


_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

VARIABLES: tuple[Variable, ...] = (
    Variable("ML_INTEGRITY_WORKERS", "--workers", "a positive integer", _positive_int, "4"),
    Variable(
        "ML_INTEGRITY_PICKLE",
        "--pickle",
        "block or allowlist",
        _one_of("block", "allowlist"),
        "block",
    ),
    Variable(
        "ML_INTEGRITY_LOGLEVEL",
        "-v/-vv",
        "one of " + ", ".join(_LEVELS),
        lambda v: v.strip().upper() in _LEVELS,
        "INFO",
    ),
    Variable(
        "ML_INTEGRITY_JSON", "--json", "a boolean (1/0, true/false, yes/no, on/off)", _boolean, "1"
    ),
)
"""Variables whose values have a grammar (free-form ones, like passwords, are not listed)."""


def check(environ: Mapping[str, str] | None = None) -> None:
    """Refuse the first set variable whose value its option would refuse."""
    env = os.environ if environ is None else environ
    for var in VARIABLES:
        value = env.get(var.name)
        if not value:
            continue
        if not var.valid(value):
            raise UsageError(
                f"environment variable {var.name}={value!r} is not valid: expected "
                f"{var.expects} (like {var.option})",
                hint=f"unset {var.name}, or set it like {var.name}={var.example}",
            )


def get(name: str) -> str | None:
    """A variable's value, or None when unset or empty (after :func:`check`)."""
    return os.environ.get(name) or None


def flag(name: str) -> bool:
    return (os.environ.get(name) or "").strip().lower() in _TRUE


def workers() -> int | None:
    value = get("ML_INTEGRITY_WORKERS")
    return int(value) if value is not None and _positive_int(value) else None


def log_level() -> int | None:
    value = (get("ML_INTEGRITY_LOGLEVEL") or "").strip().upper()
    return logging.getLevelNamesMapping()[value] if value in _LEVELS else None
