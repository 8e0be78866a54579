"""Benchmark: encryption and decryption throughput against the AES-256-GCM primitive.

Set-up (not timed): a random plaintext file (default 2 GiB), read once so that
every timing is on a warm page cache; our ciphertext of it (1 MiB frames).

Timed on one core, every run in this process, best of ``--runs`` interleaved
runs, in CPU time (the ratios) and wall time:

- ours, encrypt: ``crypto.stream.encrypt_stream`` from the plaintext file to
  /dev/null (header, frame records, final frame);
- ours, decrypt: ``open_decrypted`` + its frames from the ciphertext file to
  /dev/null (header unwrap, commitment, header tag, every frame authenticated);
- ours, decrypt + SHA-256: what ``verify --decryption-key`` does per file;
- baseline, primitive with the same I/O: a bare loop of ``AESGCM.encrypt_into``
  / ``decrypt_into`` over the same 1 MiB frames, reading the same file and
  writing to /dev/null (no header, no framing);
- baseline, primitive in memory: the same calls over the same 2 GiB held in
  RAM (plaintext, or the primitive's own sealed frames), no file I/O at all;
- the machine limit: ``openssl speed -evp aes-256-gcm -bytes 1048576`` (one core).

The target (issue 14) is ours >= 0.8x the primitive on one core; the ratio is
printed against both baselines. With ``--files`` it also times
``encrypt_file``/``decrypt_file`` (temporary file, fsync, rename) against the
primitive loop writing a file and fsyncing it.

Usage: .venv/bin/python bench/crypto.py [--size-mb 2048] [--runs 3] [--files]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ml_integrity.crypto import keys, message, stream

FRAME = message.DEFAULT_FRAME


def measure(fns: dict[str, Callable[[], object]], runs: int) -> dict[str, tuple[float, float]]:
    """Best (wall, CPU) seconds of each function, the runs interleaved round-robin.

    Interleaving spreads a busy neighbour over every contender; CPU time
    (user + system of this single-threaded process) is what one core spends,
    which the load of other processes disturbs less than the wall clock.
    """
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {k: (min(wall[k]), min(cpu[k])) for k in fns}


def make_plaintext(path: Path, size: int) -> None:
    chunk = os.urandom(64 << 20)
    with path.open("wb") as f:
        left = size
        while left > 0:
            n = min(left, len(chunk))
            f.write(chunk[:n])
            left -= n


def warm(path: Path) -> None:
    with path.open("rb", buffering=0) as f:
        buf = bytearray(8 << 20)
        while f.readinto(buf):
            pass


def primitive_encrypt_io(src: Path, key: bytes, dst: str = os.devnull) -> None:
    aead = AESGCM(key)
    plain = memoryview(bytearray(FRAME))
    out = memoryview(bytearray(FRAME + 16))
    iv = bytes(12)
    with src.open("rb", buffering=0) as f, open(dst, "wb", buffering=0) as sink:
        while n := f.readinto(plain):
            aead.encrypt_into(iv, plain[:n], b"", out[: n + 16])
            sink.write(out[: n + 16])


def primitive_decrypt_io(src: Path, key: bytes) -> None:
    """Reads records of frame + tag (written by primitive_encrypt_io) and decrypts them."""
    aead = AESGCM(key)
    record = memoryview(bytearray(FRAME + 16))
    out = memoryview(bytearray(FRAME))
    iv = bytes(12)
    with src.open("rb", buffering=0) as f, open(os.devnull, "wb", buffering=0) as sink:
        while n := f.readinto(record):
            if n <= 16:
                break
            aead.decrypt_into(iv, record[:n], b"", out[: n - 16])
            sink.write(out[: n - 16])


def load(path: Path) -> memoryview:
    data = bytearray(path.stat().st_size)
    with path.open("rb", buffering=0) as f:
        view = memoryview(data)
        done = 0
        while n := f.readinto(view[done:]):
            done += n
    return memoryview(data)


def primitive_in_memory(data: memoryview, key: bytes, *, decrypt: bool) -> None:
    """The primitive over the whole data set held in RAM: no file I/O at all.

    For encryption ``data`` is the plaintext (frames of FRAME bytes); for
    decryption it is frames of FRAME + 16 bytes as the primitive sealed them.
    """
    aead = AESGCM(key)
    iv = bytes(12)
    step = FRAME + 16 if decrypt else FRAME
    out = memoryview(bytearray(FRAME + 16))
    for off in range(0, len(data), step):
        chunk = data[off : off + step]
        if decrypt:
            aead.decrypt_into(iv, chunk, b"", out[: len(chunk) - 16])
        else:
            aead.encrypt_into(iv, chunk, b"", out[: len(chunk) + 16])


def openssl_speed() -> float | None:
    if shutil.which("openssl") is None:
        return None
    out = subprocess.run(
        ["openssl", "speed", "-evp", "aes-256-gcm", "-bytes", str(FRAME), "-seconds", "2"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    match = re.search(r"AES-256-GCM\s+([\d.]+)k", out, re.IGNORECASE)
    return float(match.group(1)) * 1000 if match else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=2048)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--files", action="store_true", help="also time file to file (fsync)")
    args = parser.parse_args()
    size = args.size_mb << 20
    work = Path(tempfile.mkdtemp(prefix="bench-crypto-"))
    try:
        run(work, size, args.runs, args.files)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path, size: int, runs: int, files: bool) -> None:
    plain = work / "plain.bin"
    make_plaintext(plain, size)
    priv, pub = keys.generate_x25519(work / "k")
    recipients = keys.load_recipients([pub])
    identity = keys.load_decryption_keys([priv])
    enc = work / "plain.enc"
    with plain.open("rb") as src, enc.open("wb") as dst:
        stream.encrypt_stream(src, dst, recipients)
    key = os.urandom(32)
    raw = work / "plain.raw"
    primitive_encrypt_io(plain, key, str(raw))
    for path in (plain, enc, raw):
        warm(path)
    plain_ram, raw_ram = load(plain), load(raw)

    def ours_encrypt() -> None:
        with plain.open("rb", buffering=0) as src, open(os.devnull, "wb", buffering=0) as sink:
            stream.encrypt_stream(src, sink, recipients)

    def ours_decrypt() -> None:
        with open(os.devnull, "wb", buffering=0) as sink:
            stream.decrypt_to(enc, sink, identity)

    def ours_decrypt_hash() -> None:
        digest = hashlib.sha256()
        with stream.open_decrypted(enc, identity) as reader:
            frames = reader.frames()
            while (frame := frames.next_frame()) is not None:
                digest.update(frame)

    def hash_only() -> None:
        digest = hashlib.sha256()
        with plain.open("rb", buffering=0) as f:
            buf = memoryview(bytearray(FRAME))
            while n := f.readinto(buf):
                digest.update(buf[:n])

    fns: dict[str, Callable[[], object]] = {
        "ours encrypt": ours_encrypt,
        "primitive encrypt (same I/O)": lambda: primitive_encrypt_io(plain, key),
        "primitive encrypt (in memory)": lambda: primitive_in_memory(plain_ram, key, decrypt=False),
        "ours decrypt": ours_decrypt,
        "primitive decrypt (same I/O)": lambda: primitive_decrypt_io(raw, key),
        "primitive decrypt (in memory)": lambda: primitive_in_memory(raw_ram, key, decrypt=True),
        "ours decrypt + sha256": ours_decrypt_hash,
        "sha256 of the plaintext file": hash_only,
    }
    if files:
        out = work / "out.bin"

        def enc_file() -> None:
            stream.encrypt_file(plain, out, recipients, force=True)

        def dec_file() -> None:
            stream.decrypt_file(enc, out, identity, force=True)

        def primitive_file() -> None:
            out.unlink(missing_ok=True)
            primitive_encrypt_io(plain, key, str(out))
            with out.open("rb+") as f:
                os.fsync(f.fileno())

        fns["ours encrypt_file (fsync)"] = enc_file
        fns["ours decrypt_file (fsync)"] = dec_file
        fns["primitive encrypt to a file (fsync)"] = primitive_file
    t = measure(fns, runs)
    limit = openssl_speed()
    gb = size / 1e9
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}, size {gb:.2f} GB, best of {runs} interleaved runs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )

    def ratio(base: str, ours: str, i: int) -> float:
        return t[base][i] / t[ours][i]

    ratios = {
        op: {
            f"{kind}-{clock}": ratio(f"primitive {op}rypt ({label})", f"ours {op}rypt", i)
            for kind, label in (("same-io", "same I/O"), ("in-memory", "in memory"))
            for clock, i in (("cpu", 1), ("wall", 0))
        }
        for op in ("enc", "dec")
    }
    print(
        "bench crypto: "
        + " ".join(f"{op}rypt[{k}]={v:.2f}x" for op, d in ratios.items() for k, v in d.items())
    )
    print()
    print("| what | wall s | CPU s | GB/s (CPU) |")
    print("| --- | ---: | ---: | ---: |")
    for name, (wall, cpu) in t.items():
        print(f"| {name} | {wall:.3f} | {cpu:.3f} | {gb / cpu:.2f} |")
    if limit:
        print(
            f"| openssl speed -evp aes-256-gcm (1 MiB blocks, one core) | | | {limit / 1e9:.2f} |"
        )
    print()
    for op, d in ratios.items():
        print(
            f"- {op}rypt: ours at {d['same-io-cpu']:.2f}x the primitive with the same I/O "
            f"({d['same-io-wall']:.2f}x wall), {d['in-memory-cpu']:.2f}x the primitive in "
            f"memory ({d['in-memory-wall']:.2f}x wall), in CPU time"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
