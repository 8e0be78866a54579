"""Run a test command as an unprivileged user, so permission checks apply even under root."""

from __future__ import annotations

import os
import shutil

import pytest


def unprivileged_prefix() -> list[str]:
    """The command prefix that drops root to ``nobody`` (empty when not root)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv is needed to drop root privileges")
    return [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]
