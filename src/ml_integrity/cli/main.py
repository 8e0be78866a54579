"""The ``ml-integrity`` command line: argument parsing, logging, exit codes.

This module and the command modules beside it are the only ones that print,
exit or configure logging. Each subcommand lives in its own module in
``ml_integrity.cli`` and exposes ``register(subparsers)``; this module builds the
parser, dispatches, and turns every :class:`~ml_integrity.errors.Error` into
one clear message and the exit code of the contract (see ``errors.ExitCode``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

from ml_integrity import __version__
from ml_integrity.errors import Error, ExitCode

_logger = logging.getLogger("ml_integrity")


def _command_modules() -> list[ModuleType]:
    """Every subcommand module under ``ml_integrity.cli``, in --help order.

    A module is a subcommand when it defines ``register(subparsers)``; its
    ``ORDER`` (an int, default 100) places it in ``--help``. Modules whose name
    starts with an underscore are helpers, not commands.
    """
    from ml_integrity import cli

    modules = []
    for info in pkgutil.iter_modules(cli.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"ml_integrity.cli.{info.name}")
        if hasattr(module, "register"):
            modules.append(module)
    modules.sort(key=lambda m: (getattr(m, "ORDER", 100), m.__name__))
    return modules


_EPILOG = """\
exit codes:
  0    verified / clean
  1    integrity or policy failure (tampered, unsigned, untrusted, unsafe)
  2    usage or configuration error
  3    operational error (git-lfs missing, network, I/O, bug)
  130  interrupted

Run 'ml-integrity COMMAND --help' for the options of a command.
Set ML_INTEGRITY_LOGLEVEL=DEBUG (or pass -vv) for debug logging.
"""


def _command_module(command: str) -> ModuleType | None:
    """The module of one subcommand, imported alone (``sign-repo`` -> ``sign_repo``)."""
    import importlib.util

    name = command.replace("-", "_")
    if not name.isidentifier() or name.startswith("_"):
        return None
    qualified = f"ml_integrity.cli.{name}"
    try:
        if importlib.util.find_spec(qualified) is None:
            return None
    except (ImportError, ValueError):
        return None
    module = importlib.import_module(qualified)
    return module if hasattr(module, "register") else None


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line (top-level options take no value)."""
    for arg in argv:
        if arg == "--":
            return None
        if not arg.startswith("-"):
            return arg
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand; with ``command``, of that one only when it can.

    Importing one command module instead of all of them keeps the start-up of
    the commands that run often (git hooks, pre-commit hooks, filters) short.
    """
    if command is not None:
        module = _command_module(command)
        if module is not None:
            parser = _parser([module])
            sub = next(a for a in parser._actions if a.dest == "command")
            if command in (sub.choices or {}):
                return parser
    return _parser(_command_modules())


def _parser(modules: Sequence[ModuleType]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ml-integrity",
        description=(
            "Record, sign and verify the integrity of ML models and datasets "
            "(OpenSSF Model Signing bundles, Git LFS, pickle scanning)."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_verbosity(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for module in modules:
        module.register(sub)
    return parser


def add_verbosity(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="more output; repeat (-vv) for debug logging",
    )


def _configure_logging(verbosity: int) -> None:
    from ml_integrity.cli import _env

    if verbosity >= 2:
        level = logging.DEBUG
    elif verbosity == 1:
        level = logging.INFO
    else:
        level = _env.log_level() or logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    _logger.handlers[:] = [handler]
    _logger.setLevel(level)
    _logger.propagate = False


def report_error(err: Error, *, as_json: bool) -> int:
    """Print ``err`` the one way errors are printed, and return its exit code."""
    if os.environ.get("PRE_COMMIT") and err.hint:
        # a pre-commit hook: `ml-integrity` is on the hook's PATH, not on the user's
        from ml_integrity.cli.hook import localize

        err.hint = localize(err.hint)
    if as_json:
        print(json.dumps({"ok": False, **err.to_json()}, indent=2, sort_keys=True))
    label = "FAILED" if err.exit_code == ExitCode.FAILURE else "error"
    print(f"ml-integrity: {label}: {err.diagnostics()}", file=sys.stderr)
    return int(err.exit_code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (the console script exits with it)."""
    from ml_integrity.cli import _env

    if argv is None:
        argv = sys.argv[1:]
    try:
        _env.check()
    except Error as err:
        return report_error(err, as_json=False)
    parser = build_parser(_command_of(argv))
    args = parser.parse_args(argv)
    args.argv = list(argv)  # commands that take file names check for the `--` before them
    _configure_logging(getattr(args, "verbose", 0))
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return int(ExitCode.USAGE)
    as_json = bool(getattr(args, "json", False))
    try:
        return int(handler(args))
    except Error as err:
        _logger.debug("error detail", exc_info=True)
        return report_error(err, as_json=as_json)
    except KeyboardInterrupt:
        print("ml-integrity: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (for example `| head`); not our failure.
        sys.stderr.close()
        return int(ExitCode.OK)
    except Exception as exc:  # a bug: say so, with the way to report it
        _logger.debug("unexpected error", exc_info=True)
        print(
            f"ml-integrity: internal error: {type(exc).__name__}: {exc}\n"
            "hint: this is a bug in ml-integrity; rerun with -vv and report the output at "
            "https://github.com/ml-integrity/ml-integrity/issues",
            file=sys.stderr,
        )
        return int(ExitCode.OPERATIONAL)


def run() -> None:
    """Console-script entry point."""
    raise SystemExit(main())
