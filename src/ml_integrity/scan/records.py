"""Small value records for the scanner: ``__slots__`` classes written out by hand.

Not dataclasses: creating a dataclass costs about half a millisecond at
import (it generates and compiles its methods), and every ``ml-integrity
scan`` pays for every class its imports create. A :class:`Record`
compares by type and fields (as a dataclass does) and is unhashable; a
:class:`Value` is also hashable by its fields (as a frozen dataclass).
"""

from __future__ import annotations

__all__ = ["Record", "Value"]


class Record:
    """Equality by type and fields, and a dataclass-like repr."""

    __slots__: tuple[str, ...] = ()

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, n) for n in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._fields() == other._fields()
        return NotImplemented

    # defining __eq__ without __hash__ makes a class unhashable, as a mutable dataclass is

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{type(self).__name__}({inner})"


class Value(Record):
    """An immutable record: hashable by value."""

    __slots__ = ()

    def __hash__(self) -> int:
        return hash(self._fields())
