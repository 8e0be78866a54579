"""Subcommands of the ``ml-integrity`` CLI, one module each.

A subcommand module defines ``register(subparsers)`` (which adds its parser and
sets ``handler`` with ``parser.set_defaults(handler=run)``), an optional
``ORDER`` for ``--help``, and ``run(args) -> int``. Modules here are entry
points: they may print. They must import heavy dependencies (sigstore,
cryptography, requests) inside ``run`` so that hooks start fast.
Shared helpers live in ``_common.py``.
"""
