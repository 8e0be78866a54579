"""Benchmark: our pre-commit hooks' time for a commit touching one file in a large repository.

Set-up (not timed): a repository with N (default 10,000) files in 100
folders, half of them Git LFS files and half small ordinary files
(``--blob-share``; the manifest covers both), signed (``ml-integrity
sign-repo``) and committed; trust from git config (``ml-integrity.publicKey``).
Then one LFS file gets new content, is staged and signed again: the state in
which ``git commit`` runs its hooks.

Timed, each command as the hook runs it (the console script, start-up
included), against that staged state:

- ``ml-integrity scan --staged --only-paths -- FILE`` (pre-commit passes the one
  staged file after ``--``),
- ``ml-integrity manifest --staged --check``,
- ``ml-integrity verify --staged``,
- ``ml-integrity check-staged --only-paths -- FILE`` (the three in one process:
  the ``ml-integrity`` hook),

"warm" (the usual case: the caches in ``.git/ml-integrity/`` that the previous
commit's hooks left: which blobs are LFS pointers, verified signatures) and
"cold" (caches removed before each run: the first commit after a clone).
Our time: the one-process hook, and the three single hooks together (sum of
medians); target < 300 ms (warm).

Baseline, measured in the same run: the plain ``git commit --no-verify`` of
the same staged state (undone with ``git reset --soft`` between runs), and the
interpreter start-up (``python -c pass``).

Usage: .venv/bin/python bench/hooks.py [--files 10000] [--runs 7]
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
from collections.abc import Callable
from pathlib import Path


def sh(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


CPU: list[float] = []
"""CPU time (user + sys of the command and its children, git included) of the last timed()."""


def timed(args: list[str], cwd: Path, env: dict[str, str], expect: int = 0) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    dt = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != expect:
        raise SystemExit(f"{args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    CPU.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return dt


def median_of(runs: int, once: Callable[[], float]) -> float:
    return statistics.median(once() for _ in range(runs))


def interleaved(
    runs: int, probes: dict[str, Callable[[], float]]
) -> dict[str, tuple[float, float]]:
    """name -> (median wall time, median CPU time); the probes take turns, so that the
    load of a shared machine falls on all of them alike."""
    walls: dict[str, list[float]] = {name: [] for name in probes}
    cpus: dict[str, list[float]] = {name: [] for name in probes}
    for _ in range(runs):
        for name, probe in probes.items():
            walls[name].append(probe())
            cpus[name].append(CPU[-1])
    return {n: (statistics.median(walls[n]), statistics.median(cpus[n])) for n in probes}


def make_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "ML_INTEGRITY_"))}
    home.mkdir(parents=True)
    (home / ".gitconfig").write_text(
        "[init]\n\tdefaultBranch = main\n[user]\n\tname = Bench\n\temail = bench@example.com\n"
        "[gc]\n\tauto = 0\n"
    )
    env.update(HOME=str(home), GIT_CONFIG_GLOBAL=str(home / ".gitconfig"), GIT_CONFIG_NOSYSTEM="1")
    sh(["git", "lfs", "install", "--skip-repo"], home, env)
    return env


def command() -> list[str]:
    """The console script next to this interpreter (what the hooks run), else ``-m``."""
    script = Path(sys.executable).parent / "ml-integrity"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "ml_integrity"]


def build(root: Path, env: dict[str, str], n: int, blob_share: float) -> tuple[Path, Path]:
    mi = command()
    key = root / "k.pem"
    sh([*mi, "keygen", "--out", str(key)], root, env)
    repo = root / "repo"
    sh(["git", "init", "-q", str(repo)], root, env)
    sh(["git", "lfs", "track", "*.bin"], repo, env)
    blobs = int(n * blob_share)
    for i in range(n):
        d = repo / "models" / f"d{i // 100:02d}"
        d.mkdir(parents=True, exist_ok=True)
        name = f"f{i:05d}.txt" if i >= n - blobs else f"f{i:05d}.bin"
        (d / name).write_bytes(f"weights {i}\n".encode() * 16)
    t0 = time.perf_counter()
    sh(["git", "add", "."], repo, env)
    print(f"set-up: git add of {n} LFS files took {time.perf_counter() - t0:.1f} s", flush=True)
    sh([*mi, "sign-repo", "--key", str(key)], repo, env)
    sh(["git", "commit", "-q", "--no-verify", "-m", "models"], repo, env)
    sh(["git", "gc", "-q"], repo, env)
    sh(["git", "config", "ml-integrity.publicKey", str(root / "k.pem.pub")], repo, env)
    # the commit being made: one file changes, is staged and signed again
    touched = "models/d42/f04242.bin"  # an LFS file (below the ordinary share)
    (repo / touched).write_bytes(b"retrained weights\n" * 16)
    sh(["git", "add", touched], repo, env)
    sh([*mi, "sign-repo", "--key", str(key)], repo, env)
    return repo, Path(touched)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--blob-share", type=float, default=0.5, help="share of ordinary files")
    args = ap.parse_args()
    git_v = sh(["git", "--version"], Path.cwd(), dict(os.environ)).strip()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()}, "
        f"Python {platform.python_version()}, {git_v}; load average "
        + " ".join(f"{x:.1f}" for x in os.getloadavg())
    )
    mi = command()
    # a pip install byte-compiles the package; an editable checkout may not have, and
    # PYTHONDONTWRITEBYTECODE would make every run recompile: compile once, as pip does
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(Path(__file__).parent.parent / "src")],
        check=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-hooks-") as tmp:
        root = Path(tmp)
        env = make_env(root / "home")
        repo, touched = build(root, env, args.files, args.blob_share)
        state = repo / ".git" / "ml-integrity"
        hooks = {
            "scan": [*mi, "scan", "--staged", "--only-paths", "--", str(touched)],
            "manifest": [*mi, "manifest", "--staged", "--check"],
            "signed": [*mi, "verify", "--staged"],
            "all": [*mi, "check-staged", "--only-paths", "--", str(touched)],
        }

        def cold(cmd: list[str]) -> Callable[[], float]:
            def once() -> float:
                shutil.rmtree(state, ignore_errors=True)
                return timed(cmd, repo, env)

            return once

        def warm(cmd: list[str]) -> Callable[[], float]:
            return lambda: timed(cmd, repo, env)

        def plain_commit() -> float:
            dt = timed(["git", "commit", "-q", "--no-verify", "-m", "one file"], repo, env)
            cpu = CPU[-1]
            sh(["git", "reset", "-q", "--soft", "HEAD~1"], repo, env)
            CPU.append(cpu)
            return dt

        colds = interleaved(max(3, args.runs // 2), {n: cold(c) for n, c in hooks.items()})
        timed(hooks["all"], repo, env)  # leaves the caches warm
        probes = {n: warm(c) for n, c in hooks.items()}
        probes["plain"] = plain_commit
        probes["python"] = warm([sys.executable, "-c", "pass"])
        probes["startup"] = warm([*mi, "--version"])
        warms = interleaved(args.runs, probes)

    ms = 1000.0

    def cell(value: tuple[float, float]) -> str:
        return f"{value[0] * ms:.0f} ms ({value[1] * ms:.0f} ms)"

    def total(table: dict[str, tuple[float, float]], names: tuple[str, ...]) -> tuple[float, float]:
        return sum(table[n][0] for n in names), sum(table[n][1] for n in names)

    print()
    print(
        f"One staged LFS file in a repository of {args.files:,} files "
        f"({args.blob_share:.0%} ordinary, the rest LFS). Each command "
        f"is a whole process, start-up included; median of {args.runs} (cold: "
        f"{max(3, args.runs // 2)}) interleaved runs; wall time (CPU time: user + sys, git "
        "included)."
    )
    print()
    print("| hook: command | warm caches | cold caches |")
    print("| --- | --- | --- |")
    labels = {
        "scan": f"ml-integrity-scan: `scan --staged --only-paths -- {touched}`",
        "manifest": "ml-integrity-manifest: `manifest --staged --check`",
        "signed": "ml-integrity-signed: `verify --staged`",
        "all": f"ml-integrity (the three in one process): `check-staged --only-paths -- {touched}`",
    }
    singles = ("scan", "manifest", "signed")
    for name in singles:
        print(f"| {labels[name]} | {cell(warms[name])} | {cell(colds[name])} |")
    three_w, three_c = total(warms, singles), total(colds, singles)
    print(f"| the three single hooks together | {cell(three_w)} | {cell(three_c)} |")
    print(f"| {labels['all']} | {cell(warms['all'])} | {cell(colds['all'])} |")
    plain = warms["plain"]
    print(f"| plain `git commit --no-verify` of the same change | {cell(plain)} | |")
    print(
        "| overhead over the plain commit, wall: one hook / three hooks "
        f"| {warms['all'][0] / plain[0]:.1f}x / {three_w[0] / plain[0]:.1f}x "
        f"| {colds['all'][0] / plain[0]:.1f}x / {three_c[0] / plain[0]:.1f}x |"
    )
    print(f"| interpreter start-up (`python -c pass`) | {cell(warms['python'])} | |")
    print(f"| CLI start-up (`ml-integrity --version`) | {cell(warms['startup'])} | |")
    print()
    for label, value in (
        ("one hook (ml-integrity)", warms["all"]),
        ("three single hooks", three_w),
    ):
        verdict = "met" if value[0] < 0.3 else "MISSED"
        print(f"target < 300 ms (warm, wall), {label}: {value[0] * ms:.0f} ms, {verdict}")


if __name__ == "__main__":
    main()
