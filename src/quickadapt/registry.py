"""One registry type for every family of named things (encoders, heads, strategies, ...).

Users add their own methods with the same `register` the built-in ones use (docs/python.md,
"Adding your own method"). An installed package may declare a module that registers its
methods under the entry-point group `quickadapt.plugins`: it is imported the first time a
name is not found, so `quickadapt fit --strategy theirs` and loading a model of their encoder
work without an import. Nothing else is ever imported by name (never a module a manifest or a
command line names)."""
from __future__ import annotations

import difflib
from typing import Callable, Generic, TypeVar

from quickadapt.errors import BadInput

T = TypeVar("T")

PLUGIN_GROUP = "quickadapt.plugins"
_plugins_loaded = False


def close_names(name: str, choices) -> list[str]:
    """Up to three of `choices` that look like `name`, for a "did you mean" hint."""
    return difflib.get_close_matches(str(name), list(choices), n=3)


def load_plugins() -> None:
    """Import, once per process, the modules installed packages declare under PLUGIN_GROUP.
    One that fails to import is named in a note and skipped: the others, and every built-in
    name, still work."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for entry in entry_points(group=PLUGIN_GROUP):
        try:
            entry.load()
        except Exception as exc:
            from quickadapt.progress import log

            log(f"note: quickadapt plugin {entry.name!r} ({entry.value}) failed to import and is skipped: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")


def defined_in(obj) -> str:
    """Where `obj` was defined, as `module.QualName` (what tells a re-run definition from another)."""
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"


class Registry(Generic[T]):
    """Maps lowercase names to factories. A name taken by another definition is refused; unknown
    names load the installed plugins once, then suggest close matches."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if not isinstance(name, str) or not name or name != name.lower():
                raise ValueError(f"{self.kind} names are lowercase, got {name!r}")
            # a class records its own name in saved models (a strategy's `name`, a head's `kind`):
            # registered under another, a model would name what cannot rebuild it, or another method
            own = next((getattr(obj, a) for a in ("name", "kind") if isinstance(getattr(obj, a, None), str)), None)
            if isinstance(obj, type) and own is not None and own != name:
                raise ValueError(f"{defined_in(obj)} says its name is {own!r} but is registered as {name!r}: "
                                 f"set the class's name to {name!r}")
            if name in self._items and defined_in(self._items[name]) != defined_in(obj):
                raise ValueError(f"there is already a {self.kind} called {name!r} ({defined_in(self._items[name])}); "
                                 f"register yours under another name")
            # the same definition again (a notebook cell run twice, a module reloaded) replaces it
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        if name not in self:
            close = close_names(name, self.names())
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise BadInput(f"unknown {self.kind} {name!r}: choose one of {', '.join(self.names())}{hint}")
        return self._items[name]

    def names(self) -> list[str]:
        load_plugins()  # listed with the built-in ones
        return sorted(self._items)

    def module(self, name: str) -> str | None:
        """The module that registered `name` (None for a name not registered)."""
        return getattr(self._items[name], "__module__", None) if name in self._items else None

    def __contains__(self, name: object) -> bool:
        if name not in self._items and isinstance(name, str):
            load_plugins()
        return name in self._items
