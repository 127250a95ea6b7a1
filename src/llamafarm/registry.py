"""A registry of one component family (providers, embedders, stores, ...) by config name.

Built-in backends register through the same `register` a new one would use, and every family
words an unknown name the same way, listing the names it knows.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TypeVar

from llamafarm.errors import ConfigInvalid, LfError

T = TypeVar("T")


class Registry(Mapping[str, T]):
    """Factories of one family by name; reads as a mapping, in registration order."""

    def __init__(self, family: str, *, key: str = "type") -> None:
        self.family = family
        """What the family configures, e.g. "embedding strategy"."""
        self.key = key
        """The config field that names the factory, e.g. "type" or "provider"."""
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        """Add a factory under a new name; returns it, so it can decorate a class."""
        if name in self._items:
            raise ValueError(f"{self.family} {self.key} {name!r} is registered already")
        self._items[name] = item
        return item

    def names(self) -> list[str]:
        """The known names, sorted."""
        return sorted(self._items)

    def unknown(self, name: str, *, owner: str | None = None) -> str:
        """The one "unknown type" message; `owner` names the config entry that asked for it."""
        known = ", ".join(self.names()) or "none"
        if owner is None:
            return f"Unknown {self.family} {self.key} {name!r} (known: {known})"
        return f"{self.family} {owner!r}: unknown {self.key} {name!r} (known: {known})"

    def find(
        self, name: str, *, owner: str | None = None, error: type[LfError] = ConfigInvalid
    ) -> T:
        """The factory registered as `name`; `error` with the unknown-type message if none."""
        try:
            return self._items[name]
        except KeyError:
            raise error(self.unknown(name, owner=owner)) from None

    def __getitem__(self, name: str) -> T:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.family!r}, {list(self._items)})"
