"""``ml-integrity init``: set a repository up for signed LFS content."""

from __future__ import annotations

import argparse
from typing import Any

from ml_integrity.cli._common import add_command, add_json_flag, print_json

ORDER = 5

_EPILOG = """\
Writes .ml-integrity/ (a policy template and an empty manifest), then runs
'ml-integrity install' for this repository. Then, as usual:

  git lfs track "*.safetensors"
  git add .gitattributes .ml-integrity model.safetensors
  ml-integrity sign-repo --key signer.pem      # manifest + signature, staged
  git commit -m "signed model"

Verifiers (you too) trust the signer through git config, never the repository:
  git config ml-integrity.publicKey signer.pem.pub
"""

_POLICY_TEMPLATE = """\
# ml-integrity policy for this repository (a convenience: verifiers that matter
# take their trust from outside the repository, e.g. git config
# ml-integrity.publicKey or ml-integrity.policy; the in-repository policy is
# honoured only as committed at a trusted base: --policy-base REV).
# Reference: docs/trust.md; check it with `ml-integrity policy check FILE`.
version: 1
# Who may sign, by name. Examples:
# signers:
#   release:
#     key: keys/release.pub        # relative to this file: .ml-integrity/keys/
#   ci:
#     sigstore:
#       github:
#         repository: ORG/REPO
#         workflow: release.yml
#         ref: refs/heads/main
# Artifacts besides Git LFS files (glob patterns):
# artifacts:
#   paths: ["models/**"]
# Pickles: block (default) or allowlist
pickle: block
"""


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "init",
        help="set up this repository (.ml-integrity/, then install)",
        description="Create .ml-integrity/ (policy template, empty manifest) and install "
        "the Git/LFS integration in this repository.",
        epilog=_EPILOG,
    )
    parser.add_argument("--strict", action="store_true", default=None, help="as for install")
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ml_integrity.core.fileio import write_atomic
    from ml_integrity.core.manifest import Manifest
    from ml_integrity.git import hooks
    from ml_integrity.git.repository import MANIFEST_PATH, META_DIR, Repository

    with Repository.discover() as repo:
        meta = repo.root / META_DIR
        created = []
        policy = meta / "policy.yaml"
        if not policy.exists():
            write_atomic(policy, _POLICY_TEMPLATE.encode())
            created.append(f"{META_DIR}/policy.yaml")
        manifest = repo.root / MANIFEST_PATH
        if not manifest.exists():
            write_atomic(manifest, Manifest(()).to_json())
            created.append(MANIFEST_PATH)
        report = hooks.install(repo.git, scope="local", strict=args.strict)
    if args.json:
        print_json({"ok": True, "created": created, "install": report.to_json()})
        return 0
    for path in created:
        print(f"created {path}")
    print("ml-integrity installed in this repository")
    print(f"next: git add {META_DIR} && git commit  (see 'ml-integrity init --help')")
    return 0
