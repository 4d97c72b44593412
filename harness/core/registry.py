"""What the plugins registered, by kind, with the plugin that registered each name.

One source of truth: the only way in is a ``register_*`` hook call, and the
registry rejects a second plugin claiming a taken name.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from harness.base.errors import DuplicateNameError, UnknownNameError

T = TypeVar("T")


@dataclass
class Kind(Generic[T]):
    """Everything registered for one kind (strategy, trainer, benchmark, executor, engine or format)."""

    kind: str
    base: type
    items: dict[str, T] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)

    def add(self, item: T, plugin: str) -> None:
        """Register ``item`` for ``plugin``; TypeError or DuplicateNameError (nothing added) when it may not."""
        if not isinstance(item, self.base):
            raise TypeError(
                f"plugin {plugin!r} registered {item!r} as a {self.kind}, "
                f"but it is not a {self.base.__module__}.{self.base.__qualname__}"
            )
        name = getattr(item, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"plugin {plugin!r} registered a {self.kind} without a name")
        if name in self.items:
            if self.owners[name] == plugin:
                raise DuplicateNameError(f"plugin {plugin!r} registered {self.kind} {name!r} twice")
            raise DuplicateNameError(
                f"{self.kind} {name!r} is registered by two plugins: "
                f"{self.owners[name]!r} (registered first, keeps it) and {plugin!r}"
            )
        self.items[name] = item
        self.owners[name] = plugin

    def discard(self, name: str) -> None:
        """Forget ``name`` (a plugin that failed half-way gives back what it had registered)."""
        self.items.pop(name, None)
        self.owners.pop(name, None)

    def get(self, name: str) -> T:
        """The item called ``name``; UnknownNameError listing the known names (and the closest) otherwise."""
        try:
            return self.items[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self.items) from None

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self.items)

    def __iter__(self) -> Iterator[T]:
        """The items in registration order (built-ins first): what a priority tie falls back to."""
        return iter(self.items.values())

    def __contains__(self, name: object) -> bool:
        return name in self.items


@dataclass
class Registry:
    """Everything the plugins registered, one :class:`Kind` each, filled from the plugin manager."""

    strategies: Kind
    trainers: Kind
    benchmarks: Kind
    executors: Kind
    engines: Kind
    formats: Kind
    #: entry point (or plugin) name -> error text, for plugins that failed to load
    failures: dict[str, str] = field(default_factory=dict)

    def kinds(self) -> dict[str, Kind]:
        """Attribute name (``strategies``) -> kind, for every kind this registry holds, in
        declaration order: listings and look-ups read it instead of keeping their own list."""
        return {attr: value for attr, value in vars(self).items() if isinstance(value, Kind)}

    @classmethod
    def empty(cls) -> Registry:
        """A registry with every kind and nothing registered (one hook per kind fills it)."""
        from harness.core.benchmark import Benchmark
        from harness.core.engine import ArtifactFormat, Engine
        from harness.core.executor import Executor
        from harness.core.strategy import Strategy
        from harness.core.trainer import Trainer

        return cls(
            strategies=Kind("strategy", Strategy),
            trainers=Kind("trainer", Trainer),
            benchmarks=Kind("benchmark", Benchmark),
            executors=Kind("executor", Executor),
            engines=Kind("engine", Engine),
            formats=Kind("format", ArtifactFormat),
        )
