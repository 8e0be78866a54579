"""The hooks under the real pre-commit framework: `git commit` refused, then accepted.

The consumer repositories reference this project by local path at a commit
(``hooks_repo``); pre-commit builds the hooks' virtualenv once per session.
Trust for ml-integrity-signed comes from the consumer's git config.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.git.hooks.conftest import HOOK_IDS, HooksRepo
from tests.git.hooks.support import (
    EVIL_PICKLE,
    PLAIN_PICKLE,
    SAFE,
    Proc,
    git,
    lfs_repo,
    make_keys,
    mi,
    run,
    write,
)


def _consumer(
    tmp_path: Path,
    hooks: HooksRepo,
    hook_ids: tuple[str, ...] = HOOK_IDS,
    args: dict[str, list[str]] | None = None,
) -> tuple[Path, Path]:
    """An LFS repository with the hooks installed; returns it and the signing key."""
    repo = lfs_repo(tmp_path / "consumer")
    keys = make_keys(tmp_path / "keys")
    git("config", "ml-integrity.publicKey", keys.pub, cwd=repo)
    (repo / ".pre-commit-config.yaml").write_text(hooks.config(*hook_ids, args=args))
    run([sys.executable, "-m", "pre_commit", "install"], repo, hooks.env)
    git("add", ".pre-commit-config.yaml", cwd=repo)
    first = commit(repo, hooks, "pre-commit config")  # no LFS files: every hook passes
    assert first.returncode == 0, first.output
    return repo, keys.key


def commit(repo: Path, hooks: HooksRepo, message: str, *args: str) -> Proc:
    return git("commit", "-m", message, *args, cwd=repo, env=hooks.env, check=False)


def hook_lines(proc: Proc) -> dict[str, str]:
    """pre-commit's summary: hook name -> Passed / Failed / Skipped."""
    out = {}
    for line in proc.output.splitlines():
        for state in ("Passed", "Failed", "Skipped"):
            if line.startswith("ml-integrity") and line.endswith(state):
                out[line.split(".")[0].strip()] = state
    return out


def test_a_staged_pickle_is_refused_then_the_fix_is_accepted(
    tmp_path: Path, hooks_repo: HooksRepo
) -> None:
    repo, key = _consumer(tmp_path, hooks_repo)
    write(repo, {"model.pt": EVIL_PICKLE})
    git("add", "model.pt", cwd=repo)
    assert mi("sign-repo", "--key", key, cwd=repo).returncode == 0  # signed, but a pickle
    refused = commit(repo, hooks_repo, "add a checkpoint")
    assert refused.returncode == 1, refused.output
    states = hook_lines(refused)
    assert states["ml-integrity scan (staged content)"] == "Failed", refused.output
    assert states["ml-integrity manifest matches the staged files"] == "Passed"
    assert states["ml-integrity staged files are signed"] == "Passed"
    assert "model.pt: UNSAFE: pickle imports posix.system" in refused.output
    assert "hint: do not load this file" in refused.output
    assert git("rev-list", "--count", "HEAD", cwd=repo).stdout.strip() == "2"  # not committed
    # the fix: data instead of a pickle, signed again
    write(repo, {"model.pt": SAFE})
    git("add", "model.pt", cwd=repo)
    assert mi("sign-repo", "--key", key, cwd=repo).returncode == 0
    accepted = commit(repo, hooks_repo, "add a checkpoint")
    assert accepted.returncode == 0, accepted.output
    assert set(hook_lines(accepted).values()) == {"Passed"}


def test_stale_manifest_and_unsigned_file_are_refused_then_fixed(
    tmp_path: Path, hooks_repo: HooksRepo
) -> None:
    repo, key = _consumer(tmp_path, hooks_repo)
    write(repo, {"weights.bin": SAFE})
    git("add", "weights.bin", cwd=repo)
    refused = commit(repo, hooks_repo, "weights")
    assert refused.returncode == 1, refused.output
    states = hook_lines(refused)
    assert states["ml-integrity manifest matches the staged files"] == "Failed"
    assert states["ml-integrity staged files are signed"] == "Failed"
    assert "manifest.json is not staged" in refused.output
    # the hint names the hook's own interpreter: `ml-integrity` is not on the user's PATH
    assert re.search(r"run `\S+ -m ml_integrity manifest --staged --write`", refused.output)
    assert "2 staged path(s) are not covered by a valid signature" in refused.output  # + config
    # first fix: the manifest; the signature is still missing
    assert mi("manifest", "--staged", "--write", cwd=repo).returncode == 0
    unsigned = commit(repo, hooks_repo, "weights")
    assert unsigned.returncode == 1, unsigned.output
    states = hook_lines(unsigned)
    assert states["ml-integrity manifest matches the staged files"] == "Passed"
    assert states["ml-integrity staged files are signed"] == "Failed"
    assert re.search(r"`\S+ -m ml_integrity sign-repo --key KEY`", unsigned.output)
    # second fix: sign
    assert mi("sign-repo", "--key", key, cwd=repo).returncode == 0
    accepted = commit(repo, hooks_repo, "weights")
    assert accepted.returncode == 0, accepted.output
    # `git commit -a` checks the temporary index git builds (GIT_INDEX_FILE)
    write(repo, {"weights.bin": b"retrained, not re-signed\n"})
    stale = commit(repo, hooks_repo, "retrained", "-a")
    assert stale.returncode == 1, stale.output
    assert "changed: weights.bin" in stale.output
    git("add", "weights.bin", cwd=repo)
    assert mi("sign-repo", "--key", key, cwd=repo).returncode == 0
    assert commit(repo, hooks_repo, "retrained", "-a").returncode == 0


