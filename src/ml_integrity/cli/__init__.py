"""The ``ml-integrity`` command line: the entry point and one module per command.

:mod:`.main` builds the parser, dispatches and maps every
:class:`~ml_integrity.errors.Error` to one message and the exit code of the
contract. A command module defines ``register(subparsers)`` (which adds its
parser and sets ``handler`` with ``parser.set_defaults(handler=run)``), an
optional ``ORDER`` for ``--help``, and ``run(args) -> int``. Modules whose name
starts with an underscore are shared helpers (``_common``, ``_options``,
``_trust``), not commands.

Entry points print, exit and read the environment; nothing below them does, and
no ``argparse.Namespace`` leaves this package. Heavy dependencies (sigstore,
cryptography, requests) are imported inside ``run`` so that hooks start fast.

May import: everything below it (git, trust, scan, core, errors). Never the Action.
"""
