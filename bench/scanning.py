"""Benchmark: ``ml-integrity scan`` against picklescan and modelscan, in one run.

Inputs are generated (into --workdir, default a temporary directory):

1. a ~1 GB PyTorch-format checkpoint (zipfile, ``archive/data.pkl`` plus
   tensor storages), the layout ``torch.save`` writes;
2. a 1 GiB plain pickle of large byte blobs (``pickle.dump``, protocol 4);
3. a folder of 1,000 small pickles.

Each tool runs as its command line (start-up included, our package
byte-compiled first as ``pip install`` does), three times per input;
the faster run counts (the page cache is warm for every tool). Ours runs in
``--pickle allowlist`` mode, which judges globals as the other two do.
Prints seconds and the ratio other/ours (above 1: ours is faster).
``--baseline SRC`` adds a previous version of ml-integrity (its ``src``
folder, for example from ``git worktree add``) as one more tool.

    .venv/bin/python bench/scanning.py [--workdir DIR] [--keep] [--baseline SRC]
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.scan.make_corpus import TorchPickler

BIN = Path(sys.executable).parent


def torch_checkpoint(path: Path, total: int = 1_000_000_000, tensors: int = 100) -> None:
    """A state_dict of ``tensors`` float32 tensors adding up to ``total`` bytes."""
    per = total // tensors // 4
    p = TorchPickler()
    p.ordered_dict()
    p.out += b"("
    for i in range(tensors):
        p.s(f"layers.{i}.weight")
        p.tensor("FloatStorage", str(i), (per,))
    p.out += b"u."
    chunk = bytes(range(256)) * 4096
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        z.writestr("archive/data.pkl", bytes(p.out))
        z.writestr("archive/byteorder", b"little")
        for i in range(tensors):
            with z.open(f"archive/data/{i}", "w", force_zip64=True) as f:
                left = per * 4
                while left:
                    n = min(left, len(chunk))
                    f.write(chunk[:n])
                    left -= n
        z.writestr("archive/version", b"3\n")


def blob_pickle(path: Path, total: int = 1 << 30, blobs: int = 16) -> None:
    with open(path, "wb") as f:
        pickle.dump([bytes(total // blobs) for _ in range(blobs)], f, protocol=4)


def small_pickles(folder: Path, n: int = 1000) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        obj = {"id": i, "values": list(range(50)), "name": f"item-{i}" * 5, "w": [0.5] * 20}
        with open(folder / f"{i:04d}.pkl", "wb") as f:
            pickle.dump(obj, f, protocol=4)


def tools(baseline: Path | None = None) -> dict[str, list[str]]:
    out = {"ml-integrity": [sys.executable, "-m", "ml_integrity", "scan", "--pickle", "allowlist"]}
    if baseline is not None:
        out["previous"] = [
            "env",
            f"PYTHONPATH={baseline}",
            *out["ml-integrity"],
        ]
    for name, args in (("picklescan", ["-p"]), ("modelscan", ["-p"])):
        exe = BIN / name
        if exe.exists() or shutil.which(name):
            out[name] = [str(exe if exe.exists() else shutil.which(name)), *args]
        else:
            print(f"{name}: not installed, skipped (pip install '.[test]')", file=sys.stderr)
    return out


def timed(cmd: list[str], target: Path) -> tuple[float, int]:
    best = float("inf")
    code = 0
    for _ in range(3):
        start = time.perf_counter()
        proc = subprocess.run([*cmd, str(target)], capture_output=True, check=False)
        best = min(best, time.perf_counter() - start)
        code = proc.returncode
    return best, code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the generated inputs")
    parser.add_argument("--baseline", type=Path, help="src folder of a previous ml-integrity")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-scan-"))
    work.mkdir(parents=True, exist_ok=True)
    inputs = {
        "PyTorch zip checkpoint (~1 GB)": (work / "model.pt", torch_checkpoint),
        "plain pickle of byte blobs (1 GiB)": (work / "blobs.pkl", blob_pickle),
        "1,000 small pickles (folder)": (work / "small", small_pickles),
    }
    # a pip install byte-compiles the package; an editable checkout may not have, and
    # PYTHONDONTWRITEBYTECODE would make every run recompile: compile once, as pip does
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(Path(__file__).parent.parent / "src")],
        check=True,
    )
    try:
        for target, make in inputs.values():
            if not target.exists():
                make(target)
        if args.baseline is not None:
            subprocess.run(
                [sys.executable, "-m", "compileall", "-q", str(args.baseline)], check=True
            )
        runners = tools(args.baseline)
        py = platform.python_version()
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {py}")
        header = (
            "| input | "
            + " | ".join(f"{t} (s)" for t in runners)
            + " | "
            + " | ".join(f"{t} / ours" for t in runners if t != "ml-integrity")
            + " |"
        )
        print(header)
        print("|" + " --- |" * (header.count("|") - 1))
        for label, (target, _) in inputs.items():
            times = {}
            for name, cmd in runners.items():
                times[name], _code = timed(cmd, target)
            ours = times["ml-integrity"]
            cells = [f"{times[n]:.3f}" for n in runners]
            ratios = [f"{times[n] / ours:.1f}x" for n in runners if n != "ml-integrity"]
            print(f"| {label} | " + " | ".join(cells + ratios) + " |", flush=True)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
