"""``ml-integrity sign``: sign a model folder or file as an OMS v1.0 bundle."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml_integrity.cli._common import Progress, add_command, add_json_flag, print_json
from ml_integrity.cli._options import add_engine_options, add_walk_options, positive_int
from ml_integrity.cli._trust import SIGN_EPILOG, add_sign_options

if TYPE_CHECKING:
    from ml_integrity.core.signing import Signer

ORDER = 30

_EPILOG = (
    """\
examples:
  ml-integrity sign models/bert --key key.pem --bundle models/bert.sig
  ml-integrity sign model.safetensors --key key.pem --bundle model.safetensors.sig
  ml-integrity sign models/bert --key leaf.pem --cert leaf.crt --cert intermediate.crt \\
      --bundle bert.sig
  ml-integrity sign models/llm --key key.pem --bundle llm.sig --hash blake3
  ml-integrity sign big.safetensors --key key.pem --bundle big.sig --shard-size 1000000000
  ml-integrity sign big.safetensors --key key.pem --bundle big.sig --shard-size 268435456 \\
      --engine dask --scheduler tcp://head:8786

The bundle is an OpenSSF Model Signing (OMS) v1.0 bundle: 'model_signing verify'
accepts it (EC keys). Its CLI re-hashes with sha256 over files only: bundles made
with --hash blake2/blake3 or --shard-size verify through model_signing's API
(verifying.Config with the matching hashing config) and with 'ml-integrity verify'.
A folder is hashed as a stream by --engine (threads or dask), with any --hash;
--engine dask also hashes the shards of --shard-size (a single large file's shards
on several workers); the key stays here and the bundle is the default engine's,
byte for byte. A bundle written inside the folder is left out of what is signed.
The bundle never replaces a file of the model, and replaces an existing bundle
only with --overwrite (as sigstore-python does). An encrypted private key reads
its password from ML_INTEGRITY_KEY_PASSWORD.

