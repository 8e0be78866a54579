"""``ml-integrity bom``: an ML-BOM (CycloneDX 1.6 or SPDX 3.0) of a model and its journals."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ml_integrity.cli._common import add_command, add_json_flag, print_json
from ml_integrity.cli._options import add_key_trust_options
from ml_integrity.cli._trust import add_verify_options

ORDER = 65

_EPILOG = """\
examples:
  ml-integrity bom models/bert --bundle bert.sig --journal run.journal --output bom.cdx.json
  ml-integrity bom models/bert --bundle bert.sig --journal run.journal --format spdx \\
      --key release.pub --output bom.spdx.json

The model is a CycloneDX 'machine-learning-model' component (SPDX: ai_AIPackage)
with its OMS root digest and one hash per file; each dataset the journals name
is a 'data' component (SPDX: dataset_DatasetPackage, with trainedOn/testedOn
relationships) with its manifest root digest; signers are properties.
The model folder must match its bundle and every journal must name the model.
With trust options (--key, --cert-chain, an identity, --policy) every signature
is verified first; without, signatures are read but not checked, and the BOM
says so (property ml-integrity:verified = false). Exit 0 written; 1 mismatch or
untrusted; 2 usage error.
"""


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "bom",
        help="write an ML-BOM (CycloneDX 1.6 / SPDX 3.0) of a model and its datasets",
        description="Write an ML-BOM that ties a signed model to the datasets its training "
        "journals name.",
        epilog=_EPILOG,
    )
    parser.add_argument("model", type=Path, metavar="MODEL_DIR", help="the model folder or file")
    parser.add_argument(
        "--bundle", required=True, type=Path, metavar="MODEL_BUNDLE", help="the model's bundle"
    )
    parser.add_argument(
        "--journal",
        action="append",
        default=[],
        type=Path,
        metavar="JOURNAL",
        help="a sealed training journal of the model; repeatable",
    )
    parser.add_argument(
        "--format",
        choices=("cyclonedx", "spdx"),
        default="cyclonedx",
        help="CycloneDX 1.6 JSON (default) or SPDX 3.0.1 JSON-LD",
    )
    parser.add_argument("--output", required=True, type=Path, metavar="FILE", help="where to write")
    parser.add_argument(
        "--ignore-path",
        action="append",
        default=[],
        metavar="PATH",
        help="a path of the model folder to leave out; repeatable",
    )
    add_key_trust_options(parser, "key-based trust (optional: verify before writing)")
    add_verify_options(parser)
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ml_integrity.cli._trust import discover_git, trust_request
    from ml_integrity.core.signing import write_atomic
    from ml_integrity.data import bom
    from ml_integrity.trust.resolver import resolve_trust

    request = trust_request(args)
    if request.keys or request.cert_chain or request.policy_options():
        trust = resolve_trust(request, "model", repo=discover_git(args.model.resolve()))
        facts = bom.collect(
            args.model,
            args.bundle,
            args.journal,
            policy=trust.policy,
            factory=trust.backends(),
            ignore_paths=args.ignore_path,
        )
    else:
        facts = bom.collect(args.model, args.bundle, args.journal, ignore_paths=args.ignore_path)
    doc = bom.cyclonedx(facts) if args.format == "cyclonedx" else bom.spdx(facts)
    write_atomic(args.output, (json.dumps(doc, indent=2) + "\n").encode())
    datasets = len(facts.datasets())
    if args.json:
        print_json(
            {
                "ok": True,
                "output": str(args.output),
                "format": args.format,
                "model": facts.model_name,
                "datasets": datasets,
                "verified": facts.verified,
            }
        )
    else:
        print(
            f"wrote {args.output} ({args.format}): {facts.model_name} and {datasets} "
            f"dataset{'s' if datasets != 1 else ''}"
            + ("" if facts.verified else " (signatures not verified: no trust options given)")
        )
    return 0
