"""Path patterns of policies: ``*``, ``?``, ``**``, ``[abc]``, as ``.gitattributes`` reads them."""

from __future__ import annotations

import re

__all__ = ["glob_match"]


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                i += 2
                if i < n and pattern[i] == "/":
                    out.append("(?:.*/)?")
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i + 2)
            if j == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"(?!/)[{body.replace(chr(92), chr(92) * 2)}]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out))


_GLOB_CACHE: dict[str, re.Pattern[str]] = {}


def glob_match(pattern: str, path: str) -> bool:
    """Match a POSIX ``path`` against a glob.

    ``*`` and ``?`` stay within one path component, ``**`` spans any number
    of components, ``[abc]`` is a character class. A pattern without ``/``
    matches the file name at any depth (as in ``.gitattributes``); a trailing
    ``/`` matches everything below a folder.
    """
    pat = pattern.strip()
    if pat.endswith("/"):
        pat += "**"
    if "/" not in pat:
        pat = "**/" + pat
    pat = pat.lstrip("/")
    rx = _GLOB_CACHE.get(pat)
    if rx is None:
        rx = _GLOB_CACHE[pat] = _glob_regex(pat)
    return rx.fullmatch(path) is not None
