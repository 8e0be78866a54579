#!/usr/bin/env python3
"""Benchmark ml-integrity's hashing engine against baselines measured in the same run.

Generates a model folder (by default 4 x 512 MiB random ``.safetensors`` files
plus 200 small files of 1-64 KiB in subfolders), reads it once so that it is
in the page cache (every measurement is warm), then times:

- ml-integrity ``hash_files``, first run (no cache) and incremental (warm
  stat cache, unchanged tree), in process;
- ml-integrity hashing in a fresh process (``python -c``: start-up + import +
  hash), to compare with command-line tools;
- ``sha256sum`` over the sorted file list (``find | sort | xargs sha256sum``);
- a single-threaded ``hashlib`` loop with 1 MiB reads;
- ``openssl speed -evp sha256 -bytes 1048576`` (one core, and ``-multi``):
  one core times the number of cores is the machine limit;
- ``model_signing`` 1.1.1 key signing of the same folder, through its API in
  process and through its CLI in a fresh process (when it is installed);
- one large file alone, with and without the read-ahead thread;
- the incremental re-hash of an unchanged 1,000-file tree (load the cache,
  stat every file, save);
- issue 12's hashing-engine figures: SHA-256 over the model's files against a
  two-thread ``hashlib`` loop over the same files; one single 2 GiB file
  hashed in shards (``--shard-size``) against unsharded; BLAKE3 against our
  SHA-256; each beside model_signing's API (hashing only, the same
  algorithm and serialization) and CLI (which hashes SHA-256 over files only).

``--only engine`` runs just the issue 12 set (a few minutes); ``--only`` also
takes a comma-separated list of measurement names (see ``--json``).

Prints a table with seconds, GB/s (decimal) and ratios against the targets;
``--json`` prints the same as JSON. Only the standard library and
ml_integrity are needed (model_signing and cryptography are optional).

Usage:
    python bench/hashing.py                      # 2 GiB model, 3 runs each
    python bench/hashing.py --size-mb 256        # scaled down
    python bench/hashing.py --dir /data --keep   # keep (and reuse) the generated data
    python bench/hashing.py --only engine --repeat 3   # issue 12's figures only
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import re
import resource
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ml_integrity import __version__ as ml_integrity_version
from ml_integrity.core.hashing import RACY_MARGIN_NS, StatCache, hash_files, hash_shards

MIB = 1 << 20
GB = 1e9


# --- data -----------------------------------------------------------------------


def generate_model(root: Path, large_files: int, size_mb: int, small_files: int) -> None:
    """Random large ``.safetensors`` files plus small JSON files in three subfolders."""
    root.mkdir(parents=True, exist_ok=True)
    per_file = size_mb * MIB // large_files if large_files else 0
    block = 8 * MIB
    for i in range(large_files):
        with open(root / f"model-{i + 1:05d}-of-{large_files:05d}.safetensors", "wb") as f:
            left = per_file
            while left > 0:
                n = min(block, left)
                f.write(os.urandom(n))
                left -= n
    rng = random.Random(1234)
    for i in range(small_files):
        folder = root / ("tokenizer" if i < 50 else "configs" if i < 120 else "extra/nested")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"file_{i:03d}.json").write_bytes(os.urandom(rng.randint(1024, 65536)))


def generate_small_tree(root: Path, count: int) -> None:
    """``count`` files of 1-4 KiB spread over 20 folders (a repository of configs)."""
    rng = random.Random(42)
    for i in range(count):
        folder = root / f"dir_{i % 20:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f_{i:04d}.bin").write_bytes(os.urandom(rng.randint(1024, 4096)))


def list_files(root: Path) -> list[str]:
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root).replace(os.sep, "/")
        out.extend(name if rel == "." else f"{rel}/{name}" for name in filenames)
    return sorted(out)


def warm(root: Path, paths: list[str]) -> None:
    """Read every file once so that all measurements run from the page cache."""
    buf = bytearray(8 * MIB)
    for rel in paths:
        with open(root / rel, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass


# --- measurements --------------------------------------------------------------


def cpu_snapshot() -> tuple[float, float]:
    """(CPU-seconds all processes spent busy, CPU-seconds this process and its
    children spent), to tell how much other work shared the machine."""
    busy = 0.0
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
        ticks = [int(x) for x in fields]
        # user nice system idle iowait irq softirq steal ...
        busy = (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        pass
    own = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        own += usage.ru_utime + usage.ru_stime
    return busy, own


def timed(fn: Callable[[], object]) -> dict[str, Any]:
    """Run ``fn`` once: wall seconds, CPU-seconds of this process and its
    children (all threads), and the share of the machine that other processes
    used meanwhile (None for runs too short for /proc/stat's 10 ms ticks)."""
    busy0, own0 = cpu_snapshot()
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    busy1, own1 = cpu_snapshot()
    cpu = own1 - own0
    other = max(0.0, (busy1 - busy0) - cpu)
    cores = os.cpu_count() or 1
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "other_load": other / (seconds * cores) if seconds >= 0.2 else None,
    }


