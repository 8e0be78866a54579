"""Zip entries the way their loaders find them: ``zipfile``, miniz (torch) and streaming readers.

- ``zipfile`` takes the end-of-central-directory record at the very end of
  the file, or else the *last* signature in the final 64 KiB, and shifts
  every offset by the bytes prepended to the archive (``concat``).
- miniz (``torch.load``'s reader) searches the signature backwards from the
  end and uses the offsets as written.
- Streaming readers walk local headers from the start.

:func:`read_zip_entries` returns the union: every directory any signature in
the tail describes, under both offset rules, and the local-header walk;
duplicates are kept, entries seen under several names carry all of them.
:attr:`ZipListing.disagree` says whether ``zipfile`` and miniz would see
different name -> data maps (for a torch zip that is unsafe).
CRCs are never checked: the data is read raw and decompressed here.
"""

from __future__ import annotations

import struct

from ml_integrity.scan.readers import FileReader
from ml_integrity.scan.records import Record, Value

__all__ = ["ZipEntry", "ZipListing", "read_zip_entries"]


class ZipEntry(Value):
    """One entry as some loader could see it: every name this data is known by.

    ``source``: "central", "local" or "central+local".
    """

    __slots__ = ("compressed_size", "data_offset", "flags", "method", "names", "size", "source")

    def __init__(
        self,
        names: tuple[str, ...],
        method: int,
        flags: int,
        data_offset: int,
        compressed_size: int,
        size: int,
        source: str,
    ) -> None:
        self.names = names
        self.method = method
        self.flags = flags
        self.data_offset = data_offset
        self.compressed_size = compressed_size
        self.size = size
        self.source = source


class ZipListing(Record):
    __slots__ = ("directories", "disagree", "entries", "problems")

    def __init__(self) -> None:
        self.entries: list[ZipEntry] = []
        self.problems: list[str] = []
        self.disagree: list[str] = []
        self.directories = 0


_EOCD = b"PK\x05\x06"
_CDH = struct.Struct("<4s4H2H3I5H2I")  # central directory header, 46 bytes
_LFH = struct.Struct("<4s5H3I2H")  # local file header, 30 bytes
_TAIL = 22 + 65535 + 20


def _decode_name(raw: bytes, flags: int) -> str:
    return raw.decode("utf-8" if flags & 0x800 else "cp437", errors="replace")


def _zip64_extra(extra: bytes, fields: list[int]) -> list[int]:
    """Replace 0xFFFFFFFF fields (size, compressed size, offset) from a zip64 extra block."""
    i = 0
    while i + 4 <= len(extra):
        tag, ln = struct.unpack_from("<HH", extra, i)
        if tag == 1:
            data = extra[i + 4 : i + 4 + ln]
            j = 0
            out = list(fields)
            for k, v in enumerate(fields):
                if v == 0xFFFFFFFF and j + 8 <= len(data):
                    out[k] = struct.unpack_from("<Q", data, j)[0]
                    j += 8
            return out
        i += 4 + ln
    return fields


class _Dir(Value):
    """``entries``: (name, method, flags, header offset, compressed size, size)."""

    __slots__ = ("concat", "count", "entries", "eocd")

    def __init__(
        self,
        eocd: int,
        concat: int,
        entries: tuple[tuple[str, int, int, int, int, int], ...],
        count: int,
    ) -> None:
        self.eocd = eocd
        self.concat = concat
        self.entries = entries
        self.count = count


def _eocd_candidates(reader: FileReader) -> list[int]:
    size = reader.length
    start = max(0, size - _TAIL)
    tail = reader.read_at(start, size - start)
    out = []
    i = tail.rfind(_EOCD)
    while i >= 0:
        if i + 22 <= len(tail):
            out.append(start + i)
        i = tail.rfind(_EOCD, 0, i)
    return out  # last first


def _directory(reader: FileReader, eocd: int, *, shifted: bool) -> _Dir | None:
    rec = reader.read_at(eocd, 22)
    _, _, _, _, count, cd_size, cd_offset, _ = struct.unpack("<4s4H2IH", rec)
    cd_end = eocd
    loc = reader.read_at(eocd - 20, 20) if eocd >= 20 else b""
    if loc[:4] == b"PK\x06\x07":
        (z64_off,) = struct.unpack_from("<Q", loc, 8)
        z64 = reader.read_at(z64_off, 56)
        if z64[:4] == b"PK\x06\x06" and len(z64) == 56:
            count, cd_size, cd_offset = struct.unpack_from("<QQQ", z64, 32)
            cd_end = eocd - 20 - 56
    concat = cd_end - cd_size - cd_offset if shifted else 0
    if concat < 0 or cd_offset + concat + cd_size > reader.length:
        return None
    cd = reader.read_at(cd_offset + concat, cd_size)
    entries = []
    i = 0
    while i + 46 <= len(cd):
        (sig, _, _, flags, method, _, _, _, csize, usize, nlen, elen, clen, _, _, _, hoff) = (
            _CDH.unpack_from(cd, i)
        )
        if sig != b"PK\x01\x02":
            break
        name = _decode_name(cd[i + 46 : i + 46 + nlen], flags)
        extra = cd[i + 46 + nlen : i + 46 + nlen + elen]
        usize, csize, hoff = _zip64_extra(extra, [usize, csize, hoff])
        entries.append((name, method, flags, hoff + concat, csize, usize))
        i += 46 + nlen + elen + clen
    return _Dir(eocd, concat, tuple(entries), count)


