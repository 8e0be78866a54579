"""Helpers shared by the subcommand modules: JSON output, progress, options."""

from __future__ import annotations

import argparse
import json
import sys
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
    """A progress bar with rate and time left on a terminal (stderr); silent otherwise.

    Long work calls the instance with ``(done_bytes, total_bytes)``. Nothing is
    drawn when there is nothing to do (``total == 0``: everything came from the
    cache) or when stderr is not a terminal or ``CI`` is set; ``rich`` is only
    imported once a bar is drawn, so hooks and pipes never pay for it.
    """

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._label = label
        self._enabled = self._stream.isatty() and not env_flag("CI")
        self._bar: Any = None
        self._task: Any = None

    def __call__(self, done: int, total: int) -> None:
        if not self._enabled or total <= 0:
            return
        if self._bar is None:
            self._start(total)
        self._bar.update(self._task, completed=done, total=total)

    def _start(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as Bar

        self._bar = Bar(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=Console(file=self._stream, force_terminal=True),
            transient=True,
            refresh_per_second=10,
        )
        self._task = self._bar.add_task(self._label, total=total)
        self._bar.start()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> Callable[[int, int], None]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
