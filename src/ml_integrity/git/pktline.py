"""The pkt-line framing of git's long-running filter protocol (v2).

Pure stream functions (no git, no process): :func:`read_pkt` and
:func:`write_pkt` for one packet, :func:`read_list` / :func:`write_list` for
text packets up to a flush. A peer that breaks the framing (or goes away)
raises :class:`PktError`.
"""

from __future__ import annotations

from typing import IO

__all__ = [
    "FLUSH",
    "MAX_PKT_DATA",
    "PktError",
    "parse_meta",
    "read_list",
    "read_pkt",
    "write_list",
    "write_pkt",
    "write_text",
]

MAX_PKT_DATA = 65516
FLUSH = b"0000"


class PktError(Exception):
    """The other side broke the pkt-line protocol (or went away)."""


def read_pkt(stream: IO[bytes]) -> bytes | None:
    """One pkt-line payload; ``None`` for a flush packet; PktError at EOF."""
    head = stream.read(4)
    if len(head) < 4:
        raise PktError("end of stream")
    try:
        n = int(head, 16)
    except ValueError as exc:
        raise PktError(f"bad pkt-line header {head!r}") from exc
    if n == 0:
        return None
    if n < 4:
        raise PktError(f"bad pkt-line length {n}")
    data = stream.read(n - 4)
    if len(data) < n - 4:
        raise PktError("truncated pkt-line")
    return data


def write_pkt(stream: IO[bytes], data: bytes) -> None:
    for i in range(0, max(len(data), 1), MAX_PKT_DATA):
        chunk = data[i : i + MAX_PKT_DATA]
        if chunk:
            stream.write(b"%04x" % (len(chunk) + 4) + chunk)


def write_text(stream: IO[bytes], line: str) -> None:
    write_pkt(stream, line.encode("utf-8", "surrogateescape") + b"\n")


def write_list(stream: IO[bytes], lines: list[str]) -> None:
    """Text packets and a flush, in one write. Lines are the bytes :func:`read_list`
    read (a path that is not UTF-8 goes back as it came)."""
    out = bytearray()
    for line in lines:
        data = line.encode("utf-8", "surrogateescape") + b"\n"
        out += b"%04x" % (len(data) + 4)
        out += data
    out += FLUSH
    stream.write(out)


def read_list(stream: IO[bytes]) -> list[str]:
    """Text packets up to the next flush."""
    out = []
    while (pkt := read_pkt(stream)) is not None:
        out.append(pkt.decode("utf-8", "surrogateescape").rstrip("\n"))
    return out


def parse_meta(lines: list[str]) -> dict[str, str]:
    """``key=value`` lines as a dict (the metadata of a request or a status list)."""
    out = {}
    for line in lines:
        k, _, v = line.partition("=")
        out[k] = v
    return out
