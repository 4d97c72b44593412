"""The plugin manager: loads every ``harness`` entry point, one at a time.

A plugin that fails to import is recorded with its error and shown by
``harness plugins``; the others still load, so one broken third-party package
never takes every command down.

Environment switches:

- ``HARNESS_LOAD_PLUGINS=a,b``: load only these entry points (empty: none).
- ``HARNESS_TRACE_PLUGINS=1``: print each entry point as it loads, to stderr.
"""

from __future__ import annotations

import os
import sys
import warnings
from importlib.metadata import entry_points

import pluggy

from harness import hookspecs
from harness.registry import Registry

GROUP = "harness"


class PluginLoadWarning(UserWarning):
    """A plugin's entry point could not be loaded; the rest still were."""


def _allowed() -> set[str] | None:
    raw = os.environ.get("HARNESS_LOAD_PLUGINS")
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def make_manager(load_entry_points: bool = True) -> tuple[pluggy.PluginManager, dict[str, str]]:
    """A fresh plugin manager with the entry points loaded, plus the load failures."""
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    failures: dict[str, str] = {}
    if not load_entry_points:
        return pm, failures
    allowed = _allowed()
    trace = os.environ.get("HARNESS_TRACE_PLUGINS")
    seen: set[str] = set()
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        if allowed is not None and ep.name not in allowed:
            continue
        if ep.name in seen:  # the same distribution seen twice on sys.path
            continue
        seen.add(ep.name)
        if trace:
            print(f"harness: loading plugin {ep.name} = {ep.value}", file=sys.stderr)
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as exc:  # noqa: BLE001 - a plugin may fail in any way
            failures[ep.name] = f"{type(exc).__name__}: {exc}"
            warnings.warn(
                f"harness plugin {ep.name!r} ({ep.value}) failed to load: {exc}",
                PluginLoadWarning,
                stacklevel=2,
            )
    return pm, failures


def build_registry(pm: pluggy.PluginManager, failures: dict[str, str] | None = None) -> Registry:
    """Call every plugin's ``register_*`` hooks and collect what they registered.

    Hooks are called plugin by plugin (not through ``pm.hook``) so each item is
    attributed to the plugin that registered it, and a duplicate name names both.
    """
    registry = Registry.empty()
    registry.failures.update(failures or {})
    kinds = {
        "register_strategies": registry.strategies,
        "register_trainers": registry.trainers,
        "register_benchmarks": registry.benchmarks,
    }
    for hook_name, kind in kinds.items():
        caller = getattr(pm.hook, hook_name)
        for impl in caller.get_hookimpls():
            plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)
            impl.function(register=lambda item, _p=plugin_name, _k=kind: _k.add(item, _p))
    return registry


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        pm, failures = make_manager()
        _REGISTRY = build_registry(pm, failures)
        _REGISTRY.manager = pm  # type: ignore[attr-defined]
    return _REGISTRY


def reset_registry() -> None:
    """Forget the cached registry (tests, or after installing a plugin)."""
    global _REGISTRY
    _REGISTRY = None


def plugin_listing(pm: pluggy.PluginManager, registry: Registry) -> list[dict]:
    """One row per plugin: name, version, hooks, what it registered, load error."""
    from importlib.metadata import entry_points as eps

    dist_of = {}
    for ep in eps(group=GROUP):
        dist = getattr(ep, "dist", None)
        if dist is not None:
            dist_of[ep.name] = (dist.metadata["Name"], dist.version)
    rows = []
    for plugin in pm.get_plugins():
        name = pm.get_name(plugin)
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        registered = {
            kind.kind: sorted(n for n, owner in kind.owners.items() if owner == name)
            for kind in (registry.strategies, registry.trainers, registry.benchmarks)
        }
        unavailable = {
            n: reason
            for n in registered["strategy"] + registered["trainer"]
            for item in [registry.strategies.items.get(n) or registry.trainers.items.get(n)]
            if item is not None and (reason := item.unavailable_reason()) is not None
        }
        dist_name, dist_version = dist_of.get(name, (None, None))
        rows.append(
            {
                "name": name,
                "distribution": dist_name,
                "version": dist_version,
                "hooks": hooks,
                "strategies": registered["strategy"],
                "trainers": registered["trainer"],
                "benchmarks": registered["benchmark"],
                "unavailable": unavailable,
                "error": None,
            }
        )
    for name, error in sorted(registry.failures.items()):
        dist_name, dist_version = dist_of.get(name, (None, None))
        rows.append(
            {
                "name": name,
                "distribution": dist_name,
                "version": dist_version,
                "hooks": [],
                "strategies": [],
                "trainers": [],
                "benchmarks": [],
                "unavailable": {},
                "error": error,
            }
        )
    return sorted(rows, key=lambda r: r["name"])
