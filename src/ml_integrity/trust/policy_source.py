"""Where a policy comes from: a file given from outside, git config, or the repository.

In order (:func:`resolve`): the command line (or the Action's input), then
the user's git config ``ml-integrity.policy``, then the in-repository
``.ml-integrity/policy.yaml``, which is honoured only as committed at a
trusted base revision, never as the change under verification has it: a
change cannot bring its own signer. The repository is read through
:class:`RepositoryReader`, which the entry point's git adapter satisfies
(``ml_integrity.git.runner.Git``): this module knows nothing of git.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal, Protocol

from ml_integrity.errors import ConfigError
from ml_integrity.trust.policy import (
    GIT_CONFIG_BASE,
    GIT_CONFIG_POLICY,
    IN_REPO_POLICY,
    Policy,
    PolicySource,
)
from ml_integrity.trust.policy_yaml import Reader, parse_policy

__all__ = ["RepositoryReader", "Resolution", "load_policy", "resolve", "trust_config"]


def _file_reader(base: Path) -> Reader:
    def read(rel: str) -> bytes:
        p = Path(rel).expanduser()
        p = p if p.is_absolute() else base / p
        try:
            return p.read_bytes()
        except FileNotFoundError:
            raise ConfigError("file not found", path=p) from None
        except IsADirectoryError:
            raise ConfigError("is a directory, expected a file", path=p) from None

    return read


def load_policy(path: Path, kind: Literal["command line", "git config", "action input"]) -> Policy:
    """Read and validate a policy file given from outside the repository."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            "policy file not found",
            path=path,
            hint="check the path (ml-integrity policy check FILE validates a policy)",
        ) from None
    except IsADirectoryError:
        raise ConfigError("policy is a directory, expected a YAML file", path=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the policy: {exc.strerror}", path=path) from None
    return parse_policy(
        text,
        source=PolicySource(kind, str(path)),
        label=str(path),
        reader=_file_reader(path.parent),
    )


class RepositoryReader(Protocol):
    """What policy resolution reads from the repository.

    The entry point passes its git adapter (``ml_integrity.git.runner.Git``
    satisfies this), so trust never imports git.
    """

    @property
    def root(self) -> Path: ...

    def config_matching(self, regexp: str) -> dict[str, str]:
        """Every git config key matching ``regexp`` (lower-case) -> its value."""
        ...

    def rev_parse(self, rev: str) -> str | None:
        """The object id ``rev`` names, or None."""
        ...

    def blob_at(self, rev: str, path: str) -> bytes | None:
        """The content of ``path`` in commit ``rev``, or None if it has no such file."""
        ...


def trust_config(repo: RepositoryReader) -> dict[str, str]:
    """The ``ml-integrity.*`` git config (lower-case keys), in one git run."""
    return repo.config_matching(r"^ml-integrity\.")


def _in_repo_reader(repo: RepositoryReader, rev: str, folder: str) -> Reader:
    def read(rel: str) -> bytes:
        raw = PurePosixPath(folder) / rel
        if PurePosixPath(rel).is_absolute() or ".." in PurePosixPath(rel).parts:
            raise ConfigError(
                f"an in-repository policy may only name files inside the repository: {rel!r}"
            )
        data = repo.blob_at(rev, raw.as_posix())
        if data is None:
            raise ConfigError(
                f"{raw} is not in the trusted base revision {rev[:12]}",
                hint="files a policy names are read at the same trusted base revision",
            )
        return data

    return read


@dataclass(frozen=True)
class Resolution:
    """The policy that applies, and notes for the verdict."""

    policy: Policy | None
    notes: tuple[str, ...] = ()


def resolve(
    *,
    explicit: Path | None,
    explicit_kind: Literal["command line", "action input"] = "command line",
    repo: RepositoryReader | None,
    base: str | None = None,
    config: Mapping[str, str] | None = None,
) -> Resolution:
    """Find the policy by precedence: explicit > git config > in-repo at a trusted base.

    The in-repository ``.ml-integrity/policy.yaml`` is read at the trusted
    base revision (``base``, else git config ``ml-integrity.policyBase``), as
    are the keys and certificates it names; the working tree's copy is never
    used for trust. Without a base it is refused (ConfigError), so that a
    change can never trust the signer it brings along. ``config`` is the
    repository's ``ml-integrity.*`` git config when the caller has read it.
    """
    if explicit is not None:
        policy = load_policy(explicit, explicit_kind)
        return Resolution(policy, _inside_note(explicit, repo, explicit_kind))
    if repo is None:
        return Resolution(None)
    config = trust_config(repo) if config is None else config
    configured = config.get(GIT_CONFIG_POLICY)
    if configured:
        p = Path(configured).expanduser()
        if not p.is_absolute():
            p = repo.root / p
        return Resolution(load_policy(p, "git config"), _inside_note(p, repo, "git config"))
    in_tree = (repo.root / IN_REPO_POLICY).is_file()
    base = base or config.get(GIT_CONFIG_BASE) or None
    if base is None:
        if in_tree:
            raise ConfigError(
                "the repository has an in-repository policy, but it is only honoured as "
                "committed at a trusted base revision, and none was given",
                path=repo.root / IN_REPO_POLICY,
                hint="pass --policy-base REV (for a pull request: its base commit), or set "
                "'git config ml-integrity.policyBase REV'; or give a policy from outside the "
                "repository with --policy FILE or 'git config ml-integrity.policy FILE'",
            )
        return Resolution(None)
    commit = repo.rev_parse(f"{base}^{{commit}}")
    if commit is None:
        raise ConfigError(
            f"trusted base revision {base!r} does not exist in this repository",
            path=repo.root,
            hint="fetch it first (git fetch), or name another commit",
        )
    text = repo.blob_at(commit, IN_REPO_POLICY)
    if text is None and not in_tree:
        return Resolution(None)
    if text is None:
        raise ConfigError(
            f"there is no {IN_REPO_POLICY} at the trusted base {commit[:12]} "
            "(this change introduces it, so it cannot be trusted yet)",
            path=repo.root / IN_REPO_POLICY,
            hint="give a policy from outside the repository (--policy FILE), or a base "
            "revision that has the policy",
        )
    label = f"{IN_REPO_POLICY}@{commit[:12]}"
    policy = parse_policy(
        text,
        source=PolicySource("in-repo", IN_REPO_POLICY, commit),
        label=label,
        reader=_in_repo_reader(repo, commit, str(PurePosixPath(IN_REPO_POLICY).parent)),
    )
    notes: list[str] = []
    if in_tree and (repo.root / IN_REPO_POLICY).read_bytes() != text:
        notes.append(
            f"{IN_REPO_POLICY} differs from the trusted base {commit[:12]}; the changes are "
            "not honoured until they are part of a trusted base"
        )
    elif not in_tree:
        notes.append(f"{IN_REPO_POLICY} was removed in the work tree; the base's copy applies")
    return Resolution(policy, tuple(notes))


def _inside_note(path: Path, repo: RepositoryReader | None, kind: str) -> tuple[str, ...]:
    """A warning when a policy given from outside lives in the work tree it protects."""
    if repo is None:
        return ()
    try:
        Path(path).resolve().relative_to(repo.root.resolve())
    except ValueError:
        return ()
    return (
        f"the policy given by {kind} ({path}) is inside the repository being verified, where "
        "a change under review can edit it; keep it outside, or use the in-repository policy "
        "with --policy-base",
    )
