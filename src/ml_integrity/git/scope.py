"""Which paths of a repository its signed manifest covers, and which it refuses.

The manifest lists every tracked path except the exclusions, which follow
the OMS convention (as ``model_signing`` has them: top-level ``.git*`` files
and the ``.github/`` folder), plus the manifest and the signature bundles
themselves (``.ml-integrity/manifest.json``, ``.ml-integrity/*.sig``), plus
the exact paths (or folders) a caller's rules exclude. Exclusions are written
into the signed statement (``ignore_paths``), so a verifier knows what was
left out on purpose.

Symbolic links are refused unless the rules allow them (then they are recorded
as links: the digest of the link's target text). Submodules are refused
unless the rules name them (then the superproject's manifest pins their
commit, and their own tree is checked against their own signatures with the
same trust). The rules come from git config (:func:`rules_from_config`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_RULES",
    "MANIFEST_PATH",
    "META_DIR",
    "TreeRules",
    "is_bundle_path",
    "rules_from_config",
]

META_DIR = ".ml-integrity"
MANIFEST_PATH = f"{META_DIR}/manifest.json"


def is_bundle_path(path: str) -> bool:
    """``.ml-integrity/NAME.sig`` (directly in the folder): a signature bundle."""
    return path.startswith(META_DIR + "/") and path.endswith(".sig") and path.count("/") == 1


@dataclass(frozen=True)
class TreeRules:
    """What a repository manifest leaves out, and what it may contain."""

    exclude: tuple[str, ...] = ()
    """Exact relative paths; a folder covers everything under it."""
    allow_symlinks: bool = False
    submodules: tuple[str, ...] = ()
    """Submodule paths that may be part of the tree."""

    def excluded(self, path: str, signed_ignores: Iterable[str] = ()) -> bool:
        """Is ``path`` (NFC, repository-relative) outside the manifest?"""
        if path[:1] == ".":
            if "/" not in path:
                if path.startswith(".git"):
                    return True
            elif path.startswith(".github/") or path == MANIFEST_PATH or is_bundle_path(path):
                return True
        extra = (*self.exclude, *signed_ignores)
        return bool(extra) and _under_any(path, extra)

    def matcher(self, signed_ignores: Iterable[str] = ()) -> Callable[[str], bool]:
        """:meth:`excluded` for many paths (the exclusions compiled once)."""
        exact = frozenset(e.rstrip("/") for e in (*self.exclude, *signed_ignores))
        if not exact:
            return self.excluded

        def excluded(path: str) -> bool:
            if self.excluded(path):
                return True
            if path in exact:
                return True
            i = path.find("/")
            while i != -1:
                if path[:i] in exact:
                    return True
                i = path.find("/", i + 1)
            return False

        return excluded


def _under_any(path: str, roots: Iterable[str]) -> bool:
    for e in roots:
        e = e.rstrip("/")
        if path == e or path.startswith(e + "/"):
            return True
    return False


DEFAULT_RULES = TreeRules()

SYMLINKS_SETTING = "ml-integrity.allowsymlinks"
SUBMODULE_SETTING = "ml-integrity.submodule"


def rules_from_config(values: Mapping[str, Sequence[str]]) -> TreeRules:
    """The rules of git config (outside the repository, like trust):
    ``ml-integrity.allowSymlinks`` (bool) and ``ml-integrity.submodule`` (a path;
    repeatable) — the submodules that are checked, recursively, with the same trust."""
    links = [v.strip().lower() for v in values.get(SYMLINKS_SETTING, ())]
    subs = tuple(v.strip().strip("/") for v in values.get(SUBMODULE_SETTING, ()) if v.strip())
    allow = bool(links) and links[-1] in ("true", "yes", "on", "1")
    if not allow and not subs:
        return DEFAULT_RULES
    return TreeRules(allow_symlinks=allow, submodules=subs)
