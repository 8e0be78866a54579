"""The GitHub Action's entry point (``python -m ml_integrity.action``).

Owns the Action's inputs, its verify and sign flows, the outputs it writes
(``$GITHUB_OUTPUT``, the step summary, SARIF), and the GitHub REST client
(:mod:`.github`). Like :mod:`ml_integrity.cli`, it prints, exits and reads the
environment; it builds one trust value and passes it down.

May import: everything below it (git, trust, scan, core, errors). Never the CLI.
"""
