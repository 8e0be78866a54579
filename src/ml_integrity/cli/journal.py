"""``ml-integrity journal``: verify and show a sealed training journal."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ml_integrity.cli._common import add_command, add_json_flag, print_json
from ml_integrity.cli._options import add_key_trust_options
from ml_integrity.cli._trust import add_verify_options

ORDER = 60

_EPILOG = """\
examples:
  ml-integrity journal verify run.journal --key release.pub --model models/bert
  ml-integrity journal verify run.journal --key release.pub --model models/bert \\
      --dataset data/train --dataset-bundle data/train.sig
  ml-integrity journal verify run.journal --github-repository octo-org/train \\
      --github-workflow train.yml --trusted-root trusted_root.json
  ml-integrity journal show run.journal --json

A journal is written by ml_integrity.data.Journal.seal() at the end of training
(docs/data.md). 'verify' checks, in order: the journal's signature and signer
(the same trust options as 'ml-integrity verify'), its item lists (the sidecar
and Merkle roots), the model folder against the journal's subject (--model),
and each --dataset folder against its --dataset-bundle and the manifest the
journal names. With --dataset, every dataset of the journal must be given.
Exit 0 verified; 1 tampered or untrusted journal, another model, a dataset that
differs or is missing; 2 usage error. 'show' reads the journal without
verifying it.
"""


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "journal",
        help="verify or show a signed training journal",
        description="Verify or show a training journal sealed by ml_integrity.data.Journal.",
        epilog=_EPILOG,
    )
    sub = parser.add_subparsers(dest="journal_command", metavar="ACTION", title="actions")
    verify = add_command(
        sub,
        "verify",
        help="verify a journal's signature, model and datasets",
        description="Verify a training journal: signature and signer, item lists, the model "
        "it names (--model) and the datasets (--dataset with --dataset-bundle).",
        epilog=_EPILOG,
    )
    verify.add_argument("journal", type=Path, metavar="JOURNAL", help="the sealed journal")
    verify.add_argument(
        "--model", type=Path, metavar="DIR", help="the model folder (or file) the journal names"
    )
    verify.add_argument(
        "--dataset",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="a dataset folder the journal names; repeatable, each with --dataset-bundle",
    )
    verify.add_argument(
        "--dataset-bundle",
        action="append",
        default=[],
        type=Path,
        metavar="B",
        help="the signature bundle of the --dataset before it (same order)",
    )
    verify.add_argument(
        "--ignore-path",
        action="append",
        default=[],
        metavar="PATH",
        help="a path of the model folder to leave out, as when it was hashed; repeatable",
    )
    add_key_trust_options(verify, "key-based trust")
    add_verify_options(verify)
    add_json_flag(verify)
    verify.set_defaults(handler=run_verify)
    show = add_command(
        sub,
        "show",
        help="print a journal's datasets, splits, item counts and signers",
        description="Print what a journal records (without verifying its signature).",
    )
    show.add_argument("journal", type=Path, metavar="JOURNAL", help="the sealed journal")
    add_json_flag(show)
    show.set_defaults(handler=run_show)
    parser.set_defaults(handler=_no_action(parser))


def _no_action(parser: argparse.ArgumentParser) -> Any:
    def run(_args: argparse.Namespace) -> int:
        from ml_integrity.errors import UsageError

        raise UsageError("give an action: journal verify JOURNAL ... or journal show JOURNAL")

    return run


def run_verify(args: argparse.Namespace) -> int:
    from ml_integrity.cli._trust import discover_git, trust_request
    from ml_integrity.data.journal_check import verify_journal
    from ml_integrity.errors import UsageError
    from ml_integrity.trust.resolver import resolve_trust

    if len(args.dataset) != len(args.dataset_bundle):
        raise UsageError(
            f"{len(args.dataset)} --dataset but {len(args.dataset_bundle)} --dataset-bundle",
            hint="give each --dataset DIR its --dataset-bundle B",
        )
    if not args.journal.is_file():
        raise UsageError("journal not found", path=args.journal)
    # the in-repository policy is looked up where the journal is
    trust = resolve_trust(trust_request(args), "model", repo=discover_git(args.journal.resolve()))
    assert trust.policy is not None
    result = verify_journal(
        args.journal,
        trust.policy,
        trust.backends(),
        model=args.model,
        datasets=list(zip(args.dataset, args.dataset_bundle, strict=True)),
        ignore_paths=args.ignore_path,
    )
    if args.json:
        print_json(result.to_json())
    else:
        for line in result.lines():
            print(line)
    return 0


def run_show(args: argparse.Namespace) -> int:
    from ml_integrity.data.journal_check import read_journal

    journal = read_journal(args.journal)
    if args.json:
        print_json({"verified": False, **journal.to_json()})
        return 0
    print(f"journal: {journal.path} (signature NOT verified; use 'journal verify')")
    print(f"model: {journal.model_name} sha256:{journal.model_digest}")
    print(f"signed with: {journal.material}")
    print(f"sealed: {journal.predicate.get('sealed')} (started {journal.predicate.get('started')})")
    for d in journal.datasets:
        print(
            f"dataset {d.name} [{d.split or '-'}]: {d.count} of {d.files} item(s) read, "
            f"{d.reads} read(s); manifest sha256:{d.root_digest}; signed by {d.signer}"
        )
    return 0
