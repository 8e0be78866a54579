"""Benchmark: Git LFS clone with and without ml-integrity, and pointer-level verification.

One run measures, on this machine and in the same conditions:

1. clone of a repository with N (default 2,000) LFS files from a local bare
   remote: plain git + git-lfs, then ``ml-integrity clone`` (filter wrapper,
   transfer agent, hooks, final check). Runs alternate; the medians count,
   of wall time and of CPU time (user + sys of every process). Target (issue
   12): both ratios <= 1.15.
2. ``ml-integrity verify --git-repo`` on a repository with M (default
   5,000) LFS pointers and B (default 5,000) small ordinary files (the
   manifest covers the whole tree: ordinary blobs by the sha256 of their
   content): the whole command, interpreter start-up included, with cold
   caches (verification and blob caches removed) and warm ones. Target warm:
   < 0.5 s.

Usage: .venv/bin/python bench/lfs.py [--files 2000] [--pointers 5000] [--blobs 5000]
       [--runs 3] [--skip-clone]
"""

from __future__ import annotations

import argparse
import hashlib
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


def sh(args: list[str], cwd: Path, env: dict[str, str], quiet: bool = True) -> None:
    subprocess.run(
        args,
        cwd=cwd,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL if quiet else None,
        stderr=subprocess.DEVNULL if quiet else None,
    )


CPU: dict[str, list[float]] = {}


