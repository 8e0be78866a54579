"""Generated trees for the engine tests: nested folders, unicode names, sizes
on both sides of the small-file limit, empty files, formats to sniff."""

from __future__ import annotations

import os
import random
from pathlib import Path

from ml_integrity.engines.threads import SMALL_FILE


def make_tree(root: Path, *, dirs: int = 12, files_per_dir: int = 40, seed: int = 7) -> Path:
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    names = ["a", "a-b", "a.b", "A", "z", "caf\u00e9", "\u00fcber", "x y", "_"]
    for d in range(dirs):
        depth = rng.randint(0, 3)
        folder = root.joinpath(*(rng.choice(names) + str(d % 3) for _ in range(depth)))
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(files_per_dir):
            kind = rng.random()
            if kind < 0.2:
                data = b""
            elif kind < 0.3:
                data = b"\x80\x04\x95" + os.urandom(rng.randint(1, 100))  # a pickle start
            elif kind < 0.35:
                data = os.urandom(SMALL_FILE + rng.randint(1, 4096))  # the large-file path
            else:
                data = os.urandom(rng.randint(1, 5000))
            (folder / f"{rng.choice(names)}{d}-{i}.bin").write_bytes(data)
    return root
