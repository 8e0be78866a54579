"""``ml-integrity clone``: ``git clone`` with verification from the first checkout."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ml_integrity.cli._common import add_command, add_json_flag, print_json

ORDER = 55

_EPILOG = """\
The new repository is configured before anything is checked out (git clone
-c ...): the filter wrapper, the LFS transfer agent, the hooks, and the
trust you give. Every LFS file is verified against the signed manifest of
the commit checked out; refused files stay LFS pointers and the command fails.
With --git-arg=--recurse-submodules the submodules are cloned the same way
(through the filter, with the same trust and hooks), and each is configured
like the clone; the superproject accepts a submodule only when git config
ml-integrity.submodule names it.

examples:
  ml-integrity clone https://example.com/org/models.git --key release.pub
  ml-integrity clone ../models.git work --key release.pub --strict
  ml-integrity clone URL DIR --key release.pub -b v2 --git-arg=--depth=1
  ml-integrity clone URL --policy ~/trust/models.yaml   # k-of-n, rollback rules

Without trust (--key, --cert-chain, --policy or git config
ml-integrity.publicKey / certChain / policy, e.g. in the global config)
nothing is cloned (exit 2).

exit codes: 0 cloned and verified; 1 something was refused; 2 usage or no trust;
3 git failed.
"""


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "clone",
        help="git clone with verification of every LFS file",
        description="Clone a repository with ml-integrity installed from the start.",
        epilog=_EPILOG,
    )
    parser.add_argument("url", metavar="URL")
    parser.add_argument("directory", nargs="?", type=Path, metavar="DIR")
    parser.add_argument("--key", type=Path, metavar="PUB", help="trusted public key (PEM)")
    parser.add_argument(
        "--cert-chain", type=Path, metavar="CA", help="trusted root certificate(s) (PEM)"
    )
    parser.add_argument(
        "--policy",
        type=Path,
        metavar="FILE",
        help="a trust policy (YAML, outside the clone) for every checkout: its signers, "
        "rollback and multi-signer rules (sets ml-integrity.policy)",
    )
    parser.add_argument(
        "--decryption-key",
        type=Path,
        metavar="KEY",
        help="the repository's LFS content is encrypted (git config ml-integrity.recipient): "
        "decrypt it with this X25519 private key or AES-256 key (sets "
        "ml-integrity.decryptionKey; downloads then go through the transfer agent)",
    )
    parser.add_argument("--strict", action="store_true", help="abort on any refused file")
    parser.add_argument("-b", "--branch", metavar="BRANCH", help="check out BRANCH (git clone -b)")
    parser.add_argument(
        "--git-arg",
        dest="git_args",
        action="append",
        default=[],
        metavar="ARG",
        help="one more argument for git clone, e.g. --git-arg=--depth=1; repeatable",
    )
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def _usual_post_checkout(git: Any) -> None:
    """The clone-time post-checkout hook (copied from the template) becomes the usual one."""
    from ml_integrity.core.fileio import write_atomic
    from ml_integrity.git import hooks

    path = git.git_dir / "hooks" / "post-checkout"
    try:
        if hooks.CLONE_HOOK_ENV not in path.read_text(errors="replace"):
            return
    except OSError:
        return
    write_atomic(path, hooks.hook_text("post-checkout").encode(), mode=0o755, durable=False)


def run(args: argparse.Namespace) -> int:
    import json
    import tempfile

    from ml_integrity.core.fileio import write_atomic
    from ml_integrity.errors import Error, ToolError, UsageError
    from ml_integrity.git import hooks
    from ml_integrity.git.lfs import require_git_lfs
    from ml_integrity.git.runner import Git, clean_env, run_script
    from ml_integrity.trust.resolver import TrustRequest, resolve_trust

    require_git_lfs()
    # the trust the new clone's git config will hold (the filter and hooks read it there)
    trust = resolve_trust(
        TrustRequest(
            keys=(str(args.key),) if args.key is not None else (),
            cert_chain=(str(args.cert_chain),) if args.cert_chain is not None else (),
            policy=str(args.policy) if args.policy is not None else None,
        ),
        "clone",
    )
    probe = Git(Path.cwd())
    # the new clone inherits the global and system config, not the local one of the cwd
    if not trust.git_config() and not any(
        probe.config_get(k, scope=scope)
        for k in ("ml-integrity.publicKey", "ml-integrity.certChain", "ml-integrity.policy")
        for scope in ("global", "system")
    ):
        raise UsageError(
            "no trust configured: the clone could verify nothing, so nothing was cloned",
            hint="give the signer's public key (--key signer.pub) or a trusted root "
            "certificate (--cert-chain root-ca.pem), or set it once for every repository: "
            "git config --global ml-integrity.publicKey /path/to/signer.pub. For content "
            "signed keylessly (a Sigstore identity) or by several signers, give a policy "
            "that names them (--policy FILE: docs/trust.md)",
        )
    directory = args.directory or Path(
        args.url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].removesuffix(".git")
    )
    if directory.exists() and any(directory.iterdir()):
        raise UsageError("destination exists and is not empty", path=directory)
    if args.policy is not None and args.policy.resolve().is_relative_to(directory.resolve()):
        raise UsageError(
            "the policy would lie inside the clone, where a checkout can rewrite it",
            path=args.policy,
            hint="keep the policy outside the repository",
        )
    # The transfer agent is configured after the clone: during the clone git-lfs
    # downloads only what the filter has just verified (and checks every
    # download's sha256 itself), so its own parallel transfers stay in use.
    later = hooks.desired_config()
    config = {"filter.lfs.process": later.pop("filter.lfs.process")}
    later.update(hooks.xet_overrides(probe))
    config.update(
        {k: v for k, v in hooks._LFS_FILTER_DEFAULTS.items() if probe.config_get(k) is None}
    )
    config.update(trust.git_config())
    if args.strict:
        config["ml-integrity.strict"] = "true"
    if args.decryption_key is not None:
        if not args.decryption_key.is_file():
            raise UsageError("decryption key not found", path=args.decryption_key)
        # encrypted objects are decrypted by the transfer agent: it runs during the clone
        config["ml-integrity.decryptionKey"] = str(args.decryption_key.resolve())
        config.update(later)
        later = {}
    git_args = list(args.git_args)
    if args.branch:
        git_args += ["--branch", args.branch]
    with (
        tempfile.TemporaryDirectory(prefix="ml-integrity-template-") as template,
        tempfile.TemporaryDirectory(prefix="ml-integrity-template-") as sub_template,
    ):
        hooks.install_hooks(Path(template) / "hooks", {})
        hooks.install_hooks(Path(sub_template) / "hooks", {})
        # the checkout's post-checkout hook runs git-lfs's hook and writes down its
        # arguments; ml-integrity's check of it is made below, in this process
        write_atomic(
            Path(template) / "hooks" / "post-checkout",
            hooks.clone_hook_text().encode(),
            mode=0o755,
            durable=False,
        )
        hook_args_file = Path(template) / "post-checkout.args"
        # `git -c` reaches every git process of the clone, submodule clones included
        # (--recurse-submodules): they check out through the filter, with this trust and
        # the usual hooks (init.templateDir; --template is the superproject's).
        # `git clone -c` writes the new repository's own config.
        argv = ["git"]
        for key, value in {**config, "init.templateDir": sub_template}.items():
            argv += ["-c", f"{key}={value}"]
        argv += ["clone", f"--template={template}"]
        for key, value in config.items():
            argv += ["-c", f"{key}={value}"]
        argv += [*git_args, "--", args.url, str(directory)]
        if args.json:
            sys.stdout.flush()  # git writes on stderr; stdout carries the one JSON document
        env = clean_env(extra={hooks.CLONE_HOOK_ENV: str(hook_args_file)})
        rc = run_script(argv, cwd=Path.cwd(), env=env)
        hook_args = hook_args_file.read_text().splitlines() if hook_args_file.exists() else None
    if not (directory / ".git").exists():
        raise ToolError(f"git clone failed (exit {rc})", hint="see git's message above")
    git = Git(directory.resolve())
    _usual_post_checkout(git)
    if hook_args is not None:  # git ran the post-checkout hook: its check, here
        from ml_integrity.cli.hook import check_after_clone

        own = check_after_clone(git, hook_args)  # whatever git's exit: it puts right
        rc = rc or own
    for key, value in later.items():
        git.config_set(key, value)
    _configure_submodules(git, {**config, **later})
    record = {
        "version": hooks.RECORD_VERSION,
        "scope": "local",
        "config": {key: [] for key in [*config, *later]},
        "hooks": dict.fromkeys(hooks.HOOKS, "absent"),
        "hooks_dir": str(git.git_path("hooks")),
    }
    write_atomic(
        git.common_dir / "ml-integrity" / "install.json",
        json.dumps(record, indent=2, sort_keys=True).encode() + b"\n",
    )
    if rc != 0:
        # git clone exits non-zero when post-checkout refused files (or strict aborted),
        # or when git-lfs could not download an object (operational: exit 3)
        from ml_integrity.git.lfs_crypto import refused_downloads
        from ml_integrity.git.repository import Repository
        from ml_integrity.git.verification import check_tree

        refused: dict[str, str] = {}
        try:
            with Repository(git) as repo:
                verdict = check_tree(repo, "HEAD", worktree=False)
                if verdict.signed and verdict.ok:  # the transfer agent's refusals: exit 1
                    refused = refused_downloads(repo, verdict.pointers)
        except Error:
            verdict = None
        for path, reason in sorted(refused.items()):
            print(f"ml-integrity: REFUSED {path}: {reason}; kept the LFS pointer", file=sys.stderr)
        if verdict is not None and verdict.signed and verdict.ok and not refused:
            raise ToolError(
                f"git clone exited {rc}: every file of HEAD is signed, but not every one could "
                "be checked out",
                path=directory,
                hint="see git-lfs's message above (an object missing on the server, a network "
                "failure); then run `ml-integrity pull` in the clone",
            )
        message = f"clone into {directory} is not fully verified (git exited {rc})"
        if args.json:
            doc = verdict.to_json() if verdict is not None else {}
            print_json({**doc, "ok": False, "directory": str(directory), "message": message})
        print(f"ml-integrity: {message}; see the lines above", file=sys.stderr)
        return 1
    if args.json:
        print_json({"ok": True, "directory": str(directory), "git_exit": rc})
        return 0
    print(f"ml-integrity: cloned into {directory}: every LFS file verified")
    return 0


def _configure_submodules(git: Any, config: dict[str, str]) -> None:
    """Give every checked-out submodule the clone's configuration (filter, agent,
    trust), so that its later checkouts and pulls are verified as the clone's are."""
    from ml_integrity.git.runner import Git

    if not (git.root / ".gitmodules").is_file():
        return  # no submodule (and no git run on every clone)
    out = git.run(["submodule", "foreach", "--quiet", "--recursive", "pwd"], check=False)
    if out.returncode != 0:
        return
    for line in out.stdout.decode("utf-8", "replace").splitlines():
        if line.strip():
            sub = Git(Path(line.strip()))
            for key, value in config.items():
                sub.config_set(key, value)
