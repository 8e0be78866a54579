"""This process's id, kept current across ``fork`` (DataLoader workers).

The loader and the journal compare it on every read, to tell a forked worker
from the process that opened the dataset; reading :data:`PID` costs no system
call (``os.getpid()`` would, on every item).
"""

from __future__ import annotations

import os

__all__ = ["PID"]

PID = os.getpid()
"""This process's id (updated in the child after every ``fork``)."""


def _after_fork() -> None:
    global PID
    PID = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
