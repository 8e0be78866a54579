"""The read-ahead helper process: it reads (and hashes) items into shared memory.

Started by :mod:`.prefetch` as ``python -I -S -c <this file's source> ARGS``:
it imports nothing but the standard library (no site, no ml_integrity), so it
starts in a few milliseconds. It decides nothing: it reports what it read and,
when asked, the digest of exactly those bytes in the shared memory; the
caller compares that digest with the signed one (or hashes the bytes itself)
and copies the bytes out only then.

Arguments: the shared memory's descriptor (a memfd), the job pipe (read end),
the notes pipe (write end), the free-slots pipe (read end), the number of
slots, the size of a slot, the records a slot holds, the dataset folder with
a trailing separator, the hash to report (``sha256``, ``blake2b``, or ``-``
for none), and the seconds without a job after which it ends.

The shared memory: a control block (:data:`CONTROL`: the caller's plan
generation and position, written by the caller), then the slots. A slot is
:data:`SLOT_HEAD` (generation, records), :data:`RECORD` per item, a digest
field of :data:`DIGEST_SIZE` bytes per item (the hex digest, ASCII), then the
items' bytes. A job (:data:`JOB`, then :data:`ENTRY` and the path per item)
lists plan positions to read; each item is opened without following symbolic
links and without blocking, must be a regular file of the signed size, and
its fstat (taken before the read) goes into its record; an item that is not,
or cannot be read whole, gets a record of size -1. Items the caller already
passed (an older generation, or a position below the caller's) are skipped.
A filled slot's index is written to the notes pipe (one byte); the caller
writes it back on the free-slots pipe when it has copied what it needed. The
process ends when the job pipe or the free-slots pipe reaches its end, or
after :data:`IDLE_SECONDS` without a job.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import select
import struct
import sys

JOB = struct.Struct("<qqq")
"""A job: plan generation, entries, payload bytes (the entries and their paths)."""
ENTRY = struct.Struct("<qqH")
"""One item of a job: plan position, signed size, length of the path that follows."""
RECORD = struct.Struct("<7q")
"""One item in a slot: position, size (-1: not read), dev, ino, mtime_ns, ctime_ns, offset."""
SLOT_HEAD = struct.Struct("<qq")
"""A slot's head: the generation of its records and their count."""
CONTROL = struct.Struct("<qq")
"""The caller's current plan generation and position (at offset 0)."""
CONTROL_SIZE = 64
"""Bytes reserved for the control block before the first slot."""
IDLE_SECONDS = 10.0
"""A helper without a job for this long ends (a dataset left open costs no process)."""
DIGEST_SIZE = 128
"""Bytes of an item's digest field in a slot (a hex SHA-256 or BLAKE2b digest)."""

_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
)
_REGULAR = 0o100000
_TYPE = 0o170000


def _read_exactly(fd: int, n: int) -> bytes | None:
    parts = []
    while n > 0:
        data = os.read(fd, n)
        if not data:
            return None
        parts.append(data)
        n -= len(data)
    return b"".join(parts)


def main(argv: list[str]) -> int:
    mfd, jobs, notes, back, slots, slot_size, per_slot = (int(a) for a in argv[1:8])
    prefix = os.fsencode(argv[8])
    new_hash = getattr(hashlib, argv[9], None) if argv[9] in ("sha256", "blake2b") else None
    idle = float(argv[10]) if len(argv) > 10 else IDLE_SECONDS
    memory = mmap.mmap(mfd, CONTROL_SIZE + slots * slot_size)
    view = memoryview(memory)
    first_record = SLOT_HEAD.size
    first_digest = first_record + per_slot * RECORD.size
    first_data = first_digest + per_slot * DIGEST_SIZE
    free = list(range(slots - 1, -1, -1))
    control, record, head = CONTROL.unpack_from, RECORD.pack_into, SLOT_HEAD.pack_into
    open_, fstat, readv, close = os.open, os.fstat, os.readv, os.close
    while True:
        if not select.select([jobs], [], [], idle)[0]:
            return 0  # idle: the caller starts another helper for its next plan
        job = _read_exactly(jobs, JOB.size)
        if job is None:
            return 0
        gen, count, size = JOB.unpack(job)
        payload = _read_exactly(jobs, size)
        if payload is None:
            return 0
        slot = -1
        base = used = offset = 0
        at = 0
        for _ in range(count):
            pos, want, length = ENTRY.unpack_from(payload, at)
            at += ENTRY.size
            path = payload[at : at + length]
            at += length
            now_gen, now_pos = control(memory, 0)
            if now_gen != gen or pos < now_pos:
                continue  # the caller went past it (or to another plan)
            if not 0 <= want <= slot_size - first_data:
                continue  # cannot be in one slot: never written past a slot's end
            if slot >= 0 and (used == per_slot or offset + want > slot_size):
                head(memory, base, gen, used)
                os.write(notes, bytes((slot,)))
                slot = -1
            if slot < 0:
                if not free:
                    got = os.read(back, 256)
                    if not got:
                        return 0
                    free.extend(got)
                slot = free.pop()
                base = CONTROL_SIZE + slot * slot_size
                used, offset = 0, first_data
            rec = (pos, -1, 0, 0, 0, 0, 0)
            try:
                fd = open_(prefix + path, _FLAGS)
            except OSError:
                fd = -1
            if fd >= 0:
                try:
                    st = fstat(fd)
                    if st.st_mode & _TYPE == _REGULAR and st.st_size == want:
                        start = base + offset
                        got_n = readv(fd, [view[start : start + want]]) if want else 0
                        if got_n == want:
                            rec = (pos, want, st.st_dev, st.st_ino, st.st_mtime_ns,
                                   st.st_ctime_ns, offset)  # fmt: skip
                            if new_hash is not None:  # of exactly these bytes, in place
                                hexdigest = new_hash(view[start : start + want]).hexdigest()
                                at_digest = base + first_digest + used * DIGEST_SIZE
                                memory[at_digest : at_digest + len(hexdigest)] = hexdigest.encode()
                            offset += want
                except OSError:
                    pass
                finally:
                    close(fd)
            record(memory, base + first_record + used * RECORD.size, *rec)
            used += 1
        if slot >= 0:
            head(memory, base, gen, used)
            os.write(notes, bytes((slot,)))


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (BrokenPipeError, KeyboardInterrupt):
        sys.exit(0)
