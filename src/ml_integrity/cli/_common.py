"""Helpers shared by the subcommand modules: JSON output, progress, options."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from ml_integrity.cli.main import add_verbosity


def add_command(
    subparsers: Any,
    name: str,
    *,
    help: str,
    description: str,
    epilog: str | None = None,
) -> argparse.ArgumentParser:
    """Add a subcommand parser with the options every command shares."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_verbosity(parser)
    return parser


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        default=env_flag("ML_INTEGRITY_JSON"),
        help="print a machine-readable JSON report on stdout (env: ML_INTEGRITY_JSON)",
    )


def env_flag(name: str) -> bool:
    from ml_integrity.cli import _env

    return _env.flag(name)


def print_json(data: object, stream: TextIO | None = None) -> None:
    print(json.dumps(data, indent=2, sort_keys=True), file=stream or sys.stdout)


class Progress:
    """A one-line progress bar on a terminal (stderr); silent otherwise.

    Long work calls the instance with ``(done_bytes, total_bytes)``. Redraws are
    throttled to 10 per second so that the bar costs nothing measurable.
    """

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._label = label
        self._enabled = self._stream.isatty() and not env_flag("CI")
        self._last = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        if not self._enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and done < total:
            return
        self._last = now
        frac = done / total if total else 1.0
        width = 30
        bar = "#" * int(frac * width)
        self._stream.write(
            f"\r{self._label} [{bar:<{width}}] {frac:6.1%} {done / 1e9:.2f}/{total / 1e9:.2f} GB"
        )
        self._stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self._stream.write("\r\033[K")
            self._stream.flush()

    def __enter__(self) -> Callable[[int, int], None]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
