"""Benchmark: datasets of many files (issue 15), every figure against a baseline of the same run.

1. Small files: ``ml-integrity manifest TREE --output M --rehash`` (the console
   script, start-up included, threaded engine) on a tree of 200,000 empty
   files (200 folders of 1,000) against ``find TREE -type f -print0 | xargs -0
   -P<cores> sha256sum``. Median of --runs, interleaved. Target: <= 1.5x.
2. Memory: peak RSS of the same command at 200,000 and 2,000,000 empty files
   (the streaming path), and of the in-memory path (``manifest TREE`` printing
   the table, as before issue 15) at 200,000. Target: < 150 MB and flat.
3. Dask: ``manifest TREE --engine dask --workers 2`` (a LocalCluster of 2
   processes, its start-up included) against the threaded engine on a 2 GB
   tree of 20,000 files of 100 KiB (warm page cache). On 2 cores Dask is
   expected to be slower: the overhead is reported. The estimate for N
   machines uses two measured rates: one worker's hashing throughput
   (``hash_partition`` over every partition in one process, which is what a
   worker runs) and the client's rate (walk, lstat and partitioning, no
   hashing): time(N machines of c workers) ~= max(bytes / (N * c * worker
   rate), files / client rate) + cluster start-up. It assumes storage that
   keeps up (a shared file system serving every machine at that rate).
4. Dask shards: ``sign FILE --shard-size 256MiB --engine dask --workers 2``
   (a LocalCluster of 2 processes, its start-up included) against the same
   command on the threaded engine, on one random file of 2 GiB (warm page
   cache, 8 shards). The signed statements must be identical. On 2 cores
   this measures the overhead of going through Dask; a real cluster spreads
   the shards over machines.

Usage: .venv/bin/python bench/scale.py [--runs 3] [--big-files 2000000] [--skip-dask]
           [--only-shards]
Trees are made under --tmp (default: the system temp folder) and removed after.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PER_DIR = 1000


def make_empty_tree(root: Path, n: int) -> Path:
    for i in range(0, n, PER_DIR):
        d = root / f"d{i // PER_DIR:05d}"
        d.mkdir(parents=True)
        for j in range(min(PER_DIR, n - i)):
            os.close(os.open(d / f"f{j:04d}.bin", os.O_CREAT | os.O_WRONLY, 0o644))
    return root


def make_data_tree(root: Path, files: int, size: int) -> Path:
    block = os.urandom(size)
    for i in range(files):
        d = root / f"part{i // 500:03d}"
        if i % 500 == 0:
            d.mkdir(parents=True)
        # distinct content per file: a counter in front of one random block
        (d / f"x{i:05d}.bin").write_bytes(i.to_bytes(8, "little") + block[8:])
    return root


def command() -> list[str]:
    exe = Path(sys.executable).with_name("ml-integrity")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "ml_integrity"]


CPU: list[float] = [0.0]
"""CPU seconds (user + sys, children included) of the last timed() command."""


def timed(args: list[str] | str, cwd: Path | None = None) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        args, cwd=cwd, shell=isinstance(args, str), capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU[0] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return elapsed


def peak_rss_mb(args: list[str]) -> float:
    """Peak RSS of ``args`` (largest of it and its children), measured by a fresh wrapper."""
    probe = (
        "import resource, subprocess, sys\n"
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, *args], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip()) / 1024


def small_files(tmp: Path, runs: int, mi: list[str]) -> tuple[float, float, float, float, Path]:
    tree = make_empty_tree(tmp / "t200k", 200_000)
    out = tmp / "m.json"
    cores = os.cpu_count() or 1
    baseline = f"find . -type f -print0 | xargs -0 -P{cores} sha256sum > /dev/null"
    ours_t: list[float] = []
    base_t: list[float] = []
    ours_c: list[float] = []
    base_c: list[float] = []
    timed(baseline, cwd=tree)  # warm the dentry and inode caches for both
    for _ in range(runs):
        ours_t.append(timed([*mi, "manifest", str(tree), "--output", str(out), "--rehash"]))
        ours_c.append(CPU[0])
        base_t.append(timed(baseline, cwd=tree))
        base_c.append(CPU[0])
    med = statistics.median
    return med(ours_t), med(base_t), med(ours_c), med(base_c), tree


def memory(tmp: Path, tree_200k: Path, big: int, mi: list[str]) -> list[tuple[str, float]]:
    out = tmp / "m.json"
    rows = [
        (
            "in-memory path (table output), 200,000 files",
            peak_rss_mb([*mi, "manifest", str(tree_200k), "--rehash"]),
        ),
        (
            "streaming (--output), 200,000 files",
            peak_rss_mb([*mi, "manifest", str(tree_200k), "--output", str(out), "--rehash"]),
        ),
    ]
    if big > 200_000:
        tree = make_empty_tree(tmp / "tbig", big)
        rows.append(
            (
                f"streaming (--output), {big:,} files",
                peak_rss_mb([*mi, "manifest", str(tree), "--output", str(out), "--rehash"]),
            )
        )
        shutil.rmtree(tree)
    return rows


def dask_rates(tree: Path) -> tuple[float, float, int, int]:
    """(one worker's bytes/s, the client's files/s, files, bytes), measured in process."""
    from ml_integrity.core import streaming
    from ml_integrity.engines import dask as engine

    t0 = time.perf_counter()
    parts = list(engine.partitions(streaming.walk(tree), follow_symlinks=False))
    client_s = time.perf_counter() - t0
    files = sum(len(p) for p in parts)
    size = sum(f[2] for p in parts for f in p)
    t0 = time.perf_counter()
    for p in parts:
        kind, _ = engine.hash_partition(str(tree), p, False)
        assert kind == "ok"
    worker_s = time.perf_counter() - t0
    return size / worker_s, files / client_s, files, size


def dask_vs_threads(tmp: Path, runs: int, mi: list[str]) -> dict[str, float]:
    tree = make_data_tree(tmp / "t2g", 20_000, 100 << 10)
    out_t, out_d = tmp / "threads.json", tmp / "dask.json"
    timed(f"find {tree} -type f -print0 | xargs -0 cat > /dev/null")  # warm page cache
    threads_t: list[float] = []
    dask_t: list[float] = []
    for _ in range(runs):
        threads_t.append(timed([*mi, "manifest", str(tree), "-o", str(out_t), "--rehash"]))
        dask_t.append(
            timed(
                [*mi, "manifest", str(tree), "-o", str(out_d), "--engine", "dask", "--workers", "2"]
            )
        )
    if out_t.read_bytes() != out_d.read_bytes():
        raise SystemExit("the Dask manifest differs from the threaded one")
    t0 = time.perf_counter()
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster),
    ):
        startup = time.perf_counter() - t0
    worker_rate, client_rate, files, size = dask_rates(tree)
    shutil.rmtree(tree)
    return {
        "threads": statistics.median(threads_t),
        "dask": statistics.median(dask_t),
        "startup": startup,
        "worker_rate": worker_rate,
        "client_rate": client_rate,
        "files": files,
        "bytes": size,
    }


SHARD_SIZE = 256 << 20


def _payload(bundle: Path) -> bytes:
    import base64
    import json

    return base64.b64decode(json.loads(bundle.read_text())["dsseEnvelope"]["payload"])


def dask_shards(tmp: Path, runs: int, mi: list[str]) -> dict[str, float]:
    """One 2 GiB file signed in shards: the threaded engine against --engine dask."""
    big = tmp / "big.bin"
    block = os.urandom(64 << 20)
    with open(big, "wb") as f:
        for i in range(32):
            f.write(i.to_bytes(8, "little") + block[8:])
    key = tmp / "key.pem"
    timed([*mi, "keygen", "--out", str(key), "--type", "ec-p256"])
    timed(f"cat {big} > /dev/null")  # warm page cache
    sign = [*mi, "sign", str(big), "--key", str(key), "--shard-size", str(SHARD_SIZE)]
    out_t, out_d = tmp / "threads.sig", tmp / "dask.sig"
    out_s = tmp / "scheduler.sig"
    rows: dict[str, list[float]] = {
        k: [] for k in ("threads", "dask", "running", "threads_cpu", "dask_cpu", "running_cpu")
    }
    from distributed import Client, LocalCluster

    def workers_cpu(client: Client) -> float:
        return sum(client.run(time.process_time).values())

    # a cluster that is already running (its start-up not counted): --scheduler;
    # its CPU row adds the workers' process time to the client's
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster) as probe,
    ):
        running = ["--engine", "dask", "--scheduler", str(cluster.scheduler_address)]
        local = ["--engine", "dask", "--workers", "2"]
        for _ in range(runs):
            rows["threads"].append(timed([*sign, "--bundle", str(out_t), "--overwrite"]))
            rows["threads_cpu"].append(CPU[0])
            rows["dask"].append(timed([*sign, "--bundle", str(out_d), "--overwrite", *local]))
            rows["dask_cpu"].append(CPU[0])
            before = workers_cpu(probe)
            rows["running"].append(timed([*sign, "--bundle", str(out_s), "--overwrite", *running]))
            rows["running_cpu"].append(CPU[0] + workers_cpu(probe) - before)
    if not _payload(out_t) == _payload(out_d) == _payload(out_s):
        raise SystemExit("the Dask shard statement differs from the threaded one")
    size = big.stat().st_size
    big.unlink()
    out: dict[str, float] = {k: statistics.median(v) for k, v in rows.items()}
    out["bytes"] = size
    return out


def print_shards(d: dict[str, float]) -> None:
    print(
        f"\n| one file of {d['bytes'] / 2**30:.0f} GiB, sign --shard-size {SHARD_SIZE} "
        "(8 shards, warm cache) | wall seconds (median) | CPU seconds (median) |"
    )
    print("| --- | ---: | ---: |")
    print(f"| threaded engine | {d['threads']:.2f} | {d['threads_cpu']:.2f} |")
    print(
        "| --engine dask --workers 2 (LocalCluster start-up included) | "
        f"{d['dask']:.2f} | {d['dask_cpu']:.2f} |"
    )
    print(
        f"| overhead on {os.cpu_count()} cores | {d['dask'] / d['threads']:.2f}x | "
        f"{d['dask_cpu'] / d['threads_cpu']:.2f}x |"
    )
    print(
        "| --engine dask --scheduler (a running LocalCluster of 2 workers; CPU: the client "
        f"and the workers) | {d['running']:.2f} | {d['running_cpu']:.2f} |"
    )
    print(
        f"| overhead on {os.cpu_count()} cores, cluster already running | "
        f"{d['running'] / d['threads']:.2f}x | {d['running_cpu'] / d['threads_cpu']:.2f}x |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--big-files", type=int, default=2_000_000)
    ap.add_argument("--skip-dask", action="store_true")
    ap.add_argument("--only-shards", action="store_true", help="only case 4 (Dask shards)")
    ap.add_argument("--tmp", type=Path, default=None)
    args = ap.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()}, "
        f"Python {platform.python_version()}; load average "
        + " ".join(f"{x:.1f}" for x in os.getloadavg())
    )
    mi = command()
    tmp = Path(tempfile.mkdtemp(prefix="ml-integrity-scale-", dir=args.tmp))
    if args.only_shards:
        try:
            print_shards(dask_shards(tmp, args.runs, mi))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    try:
        ours, base, ours_cpu, base_cpu, tree = small_files(tmp, args.runs, mi)
        cores = os.cpu_count() or 1
        print("\n| 200,000 empty files | wall seconds (median) | CPU seconds (median) |")
        print("| --- | ---: | ---: |")
        print(f"| ml-integrity manifest --output --rehash | {ours:.2f} | {ours_cpu:.2f} |")
        print(f"| find \\| xargs -0 -P{cores} sha256sum | {base:.2f} | {base_cpu:.2f} |")
        print(f"| ratio (target <= 1.5) | {ours / base:.2f}x | {ours_cpu / base_cpu:.2f}x |")
        rows = memory(tmp, tree, args.big_files, mi)
        shutil.rmtree(tree)
        print("\n| peak RSS | MB |")
        print("| --- | ---: |")
        for label, mb in rows:
            print(f"| {label} | {mb:.0f} |")
        if not args.skip_dask:
            d = dask_vs_threads(tmp, args.runs, mi)
            print(f"\n| {d['files']:,} files, {d['bytes'] / 1e9:.2f} GB (warm cache) | seconds |")
            print("| --- | ---: |")
            print(f"| threaded engine | {d['threads']:.2f} |")
            print(
                f"| --engine dask --workers 2 (LocalCluster start-up included) | {d['dask']:.2f} |"
            )
            print(f"| overhead | {d['dask'] / d['threads']:.2f}x |")
            print(f"| LocalCluster start-up alone | {d['startup']:.2f} |")
            print(f"| one worker's hashing rate | {d['worker_rate'] / 1e9:.2f} GB/s |")
            print(
                f"| the client's rate (walk, lstat, partitions) | {d['client_rate']:,.0f} files/s |"
            )
            print(
                "\nestimate (not a measurement) from the two rates above, 2 workers per "
                "machine, storage assumed to keep up; the same file mix x500 "
                "(10,000,000 files, 1 TB):"
            )
            print("| machines | estimated seconds | speed-up vs 1 machine |")
            print("| ---: | ---: | ---: |")
            one = 0.0
            for n in (1, 2, 4, 8, 16, 32, 64):
                hashing = 500 * d["bytes"] / (n * 2 * d["worker_rate"])
                feeding = 500 * d["files"] / d["client_rate"]
                est = max(hashing, feeding) + d["startup"]
                one = one or est
                print(f"| {n} | {est:.0f} | {one / est:.1f}x |")
            print_shards(dask_shards(tmp, args.runs, mi))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
