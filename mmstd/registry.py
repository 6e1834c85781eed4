"""A lazy registry for the four families that vary: exporters, backends, metrics, report formats.

Built-ins are registered as ``"module:attr"`` strings so nothing heavy is imported until an entry is
used; third parties add entries through the ``mmstd.<family>`` entry-point group. A miss says what
exists and suggests the closest name.
"""
from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from typing import Generic, TypeVar

from mmstd.errors import RegistryError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names to objects, resolved lazily from ``"module:attr"`` references.

    Args:
        kind: What the entries are, for messages ("backend", "metric").
        entry_points: Entry-point group scanned once, on the first lookup.
    """

    def __init__(self, kind: str, *, entry_points: str | None = None) -> None:
        self.kind = kind
        self._group = entry_points
        self._refs: dict[str, str | T] = {}
        self._loaded: dict[str, T] = {}
        self._scanned = entry_points is None

    def register(self, name: str, ref: str | T) -> None:
        """Add ``name``; ``ref`` is an object or a ``"module:attr"`` string.

        Raises:
            RegistryError: ``name`` is already registered.
        """
        if name in self._refs:
            raise RegistryError(
                f"{self.kind} {name!r} is registered twice ({self._refs[name]!r} and {ref!r}).",
                code="E_USAGE",
            )
        self._refs[name] = ref

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        self._scan()
        return sorted(self._refs)

    def __contains__(self, name: object) -> bool:
        self._scan()
        return name in self._refs

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> T:
        """Resolve ``name``, importing its module on first use.

        Raises:
            RegistryError: Unknown name; the message suggests the closest and lists all.
        """
        self._scan()
        if name in self._loaded:
            return self._loaded[name]
        if name not in self._refs:
            close = difflib.get_close_matches(name, self._refs, n=1, cutoff=0.5)
            guess = f" Did you mean {close[0]!r}?" if close else ""
            raise RegistryError(
                f"Unknown {self.kind} {name!r}.{guess} Available: {', '.join(sorted(self._refs))}."
            )
        ref = self._refs[name]
        obj = _resolve(ref) if isinstance(ref, str) else ref
        self._loaded[name] = obj
        return obj

    def _scan(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        from importlib.metadata import entry_points

        for ep in entry_points(group=self._group or ""):
            if ep.name not in self._refs:
                self._refs[ep.name] = ep.value


def _resolve(ref: str) -> object:
    module, _, attr = ref.partition(":")
    obj: object = importlib.import_module(module)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj
