"""The git hooks and the configuration that ``ml-integrity install`` sets up.

Local install (``ml-integrity install``), in the repository's own config:

- ``filter.lfs.process`` = our filter proxy (``.gitattributes`` keeps
  ``filter=lfs``; the filter is never renamed);
- ``lfs.standalonetransferagent`` = ``ml-integrity`` and its
  ``lfs.customtransfer.ml-integrity.*`` settings (the download gate);
- ``filter.lfs.clean/smudge/required`` when git-lfs has not set them;
- hooks ``post-checkout``, ``post-merge``, ``pre-push`` and ``pre-commit``.
  A hook already there is renamed ``<hook>.pre-ml-integrity`` and run first;
  git-lfs's own hook runs too (``git lfs <hook>``), once.

Global install (``--global``) writes the same settings to the global config
and the hooks into the ``init.templateDir`` that every new clone copies.

Everything changed is recorded (``.git/ml-integrity/install.json``, or
``install-global.json`` in the user's config directory), so that
``ml-integrity uninstall`` restores the previous state exactly.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ml_integrity.core.fileio import write_atomic
from ml_integrity.errors import ConfigError, UsageError
from ml_integrity.git.runner import Git

__all__ = [
    "HOOKS",
    "LFS_HOOKS",
    "InstallReport",
    "clone_hook_text",
    "hook_text",
    "install",
    "install_hooks",
    "uninstall",
]

HOOKS = ("post-checkout", "post-merge", "pre-push", "pre-commit")
LFS_HOOKS = ("post-checkout", "post-merge", "pre-push")
"""Hooks git-lfs itself installs (besides post-commit, which we leave alone)."""
MARKER = "ml-integrity-hook:"
PREVIOUS_SUFFIX = ".pre-ml-integrity"
AGENT = "ml-integrity"
RECORD_VERSION = 1


def python_command() -> tuple[str, str]:
    """(python executable, shell command that runs ml-integrity with it)."""
    exe = sys.executable
    return exe, f"{shlex.quote(exe)} -m ml_integrity"


def desired_config() -> dict[str, str]:
    exe, command = python_command()
    return {
        "filter.lfs.process": f"{command} filter-process",
        "lfs.standalonetransferagent": AGENT,
        f"lfs.customtransfer.{AGENT}.path": exe,
        f"lfs.customtransfer.{AGENT}.args": "-m ml_integrity transfer-agent",
        f"lfs.customtransfer.{AGENT}.concurrent": "false",
    }


XET_AGENT = "xet"
"""Hugging Face's custom transfer agent (``git-xet``), chosen by the server during negotiation."""
XET_URLS = ("https://huggingface.co/", "https://hf.co/")
"""Where the server may choose Xet; more with git config ``ml-integrity.xetUrl`` (repeatable)."""


def xet_overrides(git: Git) -> dict[str, str]:
    """URL-scoped ``lfs.<url>.standalonetransferagent`` = "" for the Xet hosts, when
    ``lfs.customtransfer.xet`` is configured: our global standalone agent would
    otherwise turn off the server's choice of Xet there. Downloads from those
    hosts are then negotiated by git-lfs (Xet or basic); the filter still checks
    every smudge by (path, oid) and content, and ``ml-integrity pull`` verifies."""
    if git.config_get(f"lfs.customtransfer.{XET_AGENT}.path") is None:
        return {}
    extra = git.run(["config", "--get-all", "ml-integrity.xeturl"], check=False)
    urls = [*XET_URLS, *extra.stdout.decode().split()]
    return {f"lfs.{u.rstrip('/')}/.standalonetransferagent": "" for u in dict.fromkeys(urls)}


_LFS_FILTER_DEFAULTS = {
    "filter.lfs.clean": "git-lfs clean -- %f",
    "filter.lfs.smudge": "git-lfs smudge -- %f",
    "filter.lfs.required": "true",
}


def hook_text(name: str) -> str:
    exe, command = python_command()
    template = _hook_template()
    return (
        template.replace("@HOOK@", name)
        .replace("@COMMAND@", command)
        .replace("@PYTHON@", shlex.quote(exe))
    )


CLONE_HOOK_ENV = "ML_INTEGRITY_CLONE_POST_CHECKOUT"
"""Set by ``ml-integrity clone`` for its ``git clone``: a file for the post-checkout
hook's arguments (see :func:`clone_hook_text`)."""


def clone_hook_text() -> str:
    """The post-checkout hook of a clone that ``ml-integrity clone`` is making: with
    :data:`CLONE_HOOK_ENV` set, it writes its arguments there and runs only git-lfs's
    hook, and the clone command makes ml-integrity's check in its own process (one
    interpreter less on every clone); without it, it is the usual hook."""
    lines = hook_text("post-checkout").splitlines(keepends=True)
    at = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    block = [
        f'if [ -n "${CLONE_HOOK_ENV}" ]; then\n',
        f'    printf \'%s\\n\' "$@" > "${CLONE_HOOK_ENV}" || exit 2\n',
        '    exec git lfs post-checkout "$@"\n',
        "fi\n",
    ]
    return "".join([*lines[:at], *block, *lines[at:]])


def _hook_template() -> str:
    """``hooks/hook.sh``: shipped in the wheel beside this module (hatch's
    ``force-include``), read from the source tree in an editable install."""
    shipped = resources.files("ml_integrity.git").joinpath("hook.sh")
    if shipped.is_file():
        return shipped.read_text()
    return (Path(__file__).resolve().parents[3] / "hooks" / "hook.sh").read_text()


def is_ours(path: Path) -> bool:
    try:
        head = path.read_bytes()[:400]
    except OSError:
        return False
    return MARKER.encode() in head


@dataclass
class InstallReport:
    scope: str
    record: Path
    config: dict[str, str] = field(default_factory=dict)
    hooks_dir: Path | None = None
    hooks: dict[str, str] = field(default_factory=dict)
    """hook -> "installed" | "chained" (an existing hook was kept) | "updated"."""
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "scope": self.scope,
            "record": str(self.record),
            "config": self.config,
            "hooks_dir": str(self.hooks_dir) if self.hooks_dir else None,
            "hooks": self.hooks,
            "notes": self.notes,
        }


def _global_record() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ml-integrity" / "install-global.json"


def _record_path(git: Git | None, scope: str) -> Path:
    if scope == "global":
        return _global_record()
    assert git is not None
    return git.common_dir / "ml-integrity" / "install.json"


def _config_values(git: Git, key: str, scope: str) -> list[str]:
    out = git.run(["config", f"--{scope}", "-z", "--get-all", key], check=False)
    return [v.decode("utf-8", "surrogateescape") for v in out.stdout.split(b"\0") if v]


def _load_record(path: Path) -> dict[str, object] | None:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"the install record is unreadable: {exc}",
            path=path,
            hint="fix or remove the file, then run the command again",
        ) from exc
    if not isinstance(doc, dict):
        raise ConfigError("the install record is not a JSON object", path=path)
    return doc


def install(git: Git, *, scope: str = "local", strict: bool | None = None) -> InstallReport:
    """Configure the filter proxy, the transfer agent and the hooks (idempotent)."""
    from ml_integrity.git.lfs import require_git_lfs

    require_git_lfs()
    record_path = _record_path(git, scope)
    record = _load_record(record_path) or {
        "version": RECORD_VERSION,
        "scope": scope,
        "config": {},
        "hooks": {},
    }
    saved_config: dict[str, list[str]] = record["config"]  # type: ignore[assignment]
    report = InstallReport(scope, record_path)

    wanted = desired_config()
    xet = xet_overrides(git)
    wanted.update(xet)
    for key, value in _LFS_FILTER_DEFAULTS.items():
        # git-lfs's own filter settings, only where git-lfs has not set them anywhere
        if git.config_get(key) is None:
            wanted[key] = value
    if strict is not None:
        wanted["ml-integrity.strict"] = "true" if strict else "false"
    for key, value in wanted.items():
        if key not in saved_config:
            saved_config[key] = _config_values(git, key, scope)
        current = _config_values(git, key, scope)
        if current != [value]:
            # --replace-all keeps the key where it was in the file
            git.run(["config", f"--{scope}", "--replace-all", key, value])
        report.config[key] = value

    hooks_dir = _global_hooks_dir(git, record) if scope == "global" else git.git_path("hooks")
    record["hooks_dir"] = str(hooks_dir)
    saved_hooks: dict[str, str] = record["hooks"]  # type: ignore[assignment]
    report.hooks = install_hooks(hooks_dir, saved_hooks)
    report.hooks_dir = hooks_dir
    write_atomic(record_path, json.dumps(record, indent=2, sort_keys=True).encode() + b"\n")
    if xet:
        hosts = ", ".join(k[4 : -len(".standalonetransferagent")] for k in xet)
        report.notes.append(
            f"git-xet is configured: the ml-integrity transfer agent stays out of {hosts} so "
            "that the server can choose Xet; downloads from there are checked by the filter "
            "(path and content) and by `ml-integrity pull`, not refused before they start"
        )
    if scope == "global":
        report.notes.append(
            "`git lfs install` now says that filter.lfs.process is not git-lfs's own and exits 2 "
            "without changing anything: that is expected. Never run `git lfs install --force` "
            "(it removes the verification); if someone did, run `ml-integrity install --global` "
            "again"
        )
    return report


def _global_hooks_dir(git: Git, record: dict[str, object]) -> Path:
    """Hooks for new clones: in ``init.templateDir`` (ours when none was set)."""
    current = git.config_get("init.templateDir", scope="global")
    saved: dict[str, list[str]] = record["config"]  # type: ignore[assignment]
    if current:
        base = Path(current).expanduser()
        if "init.templatedir" not in saved:
            saved["init.templatedir"] = [current]
    else:
        base = _global_record().parent / "git-template"
        if "init.templatedir" not in saved:
            saved["init.templatedir"] = []
        git.config_set("init.templateDir", str(base), scope="global")
    return base / "hooks"


def install_hooks(hooks_dir: Path, saved: dict[str, str]) -> dict[str, str]:
    """Write our hooks into ``hooks_dir``; keep any other hook as ``<hook>.pre-ml-integrity``."""
    hooks_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in HOOKS:
        path = hooks_dir / name
        previous = hooks_dir / (name + PREVIOUS_SUFFIX)
        if path.exists() and not is_ours(path):
            if previous.exists():
                raise UsageError(
                    f"cannot keep the existing {name} hook: {previous.name} already exists",
                    path=previous,
                    hint="merge or remove one of the two hooks, then run install again",
                )
            os.replace(path, previous)
            saved[name] = "moved"
            out[name] = "chained"
        elif path.exists():
            out[name] = "updated"
            saved.setdefault(name, "moved" if previous.exists() else "absent")
        else:
            saved.setdefault(name, "absent")
            out[name] = "installed"
        write_atomic(path, hook_text(name).encode())
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | stat.S_IRUSR)
    return out


def uninstall(git: Git, *, scope: str = "local") -> InstallReport:
    """Undo :func:`install`: config values and hooks as they were before."""
    record_path = _record_path(git, scope)
    record = _load_record(record_path)
    report = InstallReport(scope, record_path)
    if record is None:
        report.notes.append("ml-integrity was not installed here: nothing to undo")
        return report
    saved_config: dict[str, list[str]] = record.get("config", {})  # type: ignore[assignment]
    for key, values in saved_config.items():
        if not values:
            git.config_unset(key, scope=scope)
            continue
        git.run(["config", f"--{scope}", "--replace-all", key, values[0]])
        for value in values[1:]:
            git.run(["config", f"--{scope}", "--add", key, value])
        report.config[key] = values[0] if values else "(unset)"
    hooks_dir = Path(str(record.get("hooks_dir", "")))
    saved_hooks: dict[str, str] = record.get("hooks", {})  # type: ignore[assignment]
    for name, state in saved_hooks.items():
        path = hooks_dir / name
        previous = hooks_dir / (name + PREVIOUS_SUFFIX)
        if path.exists() and not is_ours(path):
            report.notes.append(f"{path} was changed by someone else: left as it is")
            continue
        if state == "moved" and previous.exists():
            os.replace(previous, path)
            report.hooks[name] = "restored"
        else:
            if path.exists():
                path.unlink()
            report.hooks[name] = "removed"
    report.hooks_dir = hooks_dir
    record_path.unlink()
    if scope == "local":
        shutil.rmtree(record_path.parent / "cache", ignore_errors=True)
        _drop_empty(record_path.parent)
    return report


def _drop_empty(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:
        pass