def _local_header(reader: FileReader, offset: int) -> tuple[str, int, int, int, int, int] | None:
    """(name, method, flags, data offset, compressed size, size) of the local header at offset."""
    raw = reader.read_at(offset, 30)
    if len(raw) < 30:
        return None
    sig, _, flags, method, _, _, _, csize, usize, nlen, elen = _LFH.unpack(raw)
    if sig != b"PK\x03\x04":
        return None
    rest = reader.read_at(offset + 30, nlen + elen)
    name = _decode_name(rest[:nlen], flags)
    usize, csize = _zip64_extra(rest[nlen:], [usize, csize])
    return name, method, flags, offset + 30 + nlen + elen, csize, usize


def _find_data_end(reader: FileReader, start: int) -> int:
    """End of stored data of unknown size: the next zip signature (streaming readers do this)."""
    pos = start
    while pos < reader.length:
        chunk = reader.read_at(pos, 1 << 20)
        hits = [chunk.find(sig) for sig in (b"PK\x07\x08", b"PK\x03\x04", b"PK\x01\x02")]
        hits = [h for h in hits if h >= 0]
        if hits:
            return pos + min(hits)
        pos += max(1, len(chunk) - 3)
    return reader.length


def _zipfile_choice(reader: FileReader, candidates: list[int]) -> int | None:
    """The EOCD ``zipfile`` uses: the record ending the file, else the last signature."""
    end = reader.length - 22
    if end >= 0 and end in candidates and reader.read_at(end + 20, 2) == b"\0\0":
        return end
    return candidates[0] if candidates else None


def _view(reader: FileReader, d: _Dir | None) -> dict[str, tuple[int, int, int]]:
    """name -> (data offset, method, compressed size) as a reader of directory ``d`` opens it."""
    out: dict[str, tuple[int, int, int]] = {}
    for name, method, _flags, hoff, csize, _usize in d.entries if d else ():
        lh = _local_header(reader, hoff)
        out[name] = (lh[3] if lh else -1, method, csize)
    return out


def read_zip_entries(reader: FileReader) -> ZipListing:
    """Every entry of a zip file, the way any of its loaders could find it."""
    listing = ZipListing()
    seen: dict[tuple[int, int, int], int] = {}

    def add(e: ZipEntry) -> None:
        key = (e.data_offset, e.method, e.compressed_size)
        if key in seen:
            old = listing.entries[seen[key]]
            names = old.names + tuple(n for n in e.names if n not in old.names)
            src = old.source if e.source in old.source else "central+local"
            listing.entries[seen[key]] = ZipEntry(
                names, old.method, old.flags, old.data_offset, old.compressed_size, old.size, src
            )
            return
        seen[key] = len(listing.entries)
        listing.entries.append(e)

    candidates = _eocd_candidates(reader)
    dirs: list[_Dir] = []
    for eocd in candidates:
        for shifted in (True, False):
            d = _directory(reader, eocd, shifted=shifted)
            if d is not None and d.entries and all(x != d for x in dirs):
                dirs.append(d)
    listing.directories = len(dirs)
    if not candidates:
        listing.problems.append("no end-of-central-directory record")
    elif not dirs:
        listing.problems.append("no readable central directory")
    chosen = _zipfile_choice(reader, candidates)
    zf = _directory(reader, chosen, shifted=True) if chosen is not None else None
    mz = _directory(reader, candidates[0], shifted=False) if candidates else None
    if zf is not None and len(zf.entries) != zf.count:
        listing.problems.append(
            f"central directory lists {len(zf.entries)} entries, EOCD says {zf.count}"
        )
    if _view(reader, zf) != _view(reader, mz):
        listing.disagree.append("zipfile and miniz (torch) read different central directories")
    local_offsets: set[int] = set()
    for d in dirs:
        for name, method, flags, hoff, csize, usize in d.entries:
            lh = _local_header(reader, hoff)
            if lh is None:
                listing.problems.append(f"entry {name!r}: no local header at offset {hoff}")
                continue
            local_offsets.add(hoff)
            lname, lmethod, lflags, data_off, lcsize, lusize = lh
            add(ZipEntry((name,), method, flags, data_off, csize, usize, "central"))
            sizes_known = not lflags & 0x08 or (lcsize and lcsize != 0xFFFFFFFF)
            if lname != name or lmethod != method or (sizes_known and lcsize != csize):
                listing.disagree.append(f"entry {name!r}: its local header says {lname!r}")
                cs = lcsize if sizes_known else csize
                us = lusize if sizes_known else usize
                add(ZipEntry((lname,), lmethod, lflags, data_off, cs, us, "local"))
    # the streaming view: local headers one after another from the first one
    pos = min(local_offsets, default=0)
    pos = 0 if reader.read_at(0, 4) == b"PK\x03\x04" else pos
    central = [(hoff, cs, us) for d in dirs for _n, _m, _f, hoff, cs, us in d.entries]
    while True:
        lh = _local_header(reader, pos)
        if lh is None:
            break
        lname, lmethod, lflags, data_off, lcsize, lusize = lh
        if lflags & 0x08 and not lcsize:
            match = [(cs, us) for hoff, cs, us in central if hoff == pos]
            if match:
                lcsize, lusize = match[0]
            else:
                lcsize = _find_data_end(reader, data_off) - data_off
                lusize = -1
        if pos not in local_offsets:
            listing.disagree.append(f"entry {lname!r} is only in the local headers")
            add(ZipEntry((lname,), lmethod, lflags, data_off, lcsize, lusize, "local"))
        nxt = data_off + lcsize
        if lflags & 0x08:
            desc = reader.read_at(nxt, 4)
            nxt += 16 if desc == b"PK\x07\x08" else 12
        if nxt <= pos:
            break
        pos = nxt
    return listing