def hashlib_loop(root: Path, paths: list[str]) -> None:
    for rel in paths:
        h = hashlib.sha256()
        with open(root / rel, "rb", buffering=0) as f:
            while chunk := f.read(MIB):
                h.update(chunk)
        h.hexdigest()


def hashlib_threads(root: Path, paths: list[str], threads: int) -> None:
    """The baseline of issue 12: ``threads`` threads, one file each, biggest first,
    ``hashlib.sha256`` fed by 1 MiB reads (the plainest parallel hashing loop)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(rel: str) -> str:
        h = hashlib.sha256()
        with open(root / rel, "rb", buffering=0) as f:
            while chunk := f.read(MIB):
                h.update(chunk)
        return h.hexdigest()

    ordered = sorted(paths, key=lambda p: -(root / p).stat().st_size)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, ordered))


def mmap_reference(root: Path, paths: list[str], workers: int) -> None:
    """hashlib over mmap'd files, ``workers`` threads: no copy out of the page
    cache, the fastest way Python can feed hashlib. Not used by ml-integrity:
    a file truncated while mapped kills the process with SIGBUS."""
    import mmap
    from concurrent.futures import ThreadPoolExecutor

    def one(rel: str) -> str:
        h = hashlib.sha256()
        with open(root / rel, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size:
                with mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) as m:
                    view = memoryview(m)
                    for offset in range(0, size, MIB):
                        h.update(view[offset : offset + MIB])
                    view.release()
        return h.hexdigest()

    ordered = sorted(paths, key=lambda p: -(root / p).stat().st_size)
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, ordered))


def run_quiet(cmd: list[str], **kwargs: Any) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")


def openssl_speed(multi: int | None) -> float | None:
    """Bytes per second of ``openssl speed -evp sha256 -bytes 1048576``."""
    if not shutil.which("openssl"):
        return None
    cmd = ["openssl", "speed", "-seconds", "3", "-bytes", "1048576"]
    if multi:
        cmd += ["-multi", str(multi)]
    cmd += ["-evp", "sha256"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    # The result line: "sha256   1493749.88k" (thousands of bytes per second).
    match = re.search(r"^sha256\s+([\d.]+)k\s*$", proc.stdout, re.MULTILINE)
    return float(match.group(1)) * 1000 if match else None


def max_or_none(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def model_signing_setup(work: Path) -> tuple[Path | None, str]:
    """An EC P-256 key for model_signing, or the reason it cannot run."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from model_signing import signing  # noqa: F401
    except Exception as exc:  # ImportError, or OpenSSL missing inside model_signing
        return None, f"model_signing not importable: {type(exc).__name__}: {exc}"
    key = ec.generate_private_key(ec.SECP256R1())
    path = work / "key.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path, ""


