"""``ml-integrity policy check``: validate a trust policy and explain it in plain words."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ml_integrity.cli._common import add_command, add_json_flag, print_json

ORDER = 45

_EPILOG = """\
examples:
  ml-integrity policy check trust.yaml
  ml-integrity policy check                 # the policy that applies here, by precedence
  ml-integrity policy check --policy-base origin/main --json

A policy (YAML, 'version: 1') names trusted signers (Sigstore identities,
GitHub Actions workflows, public keys, certificate chains), how many of them
must sign (any-of, all-of, k-of-n), denied and allowed digests and signers,
which paths are artifacts and must be signed, the pickle rule and rollback
protection. Reference: docs/trust.md.

Which policy applies: --policy FILE (or the Action's input), else git config
ml-integrity.policy, else the repository's .ml-integrity/policy.yaml as
committed at a trusted base revision (--policy-base REV or git config
ml-integrity.policyBase); the copy in the change under review never counts.

Exit 0 valid; 2 invalid (the message names the file and line).
"""


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "policy",
        help="validate and explain a trust policy",
        description="Work with trust policies (who may sign, what must be signed).",
        epilog=_EPILOG,
    )
    sub = parser.add_subparsers(dest="policy_command", metavar="ACTION", title="actions")
    check = add_command(
        sub,
        "check",
        help="validate a policy and explain it",
        description="Validate a trust policy and explain, in plain words, what it accepts. "
        "Without FILE, the policy that applies to the current repository is shown.",
        epilog=_EPILOG,
    )
    check.add_argument("file", nargs="?", type=Path, metavar="FILE", help="the policy (YAML)")
    check.add_argument(
        "--policy-base",
        metavar="REV",
        help="trusted base revision for the in-repository policy (without FILE)",
    )
    add_json_flag(check)
    check.set_defaults(handler=run_check)
    parser.set_defaults(handler=_usage(parser))


def _usage(parser: argparse.ArgumentParser) -> Any:
    def handler(args: argparse.Namespace) -> int:
        from ml_integrity.errors import UsageError

        raise UsageError("name an action", hint="ml-integrity policy check FILE")

    return handler


def run_check(args: argparse.Namespace) -> int:
    from ml_integrity.cli._trust import discover_git
    from ml_integrity.trust.resolver import TrustRequest, resolve_trust

    request = TrustRequest(
        policy=str(args.file) if args.file is not None else None, policy_base=args.policy_base
    )
    repo = discover_git(Path.cwd()) if args.file is None else None
    trust = resolve_trust(request, "policy", repo=repo)
    policy, notes = trust.policy, list(trust.notes)
    assert policy is not None
    lines = policy.explain()
    if args.json:
        print_json({"ok": True, "policy": policy.to_json(), "explanation": lines, "notes": notes})
    else:
        print("\n".join(lines))
        for note in notes:
            print(f"note: {note}")
        print("The policy is valid.")
    return 0
