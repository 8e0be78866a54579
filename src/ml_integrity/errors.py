"""The one error hierarchy of ml-integrity, and the exit-code contract.

Every failure the library can report is an :class:`Error`. Each error knows
which exit code it maps to, which file it concerns, and how to explain itself
(:meth:`Error.diagnostics`), including a hint at what to do next. Only the
entry points (:mod:`ml_integrity.cli`, :mod:`ml_integrity.action`) print errors or exit.

Families, by what the user should do about them:

- :class:`IntegrityError` (exit 1): the content, signature or signer is not
  what it must be. This is the verdict CI gates on. :class:`PolicyError` and
  :class:`UnsafeArtifactError` belong here too.
- :class:`UsageError` (exit 2): the command line or a configuration file is
  wrong (:class:`ConfigError`).
- :class:`OperationalError` (exit 3): the check could not be carried out
  (a tool is missing, the network failed, a file could not be read).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "BundleError",
    "ConfigError",
    "Error",
    "ExitCode",
    "IntegrityError",
    "ManifestDiff",
    "ManifestError",
    "NetworkError",
    "OperationalError",
    "PolicyError",
    "SignatureError",
    "ToolError",
    "UnsafeArtifactError",
    "UsageError",
]


class ExitCode(enum.IntEnum):
    """One exit-code contract for the CLI, the git hooks and the Action."""

    OK = 0
    """Verified, or clean."""
    FAILURE = 1
    """Integrity or policy failure: tampered, unsigned, untrusted or unsafe."""
    USAGE = 2
    """Usage or configuration error."""
    OPERATIONAL = 3
    """Operational error: a tool is missing, the network failed, an I/O error, a bug."""
    INTERRUPTED = 130
    """Interrupted (Ctrl-C)."""


class Error(Exception):
    """Base class of every error ml-integrity reports.

    ``path`` names the file the error is about (when there is one) and
    ``hint`` says what to do about it.
    """

    exit_code: ExitCode = ExitCode.OPERATIONAL

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = None if path is None else str(path)
        self.hint = hint

    def details(self) -> list[str]:
        """Extra lines shown below the message (for example a file list)."""
        return []

    def diagnostics(self) -> str:
        """A human-readable explanation: the file, the problem, details, a hint."""
        head = f"{self.path}: {self.message}" if self.path else self.message
        lines = [head, *(f"  {line}" for line in self.details())]
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        """A machine-readable form of the error, for ``--json`` output."""
        return {
            "error": type(self).__name__,
            "message": self.message,
            "path": self.path,
            "hint": self.hint,
            "exit_code": int(self.exit_code),
        }


# --- exit 1: integrity and policy failures ---------------------------------


@dataclass(frozen=True)
class ManifestDiff:
    """How the content on disk differs from what was signed (sorted paths)."""

    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    notes: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.missing or self.extra or self.changed)

    def lines(self) -> list[str]:
        out: list[str] = []
        for label, paths in (
            ("changed", self.changed),
            ("missing", self.missing),
            ("extra", self.extra),
        ):
            for p in paths:
                note = self.notes.get(p)
                out.append(f"{label}: {p}" + (f" ({note})" if note else ""))
        return out

    def to_json(self) -> dict[str, list[str]]:
        return {
            "changed": list(self.changed),
            "missing": list(self.missing),
            "extra": list(self.extra),
        }


class IntegrityError(Error):
    """Content, signature or signer is not what it must be."""

    exit_code = ExitCode.FAILURE

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        hint: str | None = None,
        diff: ManifestDiff | None = None,
    ) -> None:
        super().__init__(message, path=path, hint=hint)
        self.diff = diff or ManifestDiff()

    def details(self) -> list[str]:
        return self.diff.lines()

    def to_json(self) -> dict[str, object]:
        out = super().to_json()
        out["diff"] = self.diff.to_json()
        return out


class SignatureError(IntegrityError):
    """The signature does not verify, or was not made by a trusted signer."""


class BundleError(IntegrityError):
    """A signature bundle cannot be parsed or is not an OMS bundle.

    Fail closed: what cannot be parsed is not trusted, so this is an
    integrity failure (exit 1), not a usage error.
    """


class PolicyError(IntegrityError):
    """The trust policy refuses a signer, digest or path."""


class UnsafeArtifactError(IntegrityError):
    """An artifact can run code when loaded (for example a pickle)."""


class ManifestError(IntegrityError):
    """A manifest or a path in it is invalid (escapes the root, absolute, ...)."""


# --- exit 2: usage and configuration ---------------------------------------


class UsageError(Error):
    """The command line is wrong: a missing, unreadable or contradictory input."""

    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """A configuration or policy file is invalid."""


# --- exit 3: operational ---------------------------------------------------


class OperationalError(Error):
    """The check could not be carried out."""

    exit_code = ExitCode.OPERATIONAL


class ToolError(OperationalError):
    """An external tool (git, git-lfs) is missing or failed."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        hint: str | None = None,
        command: Sequence[str] = (),
        stderr: str = "",
    ) -> None:
        super().__init__(message, path=path, hint=hint)
        self.command = tuple(command)
        self.stderr = stderr

    def details(self) -> list[str]:
        out = []
        if self.command:
            out.append("command: " + " ".join(self.command))
        out.extend(line for line in self.stderr.strip().splitlines()[-5:] if line)
        return out


class NetworkError(OperationalError):
    """A remote service (Sigstore, an LFS server, GitHub) could not be reached."""