def timed(args: list[str], cwd: Path, env: dict[str, str], label: str = "") -> float:
    """Wall time of a command; its CPU time (user+sys, all its processes) goes to CPU[label]."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    dt = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    CPU.setdefault(label, []).append(cpu)
    return dt


def make_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "ML_INTEGRITY_"))}
    home.mkdir(parents=True)
    (home / ".gitconfig").write_text(
        "[init]\n\tdefaultBranch = main\n[user]\n\tname = Bench\n\temail = bench@example.com\n"
        '[protocol "file"]\n\tallow = always\n'
        "[gc]\n\tauto = 0\n"  # no background gc racing the explicit one
    )
    env.update(HOME=str(home), GIT_CONFIG_GLOBAL=str(home / ".gitconfig"), GIT_CONFIG_NOSYSTEM="1")
    sh(["git", "lfs", "install", "--skip-repo"], home, env)
    return env


MI = [sys.executable, "-m", "ml_integrity"]


def build_clone_repo(root: Path, env: dict[str, str], n: int) -> tuple[Path, Path]:
    sh([*MI, "keygen", "--out", str(root / "k.pem")], root, env)
    author = root / "author"
    sh(["git", "init", "-q", str(author)], root, env)
    sh(["git", "lfs", "track", "*.bin"], author, env)
    for i in range(n):
        d = author / "data" / f"d{i // 100:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}.bin").write_bytes(hashlib.sha256(str(i).encode()).digest() * 128)  # 4 KiB
    sh(["git", "add", "."], author, env)
    sh([*MI, "sign-repo", "--key", str(root / "k.pem")], author, env)
    sh(["git", "commit", "-q", "-m", "data"], author, env)
    remote = root / "remote.git"
    sh(["git", "init", "-q", "--bare", str(remote)], root, env)
    sh(["git", "remote", "add", "origin", str(remote)], author, env)
    sh(["git", "push", "-q", "origin", "main"], author, env, quiet=False)
    return remote, root / "k.pem.pub"


def bench_clone(
    root: Path, env: dict[str, str], n: int, runs: int
) -> tuple[list[float], list[float]]:
    remote, pub = build_clone_repo(root, env, n)
    plain, ours = [], []
    for i in range(runs):
        dest = root / f"plain{i}"
        plain.append(timed(["git", "clone", "-q", str(remote), str(dest)], root, env, "plain"))
        dest2 = root / f"ours{i}"
        ours.append(
            timed([*MI, "clone", str(remote), str(dest2), "--key", str(pub)], root, env, "ours")
        )
        if i == 0:  # every file, as plain git-lfs wrote it
            files = sorted(p.relative_to(dest) for p in (dest / "data").rglob("*.bin"))
            assert len(files) == n
            for name in files:
                assert (dest2 / name).read_bytes() == (dest / name).read_bytes(), name
                assert len((dest2 / name).read_bytes()) == 4096
        shutil.rmtree(dest)
        shutil.rmtree(dest2)
    return plain, ours


def bench_verify(root: Path, env: dict[str, str], m: int, blobs: int) -> tuple[float, float, float]:
    sh([*MI, "keygen", "--out", str(root / "k.pem")], root, env)
    repo = root / "pointers"
    sh(["git", "init", "-q", str(repo)], root, env)
    for i in range(m):
        d = repo / "data" / f"d{i // 500:02d}"
        d.mkdir(parents=True, exist_ok=True)
        oid = hashlib.sha256(f"object {i}".encode()).hexdigest()
        (d / f"f{i:05d}.bin").write_text(
            f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {16384 + i}\n"
        )
    for i in range(blobs):
        d = repo / "code" / f"c{i // 500:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"m{i:05d}.py").write_text(f"# module {i}\nVALUE = {i}\n" * 8)
    sh(["git", "add", "."], repo, env)
    sh([*MI, "sign-repo", "--key", str(root / "k.pem")], repo, env)
    sh(["git", "commit", "-q", "-m", "pointers"], repo, env)
    sh(["git", "gc", "-q"], repo, env, quiet=False)
    sh(["git", "config", "ml-integrity.publicKey", str(root / "k.pem.pub")], repo, env)
    cmd = [*MI, "verify", "--git-repo"]
    cache = repo / ".git" / "ml-integrity" / "cache"
    blob_cache = repo / ".git" / "ml-integrity" / "blobs.json"
    cold = []
    for _ in range(3):
        shutil.rmtree(cache, ignore_errors=True)
        blob_cache.unlink(missing_ok=True)
        cold.append(timed(cmd, repo, env))
    warm = [timed(cmd, repo, env) for _ in range(3)]
    startup = [timed([*MI, "--version"], repo, env) for _ in range(3)]
    return statistics.median(cold), statistics.median(warm), statistics.median(startup)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--pointers", type=int, default=5000)
    ap.add_argument("--blobs", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-clone", action="store_true", help="only the verify measurement")
    args = ap.parse_args()
    git_v = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    lfs_v = subprocess.run(
        ["git", "lfs", "version"], capture_output=True, text=True
    ).stdout.split()[0]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()}, "
        f"Python {platform.python_version()}, {git_v}, {lfs_v}; load average "
        + " ".join(f"{x:.1f}" for x in os.getloadavg())
    )
    # a pip install byte-compiles the package; an editable checkout may not have, and
    # PYTHONDONTWRITEBYTECODE would make every run recompile: compile once, as pip does
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(Path(__file__).parent.parent / "src")],
        check=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-lfs-") as tmp:
        root = Path(tmp)
        env = make_env(root / "home")
        if not args.skip_clone:
            (root / "clone").mkdir()
            plain, ours = bench_clone(root / "clone", env, args.files, args.runs)
        (root / "verify").mkdir()
        cold, warm, startup = bench_verify(root / "verify", env, args.pointers, args.blobs)
    print()
    print("| measurement | time | target |")
    print("| --- | --- | --- |")
    if not args.skip_clone:
        _clone_rows(args.files, args.runs, plain, ours)
    what = f"{args.pointers} LFS pointers + {args.blobs} ordinary files"
    print(f"| `verify --git-repo`, {what}, cold caches | {cold:.2f} s | |")
    print(
        f"| `verify --git-repo`, {what}, warm caches | {warm:.2f} s | "
        f"< 0.5 s {'OK' if warm < 0.5 else 'MISSED'} |"
    )
    print(f"| interpreter + CLI start-up (`ml-integrity --version`) | {startup:.2f} s | |")
    print("load average after the run: " + " ".join(f"{x:.1f}" for x in os.getloadavg()))


def _clone_rows(files: int, runs: int, plain_runs: list[float], ours_runs: list[float]) -> None:
    plain, ours = statistics.median(plain_runs), statistics.median(ours_runs)
    ratio = ours / plain
    print(f"| clone, {files} LFS files, plain git-lfs (median of {runs}) | {plain:.2f} s | |")
    print(f"| clone, {files} LFS files, `ml-integrity clone` | {ours:.2f} s | |")
    print(
        f"| wall-time ratio ml-integrity / plain | {ratio:.2f}x "
        f"| <= 1.15x {'OK' if ratio <= 1.15 else 'MISSED'} |"
    )
    cpu_plain, cpu_ours = statistics.median(CPU["plain"]), statistics.median(CPU["ours"])
    cpu_ratio = cpu_ours / cpu_plain
    print(
        f"| CPU-time ratio (user+sys, all processes): {cpu_ours:.2f} s / {cpu_plain:.2f} s "
        f"| {cpu_ratio:.2f}x | <= 1.15x {'OK' if cpu_ratio <= 1.15 else 'MISSED'} |"
    )
    # each plain clone beside the ml-integrity clone run right after it: less sensitive to
    # bursts of load from other jobs than the ratio of the two medians
    walls = [o / p for p, o in zip(plain_runs, ours_runs, strict=True)]
    cpus = [o / p for p, o in zip(CPU["plain"], CPU["ours"], strict=True)]
    print(
        f"| median of the {runs} run-by-run ratios: wall / CPU "
        f"| {statistics.median(walls):.2f}x / {statistics.median(cpus):.2f}x | |"
    )


if __name__ == "__main__":
    main()
