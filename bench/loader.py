"""Benchmark: the verifying data loader against plain reads, in the same run.

Small files: N (default 10,000) files of 10 KB in 100 folders, signed with a
key (not timed). Timed, page cache warm, alternating runs, the dataset opened
(bundle verified, every signed path stat'ed) before the clock starts (that
one-time cost is reported on its own line), the read-ahead helper's start-up
inside the clock:

- baselines: ``open(path, "rb").read()`` for every file, in the signed order
  and in a shuffled order;
- first epoch (the stat cache empty, every item hashed), ``read_bytes`` for
  every file: in the signed order (``for p in ds.files``: the read-ahead
  predicts it), default and ``readahead=0``; in a shuffled order announced
  with ``ds.prefetch(order)`` (a sampler's order), or batch by batch (64
  items per ``prefetch``, as the torch adapter's ``__getitems__`` does); in a
  shuffled order without a hint (nothing to predict: the caller alone);
- second epoch: the default dataset again, served from the stat cache.
  Targets: first epoch <= 1.5x the baseline, second <= 1.1x. The 1-minute
  load average is printed: without a spare core the helper cannot help.
- CPU time per item: of the calling thread (``time.thread_time``) for plain
  reads, the system calls alone, SHA-256 of 10 KB alone, both (the floor for
  any reader that hashes in the caller's thread), ``read_bytes`` without and
  with read-ahead, and the helper process's own CPU time;
- why not threads: 10 KB items in one thread, then split over two threads
  (hashlib and the system calls release the GIL): SHA-256 of a buffer, and
  open + fstat + read + close + SHA-256 (what a read-ahead thread would do).

One large file (default 2 GiB), read in 1 MiB chunks:

- baseline: hashlib SHA-256 on one core over the same file, read in 1 MiB
  chunks (``readinto`` a reused buffer, then ``update``);
- ours: ``VerifiedDataset.open(...).read(1 MiB)`` until the end (hashing,
  withholding the last chunk). Target: at least 0.9x the baseline's speed.
  The hashing of an in-memory buffer (no reads at all) is printed too.

Usage: .venv/bin/python bench/loader.py [--files 10000] [--size-mb 2048] [--runs 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import random
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

BATCH = 64
"""Items per ``prefetch`` in the per-batch row (a DataLoader batch through the torch adapter)."""


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()}"


def small_files(root: Path, n: int) -> list[str]:
    paths = []
    for i in range(n):
        rel = f"d{i % 100:02d}/f{i:06d}.bin"
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(10 * 1024))
        paths.append(rel)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--size-mb", type=int, default=2048)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ml-integrity-bench-loader-"))
    os.environ["XDG_CACHE_HOME"] = str(tmp / "cache")  # our own stat cache, removed after
    from ml_integrity.core import signing
    from ml_integrity.data import VerifiedDataset
    from ml_integrity.trust import keys

    try:
        key, pub = keys.generate(tmp / "key.pem", "ec-p256")
        data = tmp / "small"
        paths = small_files(data, args.files)
        signing.sign(data, keys.KeySigner(key), tmp / "small.sig")
        shutil.rmtree(tmp / "cache", ignore_errors=True)  # signing filled it: start cold
        time.sleep(0.3)  # past the stat cache's racy window

        def plain(order: list[str] = paths) -> None:
            for p in order:
                with open(os.path.join(data, p), "rb") as f:
                    f.read()

        signed_order = VerifiedDataset(data, bundle=tmp / "small.sig", key=pub).files
        shuffled = signed_order[:]
        random.Random(0).shuffle(shuffled)
        plain(signed_order)  # page cache warm
        configs = {  # name: (readahead=, order, hint: 0 none, 1 the whole order, N per N)
            "default": (None, signed_order, 0),
            "off": (0, signed_order, 0),
            "shuffled-hint": (None, shuffled, 1),
            "shuffled-batches": (None, shuffled, BATCH),
            "shuffled": (None, shuffled, 0),
        }
        base: dict[str, list[float]] = {"signed": [], "shuffled": []}
        opening: list[float] = []
        first: dict[str, list[float]] = {name: [] for name in configs}
        second: list[float] = []
        load_before = os.getloadavg()[0]
        for _ in range(args.runs):
            for name, order in (("signed", signed_order), ("shuffled", shuffled)):
                t = time.perf_counter()
                plain(order)
                base[name].append(time.perf_counter() - t)
            for name, (readahead, order, hint) in configs.items():
                shutil.rmtree(tmp / "cache", ignore_errors=True)
                t = time.perf_counter()
                ds = VerifiedDataset(data, bundle=tmp / "small.sig", key=pub, readahead=readahead)
                opening.append(time.perf_counter() - t)
                read = ds.read_bytes
                t = time.perf_counter()
                if hint == 1:
                    ds.prefetch(order)
                if hint > 1:  # as TorchDataset.__getitems__ does for each DataLoader batch
                    for i in range(0, len(order), hint):
                        batch = order[i : i + hint]
                        ds.prefetch(batch)
                        for p in batch:
                            read(p)
                else:
                    for p in order:
                        read(p)
                first[name].append(time.perf_counter() - t)
                if name == "default":
                    t = time.perf_counter()
                    for p in order:
                        read(p)
                    second.append(time.perf_counter() - t)
                    assert len(ds._verified) == len(paths), "the second epoch missed the cache"
                ds.close()
        # CPU time of the caller's thread per item (load-independent: no threads involved)
        flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
        blob = os.urandom(10 * 1024)
        full = [os.path.join(data, p) for p in signed_order]

        def os_read() -> None:
            for p in full:
                fd = os.open(p, flags)
                os.read(fd, os.fstat(fd).st_size + 1)
                os.close(fd)

        def sha_only() -> None:
            for _ in full:
                hashlib.sha256(blob).hexdigest()

        def os_read_sha() -> None:
            for p in full:
                fd = os.open(p, flags)
                data = os.read(fd, os.fstat(fd).st_size + 1)
                os.close(fd)
                hashlib.sha256(data).hexdigest()

        def read_bytes_cpu(readahead: int | None, label: str) -> None:
            shutil.rmtree(tmp / "cache", ignore_errors=True)
            ds = VerifiedDataset(data, bundle=tmp / "small.sig", key=pub, readahead=readahead)
            read = ds.read_bytes
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.thread_time()
            for p in signed_order:
                read(p)
            cpu[label].append(time.thread_time() - t)
            ds.close()  # reaps the helper: its CPU time is the children's now
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if readahead != 0:
                helper_cpu.append(
                    after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
                )

        cpu_fns = {
            "plain open().read()": lambda: plain(signed_order),
            "os.open + fstat + os.read + close": os_read,
            "hashlib.sha256(10 KB).hexdigest()": sha_only,
            "os.open ... close + sha256 (the floor in one thread)": os_read_sha,
        }
        off_label = "read_bytes, readahead=0, first epoch"
        on_label = "read_bytes, default (read-ahead), first epoch: the caller's thread"
        cpu: dict[str, list[float]] = {name: [] for name in (*cpu_fns, off_label, on_label)}
        helper_cpu: list[float] = []
        for _ in range(args.runs):
            for name, fn in cpu_fns.items():
                t = time.thread_time()
                fn()
                cpu[name].append(time.thread_time() - t)
            read_bytes_cpu(0, off_label)
            read_bytes_cpu(None, on_label)
        cpu_us = {name: statistics.median(x) / len(paths) * 1e6 for name, x in cpu.items()}
        helper_us = statistics.median(helper_cpu) / len(paths) * 1e6 if helper_cpu else 0.0

        # threads: one thread against two (the GIL's hand-over), hashing 10 KB buffers, and
        # opening, reading and hashing the files (what a read-ahead thread would do)
        def in_threads(threads: int, read_files: bool) -> float:
            parts = [full[i::threads] for i in range(threads)]

            def work(part: list[str]) -> None:
                for p in part:
                    if read_files:
                        fd = os.open(p, flags)
                        blob_read = os.read(fd, os.fstat(fd).st_size + 1)
                        os.close(fd)
                        hashlib.sha256(blob_read).digest()
                    else:
                        hashlib.sha256(blob).digest()

            ts = [threading.Thread(target=work, args=(part,)) for part in parts]
            t = time.perf_counter()
            for th in ts:
                th.start()
            for th in ts:
                th.join()
            return time.perf_counter() - t

        threaded = {
            (n, r): statistics.median(in_threads(n, r) for _ in range(args.runs))
            for r in (False, True)
            for n in (1, 2)
        }
        load_after = os.getloadavg()[0]
        b = {name: statistics.median(x) for name, x in base.items()}
        f2, o = statistics.median(second), statistics.median(opening)
        f1 = {name: statistics.median(x) for name, x in first.items()}

        big_root = tmp / "big"
        big_root.mkdir()
        big = big_root / "shard.bin"
        block = os.urandom(64 << 20)
        with open(big, "wb") as out:
            for _ in range(args.size_mb // 64):
                out.write(block)
        size = big.stat().st_size
        signing.sign(big_root, keys.KeySigner(key), tmp / "big.sig")
        big_ds = VerifiedDataset(big_root, bundle=tmp / "big.sig", key=pub, use_cache=False)
        chunk = 1 << 20

        def hashlib_file() -> None:
            h = hashlib.sha256()
            buf = bytearray(chunk)
            view = memoryview(buf)
            with open(big, "rb", buffering=0) as f:
                while n := f.readinto(buf):
                    h.update(view[:n])

        def ours_file() -> None:
            with big_ds.open("shard.bin") as f:
                while f.read(chunk):
                    pass

        mem = os.urandom(chunk)

        def hashlib_memory() -> None:
            h = hashlib.sha256()
            for _ in range(size // chunk):
                h.update(mem)

        hashlib_file()  # page cache warm
        hf, of, hm = [], [], []
        for _ in range(max(1, args.runs // 2 + 1)):
            for fn, acc in ((hashlib_file, hf), (ours_file, of), (hashlib_memory, hm)):
                t = time.perf_counter()
                fn()
                acc.append(time.perf_counter() - t)
        th, to, tm = (statistics.median(x) for x in (hf, of, hm))
        gb = size / 1e9
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"machine: {machine()}")
    print(f"command: {sys.executable} bench/loader.py --files {args.files} "
          f"--size-mb {args.size_mb} --runs {args.runs}")  # fmt: skip
    print()
    print(f"load average (1 min): {load_before:.1f} before, {load_after:.1f} after")
    print()
    print(f"| {args.files:,} files of 10 KB | median s | ratio to plain | target |")
    print("| --- | ---: | ---: | --- |")
    print(f"| plain open().read(), signed order | {b['signed']:.3f} | 1.00x | |")
    print(f"| plain open().read(), shuffled order | {b['shuffled']:.3f} | 1.00x | |")
    rows = [
        ("default", "signed", "read_bytes, first epoch, signed order, default (read-ahead)"),
        ("off", "signed", "read_bytes, first epoch, signed order, readahead=0"),
        ("shuffled-hint", "shuffled", "read_bytes, first epoch, shuffled, prefetch(order) first"),
        ("shuffled-batches", "shuffled", f"read_bytes, first epoch, shuffled, batches of {BATCH}"),
        ("shuffled", "shuffled", "read_bytes, first epoch, shuffled, no hint (caller alone)"),
    ]
    for name, baseline, label in rows:
        target = "<= 1.5x" if name in ("default", "shuffled-hint") else ""
        print(f"| {label} | {f1[name]:.3f} | {f1[name] / b[baseline]:.2f}x | {target} |")
    print(
        f"| read_bytes, second epoch (stat cache) | {f2:.3f} | {f2 / b['signed']:.2f}x | <= 1.1x |"
    )
    print(f"| opening the dataset (once: bundle, stat of every item) | {o:.3f} | | |")
    print()
    print("| CPU time per 10 KB item | us | ratio to plain |")
    print("| --- | ---: | ---: |")
    plain_us = cpu_us["plain open().read()"]
    for name, us in cpu_us.items():
        print(f"| {name} | {us:.2f} | {us / plain_us:.2f}x |")
    ratio = helper_us / plain_us
    print(f"| the read-ahead helper process (its own CPU) | {helper_us:.2f} | {ratio:.2f}x |")
    print()
    n_items = f"{len(paths):,}"
    print(f"| {n_items} items of 10 KB in threads | one thread, s | two threads, s | speed-up |")
    print("| --- | ---: | ---: | ---: |")
    for r, label in ((False, "SHA-256 of a buffer"), (True, "open, fstat, read, close, SHA-256")):
        one, two = threaded[(1, r)], threaded[(2, r)]
        print(f"| {label} | {one:.3f} | {two:.3f} | {one / two:.2f}x |")
    print()
    print(f"| one file of {gb:.2f} GB, 1 MiB reads | median s | GB/s | speed vs hashlib | target |")
    print("| --- | ---: | ---: | ---: | --- |")
    print(f"| hashlib SHA-256, one core (file reads) | {th:.2f} | {gb / th:.2f} | 1.00x | |")
    print(
        f"| VerifiedDataset.open().read() | {to:.2f} | {gb / to:.2f} | {th / to:.2f}x | >= 0.9x |"
    )
    print(
        f"| hashlib SHA-256, in memory (no reads) | {tm:.2f} | {gb / tm:.2f} | {th / tm:.2f}x | |"
    )


if __name__ == "__main__":
    main()