def test_the_one_process_hook_with_args(tmp_path: Path, hooks_repo: HooksRepo) -> None:
    """``ml-integrity``: the three checks at once; args from the config reach it."""
    repo, key = _consumer(
        tmp_path, hooks_repo, ("ml-integrity",), {"ml-integrity": ["--pickle", "allowlist", "--"]}
    )
    write(repo, {"model.pt": EVIL_PICKLE, "state.pkl": PLAIN_PICKLE})
    git("add", ".", cwd=repo)
    refused = commit(repo, hooks_repo, "checkpoints")
    assert refused.returncode == 1, refused.output
    assert hook_lines(refused) == {
        "ml-integrity (scan, manifest, signatures of the staged content)": "Failed"
    }
    assert "model.pt: UNSAFE: pickle imports posix.system" in refused.output
    assert "state.pkl: UNSAFE" not in refused.output  # allowlisted (--pickle allowlist)
    assert "manifest.json is not staged" in refused.output
    assert "not covered by a valid signature" in refused.output
    write(repo, {"model.pt": SAFE})
    git("add", "model.pt", cwd=repo)
    assert mi("sign-repo", "--key", key, cwd=repo).returncode == 0
    accepted = commit(repo, hooks_repo, "checkpoints")
    assert accepted.returncode == 0, accepted.output


def test_try_repo(tmp_path: Path, hooks_repo: HooksRepo) -> None:
    repo = lfs_repo(tmp_path / "consumer")
    write(repo, {"model.pt": EVIL_PICKLE, "notes.txt": b"harmless\n"})
    git("add", ".", cwd=repo)
    try_repo: list[str | Path] = [sys.executable, "-m", "pre_commit", "try-repo", hooks_repo.path]
    tried = run(
        [*try_repo, "ml-integrity-scan", "--ref", hooks_repo.rev],
        repo,
        hooks_repo.env,
        check=False,
    )
    assert tried.returncode == 1, tried.output
    assert "model.pt: UNSAFE" in tried.output and "notes.txt" not in tried.output.split("UNSAFE")[1]


@pytest.mark.parametrize("hook_id", ["ml-integrity", *HOOK_IDS])
def test_files_named_like_options_are_files(
    tmp_path: Path, hooks_repo: HooksRepo, hook_id: str
) -> None:
    """A staged file named ``--skip=scan`` or ``--allow-sha256=<digest>`` never becomes an
    option (file names follow ``--``), under ``git commit`` and ``pre-commit run --all-files``."""
    import hashlib

    repo, _key = _consumer(tmp_path, hooks_repo, (hook_id,))
    digest = hashlib.sha256(EVIL_PICKLE).hexdigest()
    write(
        repo,
        {
            "--skip=scan": EVIL_PICKLE,
            f"--allow-sha256={digest}": EVIL_PICKLE,
            "--skip=signed": b"x\n",
            "--pickle=allowlist": b"y\n",
            "model.pt": EVIL_PICKLE,
        },
    )
    git("add", "--", ".", cwd=repo)
    for attempt in (
        commit(repo, hooks_repo, "options as file names"),
        run(
            [sys.executable, "-m", "pre_commit", "run", "--all-files"],
            repo,
            hooks_repo.env,
            check=False,
            inherit=True,
        ),
    ):
        assert attempt.returncode == 1, attempt.output  # refused, never a usage error
        assert "unrecognized arguments" not in attempt.output
        assert "error: argument" not in attempt.output
        if hook_id in ("ml-integrity", "ml-integrity-scan"):
            for name in ("--skip=scan", f"--allow-sha256={digest}", "model.pt"):
                assert f"{name}: UNSAFE: pickle imports posix.system" in attempt.output, name
        else:  # no file names are passed: the manifest / signatures are refused
            assert "not" in attempt.output
    assert git("rev-list", "--count", "HEAD", cwd=repo).stdout.strip() == "2"  # not committed


def test_hook_args_without_the_separator_are_refused(tmp_path: Path, hooks_repo: HooksRepo) -> None:
    """Own `args:` that do not end with "--" would put file names among the options."""
    repo, _key = _consumer(tmp_path, hooks_repo, ("ml-integrity",))
    config = hooks_repo.config("ml-integrity", args={"ml-integrity": ["--skip", "signed"]})
    (repo / ".pre-commit-config.yaml").write_text(config)
    write(repo, {"notes.txt": b"fine\n"})
    git("add", "notes.txt", ".pre-commit-config.yaml", cwd=repo)
    refused = commit(repo, hooks_repo, "notes")
    assert refused.returncode == 1, refused.output
    assert "--only-paths needs the file names after `--`" in refused.output
