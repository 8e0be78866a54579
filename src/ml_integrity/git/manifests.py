"""The repository manifest at commit time: built from the index, written, signed.

:func:`manifest_from_index` turns every staged path into the canonical
manifest (``.ml-integrity/manifest.json``); :func:`update_manifest` writes
and stages it (the pre-commit hook; honours ``GIT_INDEX_FILE``);
:func:`sign_index` signs it as an OMS bundle beside it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ml_integrity.core.fileio import write_atomic
from ml_integrity.errors import Error, IntegrityError
from ml_integrity.git.listing import LINK, SUBMODULE
from ml_integrity.git.repository import INDEX, Repository
from ml_integrity.git.scope import MANIFEST_PATH, META_DIR, TreeRules, is_bundle_path

if TYPE_CHECKING:
    from ml_integrity.core.manifest import Manifest
    from ml_integrity.core.signing import Signer

__all__ = ["manifest_from_index", "sign_index", "update_manifest"]


def manifest_from_index(
    repo: Repository, rules: TreeRules | None = None, *, source: str = INDEX
) -> Manifest:
    """The manifest of every staged path (see :mod:`.scope`), keeping what the old one said.

    LFS files are recorded by their pointer's oid, other blobs by the sha256
    of their content. Format and annotations of an entry carry over from the
    staged manifest when the digest is unchanged (they describe the content),
    and so do the repository binding and the version. A symbolic link or a
    submodule the rules do not allow, and two paths with the same NFC name,
    are refused (IntegrityError naming the path).
    """
    from ml_integrity.core.manifest import Entry, Manifest

    if rules is None:
        rules = repo.rules
    previous = _staged_manifest(repo)
    by_path = previous.by_path() if previous is not None else {}
    entries: list[Entry] = []
    excluded: list[str] = []
    seen: dict[str, str] = {}
    for f in repo.tree_files(source):
        name = f.name
        if rules.excluded(name):
            if not is_bundle_path(name) and name != MANIFEST_PATH:
                excluded.append(name)
            continue
        if name in seen:
            raise IntegrityError(
                f"two staged paths normalise to the same name {name!r}: {seen[name]!r} and "
                f"{f.path!r}",
                path=f.path,
                hint="rename or remove one of them (`git mv` / `git rm --cached`)",
            )
        seen[name] = f.path
        if f.kind == SUBMODULE and name not in rules.submodules:
            raise IntegrityError(
                "a submodule, which the repository manifest does not cover",
                path=f.path,
                hint="name the submodule in the policy to have it checked recursively, or "
                "remove it",
            )
        if f.kind == LINK and not rules.allow_symlinks:
            raise IntegrityError(
                "a symbolic link, which the repository manifest refuses",
                path=f.path,
                hint="commit the file itself instead of a link (or allow links in the policy)",
            )
        prev = by_path.get(name)
        annotations: dict[str, str] = {}
        fmt = None
        if prev is not None and prev.sha256 == f.digest:
            fmt, annotations = prev.format, dict(prev.annotations)
        if f.kind == LINK:
            annotations["link"] = "true"
        elif f.kind == SUBMODULE:
            annotations["submodule"] = f.blob
        entries.append(Entry(name, f.size, f.digest, fmt, annotations))
    return Manifest(
        tuple(entries),
        repository=previous.repository if previous is not None else None,
        version=previous.version if previous is not None else None,
        ignore_paths=tuple(sorted(excluded)),
    )


def _same_content(a: Manifest, b: Manifest) -> bool:
    return [(e.path, e.size, e.sha256) for e in a.entries] == [
        (e.path, e.size, e.sha256) for e in b.entries
    ]


def _staged_manifest(repo: Repository) -> Manifest | None:
    from ml_integrity.core.manifest import Manifest

    old = repo.read_blob(f":{MANIFEST_PATH}")
    if not old:
        return None
    try:
        return Manifest.from_json(old, source=MANIFEST_PATH)
    except Error:
        return None


def update_manifest(repo: Repository) -> bool:
    """Write ``.ml-integrity/manifest.json`` from the index and stage it.

    For the pre-commit hook: honours ``GIT_INDEX_FILE`` (``commit -a`` and
    ``commit PATH`` build a temporary index). Returns True when it changed.
    """
    manifest = manifest_from_index(repo)
    data = manifest.to_json()
    if repo.read_blob(f":{MANIFEST_PATH}") == data:
        return False
    write_atomic(repo.root / MANIFEST_PATH, data)
    repo.git.run(["add", "--", MANIFEST_PATH])
    repo.forget_index()
    index = os.environ.get("GIT_INDEX_FILE", "") if repo.git.keep_index else ""
    real = repo.git.git_dir / "index.lock"
    if os.path.basename(index).startswith("next-index-") and real.is_file():
        # `git commit PATH`: git commits a temporary index and then installs
        # index.lock as the index; stage the manifest there too, or the
        # committed manifest would show as changed afterwards.
        repo.git.run(["add", "--", MANIFEST_PATH], env={"GIT_INDEX_FILE": str(real)})
    return True


def sign_index(
    repo: Repository,
    signer: Signer,
    *,
    name: str = "manifest",
    repository: str | None = None,
    rules: TreeRules | None = None,
) -> tuple[Manifest, Path]:
    """Sign the manifest of the index; write and stage the manifest and the bundle.

    The manifest's version grows by one over the staged manifest's and over
    every version HEAD's valid signatures carry (rollback protection), except
    for a co-signature: when another bundle is staged and the staged manifest
    already lists exactly this content, its version is kept (so that all-of and
    k-of-n signers sign one version). ``repository`` binds it to a repository
    identity (else the previous binding is kept).
    """
    import dataclasses

    from ml_integrity.core import oms

    manifest = manifest_from_index(repo, rules)
    bundle_rel = f"{META_DIR}/{name}.sig"
    staged = _staged_manifest(repo)
    others = [p for p, _ in repo.signature_blobs(INDEX) if p != bundle_rel]
    bound = repository if repository is not None else manifest.repository
    if (
        staged is not None
        and staged.version is not None
        and others
        and _same_content(staged, manifest)
        and bound == staged.repository
    ):
        version = staged.version  # a co-signature of the staged, already signed version
    else:
        versions = [manifest.version or 0]
        if repo.git.rev_parse("HEAD^{tree}") is not None:
            versions += [b.version or 0 for b in repo.verified_digests("HEAD").bundles]
        version = max(versions) + 1
    manifest = dataclasses.replace(manifest, version=version, repository=bound)
    statement = oms.build_statement(
        manifest,
        model_name=repo.root.name,
        ignore_paths=[*manifest.ignore_paths, MANIFEST_PATH, bundle_rel],
    )
    bundle = signer.sign_statement(statement)
    bundle_path = repo.root / bundle_rel
    write_atomic(repo.root / MANIFEST_PATH, manifest.to_json())
    write_atomic(bundle_path, bundle.encode("utf-8"))
    repo.git.run(["add", "--", MANIFEST_PATH, bundle_rel])
    repo.forget_index()
    return manifest, bundle_path
