"""One way to open a run: libraries silenced, the configuration planned, a Runner on a store and a cache.

``harness run``, ``harness profile``, a sweep's cells, the stages a sweep
shares and the Ray driver all start a run the same way; they differ only in
what they do with the open run, so the set-up is written once, here, and the
store is always closed, however the run ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.base.quiet import quiet_libraries
from harness.core.config import RunConfig
from harness.core.plan import Plan
from harness.core.plugin_manager import get_registry
from harness.core.registry import Registry
from harness.runs.cache import ArtifactCache
from harness.runs.pipeline import Runner
from harness.runs.planning import plan
from harness.runs.store import Store


@dataclass
class OpenRun:
    """A planned run and the Runner (store, artifact cache, console) that runs it."""

    plan: Plan
    runner: Runner

    @property
    def store(self) -> Store:
        return self.runner.store


@contextmanager
def opened_run(
    config: RunConfig | dict,
    store: str | Path | None,
    cache_dir: str | Path | None,
    console: object = None,
    *,
    check_device: bool = True,
    registry: Registry | None = None,
) -> Iterator[OpenRun]:
    """Plan ``config`` (a RunConfig, or its ``to_dict()`` as executors ship it) and open its Runner.

    Planning comes first, so a bad value is refused before anything is
    written; the store is closed on the way out whatever happened. ``store=None`` is the default store;
    ``":memory:"`` a throw-away one.
    """
    quiet_libraries()
    if isinstance(config, dict):
        config = RunConfig.from_dict(config)
    the_plan = plan(config, registry or get_registry(), check_device=check_device)
    the_store = Store(store)
    try:
        cache = ArtifactCache(Path(cache_dir) if cache_dir else None)
        yield OpenRun(the_plan, Runner(the_store, cache, console=console))
    finally:
        the_store.close()