def model_signing_api(model: Path, key: Path, sig: Path) -> None:
    from model_signing import signing

    make_config: Any = signing.Config
    config = make_config()
    config.use_elliptic_key_signer(private_key=key).sign(model, sig)


def model_signing_hash(model: Path, algorithm: str, shard_size: int | None) -> None:
    """model_signing's API, hashing only (``hashing.Config().hash``), in process."""
    from model_signing import hashing as ms_hashing

    make_config: Any = ms_hashing.Config
    config = make_config()
    if shard_size:
        config.use_shard_serialization(hashing_algorithm=algorithm, shard_size=shard_size)
    else:
        config.use_file_serialization(hashing_algorithm=algorithm)
    config.hash(model)


ENGINE = (
    "ours",
    "hashlib_2threads",
    "ours_blake3",
    "single_unsharded",
    "single_shards",
    "single_blake3",
    "ms_hash_sha256",
    "ms_hash_blake3",
    "ms_hash_single_shards",
    "model_signing_cli",
)
"""The measurements of ``--only engine`` (issue 12)."""

OURS_FRESH_PROCESS = """
import sys
from pathlib import Path
from ml_integrity.core.hashing import hash_files
hash_files(Path(sys.argv[1]), sys.stdin.read().splitlines())
"""


# --- report ------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor()
    flags = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        flags = "sha_ni" if re.search(r"\bsha_ni\b", text) else "no sha_ni"
    except OSError:
        pass
    openssl_cli = ""
    if shutil.which("openssl"):
        openssl_cli = subprocess.run(
            ["openssl", "version"], capture_output=True, text=True, check=False
        ).stdout.strip()
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "sha_extensions": flags,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "hashlib_openssl": ssl.OPENSSL_VERSION,
        "openssl_cli": openssl_cli,
        "ml_integrity": ml_integrity_version,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=2048, help="total MiB of large files")
    parser.add_argument("--large-files", type=int, default=4, help="number of large files")
    parser.add_argument("--small-files", type=int, default=200, help="number of small files")
    parser.add_argument(
        "--tree-files", type=int, default=1000, help="files of the incremental tree"
    )
    parser.add_argument(
        "--repeat", type=int, default=5, help="rounds; the best run of each measurement counts"
    )
    parser.add_argument(
        "--single-mb", type=int, default=2048, help="MiB of the single large file (shards)"
    )
    parser.add_argument(
        "--shard-size", type=int, default=256 * MIB, help="shard size for the single file"
    )
    parser.add_argument(
        "--only", help="'engine' (issue 12's figures), or comma-separated measurement names"
    )
    parser.add_argument("--dir", type=Path, help="put the data here (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)

    if args.dir:
        work = args.dir.resolve() / "mli-bench-hashing"
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="mli-bench-hashing-"))
    try:
        report = run(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report, work if args.keep else None)
    return 0


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    loadavg_before = os.getloadavg()
    model = work / "model"
    tree = work / "tree"
    single = work / "single" / "one.safetensors"
    params = {
        "single_mb": args.single_mb,
        "size_mb": args.size_mb,
        "large_files": args.large_files,
        "small_files": args.small_files,
        "tree_files": args.tree_files,
    }
    marker = work / "params.json"
    if not (marker.is_file() and json.loads(marker.read_text()) == params):
        shutil.rmtree(model, ignore_errors=True)
        shutil.rmtree(tree, ignore_errors=True)
        log(f"generating {args.size_mb} MiB model and a {args.tree_files}-file tree in {work}")
        generate_model(model, args.large_files, args.size_mb, args.small_files)
        generate_small_tree(tree, args.tree_files)
        shutil.rmtree(single.parent, ignore_errors=True)
        generate_model(single.parent, 1, args.single_mb, 0)
        next(single.parent.iterdir()).rename(single)
        marker.write_text(json.dumps(params))
    paths = list_files(model)
    total = sum((model / p).stat().st_size for p in paths)
    tree_paths = list_files(tree)
    tree_total = sum((tree / p).stat().st_size for p in tree_paths)
    largest = max(paths, key=lambda p: (model / p).stat().st_size)
    size_largest = (model / largest).stat().st_size
    log("flushing dirty pages to disk (so that write-back does not run during the timings)")
    os.sync()
    log(f"{len(paths)} files, {total / GB:.3f} GB; warming the page cache")
    warm(model, paths)
    warm(tree, tree_paths)
    warm(single.parent, [single.name])
    size_single = single.stat().st_size
    shard = args.shard_size
    # Cache entries are only trusted for files older than the racy margin.
    time.sleep(RACY_MARGIN_NS / 1e9 + 0.05)

    model_cache = work / "statcache-model.json"
    tree_cache = work / "statcache-tree.json"
    for cache_path, root, rel in ((model_cache, model, paths), (tree_cache, tree, tree_paths)):
        cache_path.unlink(missing_ok=True)
        populate = StatCache.load(cache_path)
        hash_files(root, rel, cache=populate)
        populate.save()

    def incremental(cache_path: Path, root: Path, rel: list[str]) -> None:
        cache = StatCache.load(cache_path)
        hash_files(root, rel, cache=cache)
        if cache.misses:
            raise RuntimeError(f"incremental run re-read {cache.misses} files")
        cache.save()

    # (name, label, function, bytes for GB/s)
    cases: list[tuple[str, str, Callable[[], object], int]] = [
        (
            "ours",
            "ml-integrity hash_files, first run (no cache)",
            lambda: hash_files(model, paths),
            total,
        ),
        (
            "hashlib_2threads",
            "Python hashlib loop, 2 threads over the files, 1 MiB reads",
            lambda: hashlib_threads(model, paths, 2),
            total,
        ),
        (
            "ours_blake3",
            "ml-integrity hash_files, BLAKE3 (no cache)",
            lambda: hash_files(model, paths, algorithm="blake3"),
            total,
        ),
        (
            "single_unsharded",
            f"ml-integrity, one {size_single / GB:.2f} GB file, SHA-256 unsharded",
            lambda: hash_files(single.parent, [single.name]),
            size_single,
        ),
        (
            "single_shards",
            f"ml-integrity, the same file, SHA-256 in shards of {shard / MIB:.0f} MiB",
            lambda: hash_shards(single.parent, [single.name], shard_size=shard),
            size_single,
        ),
        (
            "single_blake3",
            "ml-integrity, the same file, BLAKE3",
            lambda: hash_files(single.parent, [single.name], algorithm="blake3"),
            size_single,
        ),
        (
            "ours_incremental",
            "ml-integrity hash_files, incremental (warm cache, unchanged tree)",
            lambda: incremental(model_cache, model, paths),
            total,
        ),
        (
            "ours_process",
            "ml-integrity hashing in a fresh process (start-up + import + hash)",
            lambda: run_quiet(
                [sys.executable, "-c", OURS_FRESH_PROCESS, str(model)], input="\n".join(paths)
            ),
            total,
        ),
        (
            "hashlib_1thread",
            "Python hashlib loop, 1 thread, 1 MiB reads",
            lambda: hashlib_loop(model, paths),
            total,
        ),
    ]
    if shutil.which("sha256sum"):
        cases.append(
            (
                "sha256sum",
                "sha256sum, sequential (find | sort | xargs sha256sum)",
                lambda: run_quiet(
                    [
                        "bash",
                        "-c",
                        'set -o pipefail; find "$1" -type f -print0 | sort -z'
                        " | xargs -0 sha256sum >/dev/null",
                        "bash",
                        str(model),
                    ]
                ),
                total,
            )
        )
    key, ms_reason = model_signing_setup(work)
    if key is not None:
        sig = work / "out" / "model.sig"
        sig.parent.mkdir(exist_ok=True)
        ms_cli = [sys.executable, "-m", "model_signing", "sign", "key"]
        ms_key = ["--private_key", str(key), "--signature", str(sig)]
        cases += [
            (
                "ms_hash_sha256",
                "model_signing 1.1.1 API, hashing only, SHA-256 files",
                lambda: model_signing_hash(model, "sha256", None),
                total,
            ),
            (
                "ms_hash_blake3",
                "model_signing 1.1.1 API, hashing only, BLAKE3 files",
                lambda: model_signing_hash(model, "blake3", None),
                total,
            ),
            (
                "ms_hash_single_shards",
                f"model_signing 1.1.1 API, hashing only, the single file, {shard / MIB:.0f} MiB "
                "shards",
                lambda: model_signing_hash(single, "sha256", shard),
                size_single,
            ),
            (
                "model_signing_api",
                "model_signing 1.1.1 sign key, API in process (hash + sign)",
                lambda: model_signing_api(model, key, sig),
                total,
            ),
            (
                "model_signing_cli",
                "model_signing 1.1.1 sign key, CLI in a fresh process",
                lambda: run_quiet([*ms_cli, str(model), *ms_key]),
                total,
            ),
            (
                "model_signing_cli_tree",
                f"model_signing 1.1.1 sign key, CLI, the {len(tree_paths)}-file tree",
                lambda: run_quiet([*ms_cli, str(tree), *ms_key]),
                0,
            ),
        ]
    else:
        log(ms_reason)
    cases += [
        (
            "ours_process_tree",
            f"ml-integrity in a fresh process, the {len(tree_paths)}-file tree (no cache)",
            lambda: run_quiet(
                [sys.executable, "-c", OURS_FRESH_PROCESS, str(tree)], input="\n".join(tree_paths)
            ),
            0,
        ),
        (
            "mmap_reference",
            "reference, not used: hashlib over mmap, workers=cores (no copy)",
            lambda: mmap_reference(model, paths, os.cpu_count() or 1),
            total,
        ),
        (
            "one_file_readahead",
            "ml-integrity, one large file, read-ahead thread (workers=cores)",
            lambda: hash_files(model, [largest]),
            size_largest,
        ),
        (
            "one_file_plain",
            "ml-integrity, one large file, no read-ahead (workers=1)",
            lambda: hash_files(model, [largest], workers=1),
            size_largest,
        ),
        (
            "tree_incremental",
            f"incremental re-hash, unchanged {len(tree_paths)}-file tree (load+stat+save)",
            lambda: incremental(tree_cache, tree, tree_paths),
            0,
        ),
    ]

    if args.only:
        wanted = set(ENGINE if args.only == "engine" else args.only.split(","))
        cases = [case for case in cases if case[0] in wanted]
    # Rounds: every measurement once per round (in a rotating order), so that
    # a burst of other work on the machine hits all of them rather than one.
    r = args.repeat
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, *_ in cases}
    inner = {"tree_incremental": 5, "ours_incremental": 5}
    for i in range(r):
        log(f"round {i + 1} of {r}")
        shift = i % len(cases)  # rotate the order from round to round
        for name, _, fn, _ in cases[shift:] + cases[:shift]:
            runs[name] += [timed(fn) for _ in range(inner.get(name, 1))]
    results: dict[str, dict[str, Any]] = {}
    for name, label, _, nbytes in cases:
        # The best run: the one least disturbed by other work on the machine.
        best = min(runs[name], key=lambda one: float(one["seconds"]))
        seconds = best["seconds"]
        cpu_s = best["cpu_seconds"]
        results[name] = {
            "label": label,
            "seconds": seconds,
            "median_seconds": statistics.median(one["seconds"] for one in runs[name]),
            "runs": runs[name],
            "gb_per_s": nbytes / GB / seconds if nbytes else None,
            "cpu_seconds": cpu_s,
            "gb_per_cpu_s": nbytes / GB / cpu_s if nbytes and cpu_s else None,
            "other_load": best["other_load"],
        }

    cores = os.cpu_count() or 1
    one_core = multi = None
    if not args.only:
        log("openssl speed (4 runs of 3 s)")
        # Best of two runs each, like the measurements above.
        one_core = max_or_none(openssl_speed(None) for _ in range(2))
        multi = max_or_none(openssl_speed(cores) for _ in range(2)) if cores > 1 else one_core

    def gbps(name: str) -> float | None:
        value = results.get(name, {}).get("gb_per_s")
        return float(value) if value else None

    def wall(name: str) -> float | None:
        value = results.get(name, {}).get("seconds")
        return float(value) if value else None

    ours = gbps("ours")
    ratios: dict[str, dict[str, Any]] = {}

    def result(name: str, key: str) -> float | None:
        value = results.get(name, {}).get(key)
        return float(value) if value else None

    def ratio(name: str, value: float | None, target: str, ok: bool | None) -> None:
        ratios[name] = {"value": value, "target": target, "met": ok}

    def over(a: float | None, b: float | None) -> float | None:
        return a / b if a and b else None

    limit = one_core * cores / GB if one_core else None
    # issue 12: the hashing engine
    v = over(ours, gbps("hashlib_2threads"))
    ratio("SHA-256 files: ours vs 2-thread hashlib loop", v, ">= 0.95", v >= 0.95 if v else None)
    v = over(gbps("single_shards"), gbps("single_unsharded"))
    ratio("one large file: shards vs unsharded", v, ">= 1.8", v >= 1.8 if v else None)
    v = over(gbps("ours_blake3"), ours)
    ratio("BLAKE3 vs our SHA-256 (files)", v, ">= 2.5", v >= 2.5 if v else None)
    v = over(ours, gbps("ms_hash_sha256"))
    ratio("SHA-256 files: ours vs model_signing API", v, "(info)", None)
    v = over(gbps("ours_blake3"), gbps("ms_hash_blake3"))
    ratio("BLAKE3 files: ours vs model_signing API", v, "(info)", None)
    v = over(gbps("single_shards"), gbps("ms_hash_single_shards"))
    ratio("one file in shards: ours vs model_signing API", v, "(info)", None)
    v = over(gbps("ours_process"), gbps("model_signing_cli"))
    ratio("ours (fresh process) vs model_signing CLI", v, ">= 2x", v >= 2 if v else None)
    v = over(ours, gbps("model_signing_api"))
    ratio("ours vs model_signing API (both in process)", v, ">= 2x", v >= 2 if v else None)
    v = over(wall("model_signing_cli_tree"), wall("ours_process_tree"))
    ratio(f"{len(tree_paths)}-file tree: ours (process) vs model_signing", v, "(info)", None)
    v = over(ours, limit)
    ratio("ours vs openssl speed x cores", v, ">= 0.9", v >= 0.9 if v else None)
    v = over(ours, multi / GB if multi else None)
    ratio("ours vs openssl speed -multi cores", v, "(info)", None)
    v = over(ours, gbps("mmap_reference"))
    ratio("ours vs hashlib over mmap (reference)", v, "(info)", None)
    v = over(result("ours", "gb_per_cpu_s"), one_core / GB if one_core else None)
    ratio("ours GB per CPU-second vs openssl one core", v, "(info)", None)
    v = over(ours, gbps("sha256sum"))
    ratio("ours vs sha256sum", v, "(info)", None)
    v = over(ours, gbps("hashlib_1thread"))
    ratio("ours vs 1-thread hashlib", v, "(info)", None)
    v = over(gbps("one_file_readahead"), gbps("one_file_plain"))
    ratio("one file: read-ahead vs none", v, "(info)", None)
    v = over(gbps("one_file_readahead"), one_core / GB if one_core else None)
    ratio("one file: read-ahead vs openssl one core", v, "(info)", None)
    tree_s = result("tree_incremental", "seconds")
    if tree_s is not None:
        ms = tree_s * 1000
        ratio(f"{len(tree_paths)}-file incremental, ms", ms, "< 50 ms", ms < 50)

    info = machine()
    info["loadavg_before"] = loadavg_before
    info["loadavg_after"] = os.getloadavg()
    return {
        "command": " ".join(["python", "bench/hashing.py", *sys.argv[1:]]),
        "machine": info,
        "data": {
            "files": len(paths),
            "bytes": total,
            "largest_file_bytes": size_largest,
            "single_file_bytes": size_single,
            "shard_size": shard,
            "tree_files": len(tree_paths),
            "tree_bytes": tree_total,
            "repeat": r,
        },
        "openssl_speed_one_core_gb_per_s": one_core / GB if one_core else None,
        "openssl_speed_multi_gb_per_s": multi / GB if multi else None,
        "machine_limit_gb_per_s": limit,
        "model_signing": ms_reason or "ok",
        "results": results,
        "ratios": ratios,
    }