"""
    + SIGN_EPILOG
)


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "sign",
        help="sign a model folder or file (OMS bundle)",
        description="Hash a model folder or a single file and sign the result as an "
        "OpenSSF Model Signing v1.0 bundle.",
        epilog=_EPILOG,
    )
    parser.add_argument("path", type=Path, metavar="PATH", help="model folder or file to sign")
    parser.add_argument(
        "--bundle", required=True, type=Path, metavar="OUT", help="where to write the bundle"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing bundle at OUT (and its OUT.shards/ folder); a file of the "
        "model is never replaced",
    )
    keys = parser.add_argument_group("key-based signing")
    keys.add_argument("--key", type=Path, metavar="KEY", help="private key (PEM)")
    keys.add_argument(
        "--cert",
        action="append",
        default=[],
        type=Path,
        metavar="CHAIN",
        help="signing certificate of KEY, then intermediates (PEM; repeatable, or one file "
        "holding several); the bundle then uses the OMS certificate method",
    )
    hashing = parser.add_argument_group("hashing (see 'when to choose what' in the README)")
    hashing.add_argument(
        "--hash",
        choices=["sha256", "blake2", "blake3"],
        default="sha256",
        help="hash algorithm (default sha256: what Git LFS oids are, and what every OMS "
        "verifier checks; blake3 is the fastest; blake2 is BLAKE2b)",
    )
    hashing.add_argument(
        "--shard-size",
        type=_shard_size,
        metavar="BYTES",
        help="hash every file in shards of BYTES (OMS 'shards' serialization) so that one "
        "large file uses every core (with --engine dask: every worker of the cluster); with "
        "sha256 or blake2. model_signing's default is 1000000000",
    )
    add_sign_options(parser)
    add_walk_options(parser)
    add_engine_options(parser)
    parser.add_argument(
        "--shard-entries",
        type=positive_int,
        default=None,
        metavar="N",
        help="a folder of more than N files (default 100,000) is signed as shards under one "
        "small signed statement (docs/format.md, 'Sharded manifests'); up to N, one OMS bundle "
        "(sha256 over files only)",
    )
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def _shard_size(value: str) -> int:
    try:
        n = int(value.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of bytes: {value!r}") from None
    if n < 4096:
        raise argparse.ArgumentTypeError("must be at least 4096 bytes")
    return n


def make_signer(args: argparse.Namespace) -> Signer:
    """The signing backend the command line asks for."""
    from ml_integrity.cli._trust import keyless_requested, make_key_signer, make_keyless_signer
    from ml_integrity.errors import UsageError

    if keyless_requested(args):
        return make_keyless_signer(args)
    if args.key is None:
        raise UsageError(
            "no signing key given",
            hint="pass --key KEY (create one with 'ml-integrity keygen --out KEY'), "
            "or --sigstore to sign keylessly",
        )
    return make_key_signer(args.key, args.cert)


def run(args: argparse.Namespace) -> int:
    from ml_integrity.core import signing

    # before the signer: keyless signing must not open a browser for a bundle it cannot write
    if args.path.exists():
        signing.check_bundle_path(
            args.path,
            args.bundle,
            overwrite=args.overwrite,
            ignore_paths=signing.resolve_ignore_paths(args.path, args.ignore_path),
            ignore_git_paths=args.ignore_git_paths,
        )
    folder = args.path.is_dir() and args.shard_size is None and args.ignore_git_paths
    _check_engine_options(args, folder=folder)
    signer = make_signer(args)
    if folder:
        # streamed by the engine: sha256 (sharded above --shard-entries), blake2, blake3
        return run_folder(args, signer)
    shard_hasher = None
    if args.engine == "dask":  # shards on a Dask cluster (_check_engine_options)
        from ml_integrity.engines import make_shard_hasher

        shard_hasher = make_shard_hasher(
            args.engine, workers=args.workers, scheduler=args.scheduler
        )
    with Progress("hashing") as progress:
        result = signing.sign(
            args.path,
            signer,
            args.bundle,
            ignore_paths=args.ignore_path,
            ignore_git_paths=args.ignore_git_paths,
            hash_type=args.hash,
            shard_size=args.shard_size,
            workers=args.workers,
            rehash=args.rehash,
            progress=progress,
            overwrite=args.overwrite,
            allow_symlinks=args.allow_symlinks,
            shard_hasher=shard_hasher,
        )
    files = result.files
    if args.json:
        print_json(
            {
                "ok": True,
                "target": str(args.path),
                "bundle": str(result.bundle_path),
                "signer": result.signer,
                "files": files,
                "bytes": result.total_size,
                "hashing": result.hashing,
            }
        )
    else:
        print(
            f"signed {args.path} ({files} file{'s' if files != 1 else ''}, "
            f"{result.total_size:,} bytes, {result.hashing}) with {result.signer}"
        )
        print(f"bundle: {result.bundle_path}")
    return 0


def _check_engine_options(args: argparse.Namespace, *, folder: bool) -> None:
    """Refuse what the chosen path cannot do, before anything is hashed or signed."""
    from ml_integrity.errors import UsageError

    if args.scheduler is not None and args.engine != "dask":
        raise UsageError("--scheduler needs --engine dask")
    if args.shard_entries is not None and not (folder and args.hash == "sha256"):
        raise UsageError(
            "--shard-entries applies to folders signed with sha256 over files",
            hint="sharded manifests are sha256; drop --shard-entries, or --hash and --shard-size",
        )
    if args.engine == "dask" and not folder and args.shard_size is None:
        what = "a single file" if not args.path.is_dir() else "--no-ignore-git-paths"
        raise UsageError(
            f"--engine dask does not sign {what} over whole files",
            hint="pass --shard-size BYTES to hash it in shards on the cluster, or drop "
            "--engine dask",
        )


def run_folder(args: argparse.Namespace, signer: Signer) -> int:
    """A folder: hashed as a stream by the chosen engine; shards above --shard-entries."""
    from ml_integrity.cli._options import make_engine
    from ml_integrity.core import sharded, signing, signing_stream
    from ml_integrity.core.hashing_algorithms import oms_name

    hashing = f"{oms_name(args.hash)} files"
    result = signing_stream.sign_folder(
        args.path,
        signer,
        args.bundle,
        make_engine(args),
        ignore_paths=signing.resolve_ignore_paths(args.path, args.ignore_path),
        shard_entries=args.shard_entries or sharded.DEFAULT_SHARD_ENTRIES,
        overwrite=args.overwrite,
        allow_symlinks=args.allow_symlinks,
        hash_type=args.hash,
    )
    if args.json:
        print_json(
            {
                "ok": True,
                "target": str(args.path),
                "bundle": str(result.bundle_path),
                "signer": result.signer,
                "files": result.files,
                "bytes": result.bytes,
                "hashing": hashing,
                "shards": result.shards,
            }
        )
    else:
        files = f"{result.files} file{'s' if result.files != 1 else ''}"
        print(
            f"signed {args.path} ({files}, {result.bytes:,} bytes, {hashing}) with {result.signer}"
        )
        print(f"bundle: {result.bundle_path}")
        if result.shards:
            folder = sharded.shard_dir_for(result.bundle_path)
            print(f"shards: {result.shards} in {folder} (the bundle signs their digests)")
    return 0
