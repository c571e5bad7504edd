"""One registry type for every family of named things (encoders, heads, strategies, ...)."""
from __future__ import annotations

import difflib
from typing import Callable, Generic, TypeVar

from quickadapt.errors import BadInput

T = TypeVar("T")


def close_names(name: str, choices) -> list[str]:
    """Up to three of `choices` that look like `name`, for a "did you mean" hint."""
    return difflib.get_close_matches(str(name), list(choices), n=3)


class Registry(Generic[T]):
    """Maps lowercase names to factories. Duplicates raise; unknown names suggest close matches."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name != name.lower():
                raise ValueError(f"{self.kind} names are lowercase, got {name!r}")
            if name in self._items:
                raise KeyError(f"there is already a {self.kind} called {name!r}")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        if name not in self._items:
            close = close_names(name, self.names())
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise BadInput(f"unknown {self.kind} {name!r}: choose one of {', '.join(self.names())}{hint}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