def print_table(report: dict[str, Any], kept: Path | None) -> None:
    m = report["machine"]
    d = report["data"]
    print(f"command: {report['command']}")
    print(f"machine: {m['cores']} cores, {m['cpu']} ({m['sha_extensions']}), kernel {m['kernel']}")
    print(f"python {m['python']}, hashlib on {m['hashlib_openssl']}, CLI {m['openssl_cli']}")
    print(f"load average before {m['loadavg_before']}, after {m['loadavg_after']}")
    print("CPU s: CPU-seconds used by the measured code (all threads and child processes)")
    print("others: share of all cores that other processes used during that (best) run")
    print(
        f"data: {d['files']} files, {d['bytes'] / GB:.3f} GB (largest "
        f"{d['largest_file_bytes'] / GB:.3f} GB); warm page cache; best of {d['repeat']} rounds"
    )
    print()
    print(f"{'measurement':<68} {'seconds':>8} {'GB/s':>6} {'CPU s':>6} {'others':>6}")
    print("-" * 98)
    for res in report["results"].values():
        gbps = f"{res['gb_per_s']:.2f}" if res["gb_per_s"] else "-"
        other = "-" if res["other_load"] is None else f"{res['other_load']:.0%}"
        print(
            f"{res['label']:<68} {res['seconds']:>8.3f} {gbps:>6} "
            f"{res['cpu_seconds']:>6.2f} {other:>6}"
        )
    one = report["openssl_speed_one_core_gb_per_s"]
    multi = report["openssl_speed_multi_gb_per_s"]
    if one:
        print(f"{'openssl speed -evp sha256 -bytes 1048576, one core':<68} {'':>9} {one:>7.2f}")
        print(
            f"{'  x ' + str(m['cores']) + ' cores (the machine limit)':<68} {'':>9} "
            f"{report['machine_limit_gb_per_s']:>7.2f}"
        )
    if multi:
        print(f"{'openssl speed ... -multi ' + str(m['cores']):<68} {'':>9} {multi:>7.2f}")
    if report["model_signing"] != "ok":
        print(f"model_signing: {report['model_signing']}")
    print()
    print(f"{'ratio':<52} {'value':>9} {'target':>9}  result")
    print("-" * 86)
    for name, r in report["ratios"].items():
        if r["value"] is None and r["met"] is None:
            continue  # a ratio of a measurement that did not run (--only)
        value = "n/a" if r["value"] is None else f"{r['value']:.2f}"
        met = {True: "met", False: "MISSED", None: ""}[r["met"]]
        print(f"{name:<52} {value:>9} {r['target']:>9}  {met}")
    if kept:
        print(f"\ndata kept in {kept}")


if __name__ == "__main__":
    sys.exit(main())
