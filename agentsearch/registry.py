"""Named plug-ins (benchmarks, strategies): one registry line each, looked up by the CLI flag's value.

An :class:`Entry` names its implementation as ``"package.module:attr"`` (imported on first use, so the
CLI can list and describe entries without importing what they need) or as the object itself (a
plug-in registered from outside the package). :meth:`Registry.get` raises the registry's error,
naming the flag and the choices, for an unknown name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from agentsearch.errors import UserError


@dataclass(frozen=True)
class Entry:
    """One registered implementation: ``name`` (what the user types), a one-line ``help`` and a ``target``."""

    name: str
    help: str
    target: str | Any
    aliases: tuple[str, ...] = ()

    def load(self) -> Any:
        """The implementation (``"module:attr"`` targets are imported now)."""
        if not isinstance(self.target, str):
            return self.target
        module, _, attr = self.target.partition(":")
        obj: Any = importlib.import_module(module)
        for part in attr.split(".") if attr else ():
            obj = getattr(obj, part)
        return obj


E = TypeVar("E", bound=Entry)


class Registry(Generic[E]):
    """Entries by name and alias, in registration order (the order help text lists them in)."""

    def __init__(self, kind: str, flag: str, error: Callable[[str], Exception] | None = None) -> None:
        self.kind, self.flag = kind, flag
        self._error = error
        self._entries: dict[str, E] = {}
        self._aliases: dict[str, str] = {}

    def add(self, entry: E) -> E:
        """Register ``entry``; a name or alias that is already taken is a ``ValueError``."""
        for key in (entry.name, *entry.aliases):
            if key in self._entries or key in self._aliases:
                raise ValueError(f"{self.kind} {key!r} is already registered")
        self._entries[entry.name] = entry
        self._aliases.update({alias: entry.name for alias in entry.aliases})
        return entry

    def remove(self, name: str) -> None:
        """Unregister ``name`` and its aliases (for tests and plug-ins replacing an entry)."""
        entry = self._entries.pop(name)
        for alias in entry.aliases:
            self._aliases.pop(alias, None)

    def get(self, name: str) -> E:
        """The entry called ``name`` (or one of its aliases); the registry's error for anything else."""
        key = self._aliases.get(name, name)
        if key not in self._entries:
            message = f"{self.flag}: unknown {self.kind} {name!r} (choose from {', '.join(self.names())})"
            raise (self._error(name) if self._error else UserError(message))
        return self._entries[key]

    def names(self) -> list[str]:
        return list(self._entries)

    def help(self, sep: str = " | ") -> str:
        """The names joined for a flag's help text."""
        return sep.join(self._entries)

    def __iter__(self) -> Iterator[E]:
        return iter(list(self._entries.values()))

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._aliases

    def __len__(self) -> int:
        return len(self._entries)
