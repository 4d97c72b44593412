"""The plugin manager: loads every ``harness`` entry point, one at a time.

A plugin that fails to import is recorded with its error and shown by
``harness plugins``; the others still load, so one broken third-party package
never takes every command down.

Environment switches:

- ``HARNESS_LOAD_PLUGINS=a,b``: load only these entry points (empty: none).
- ``HARNESS_TRACE_PLUGINS=1``: print each entry point as it loads, to stderr.
"""

from __future__ import annotations

import difflib
import os
import sys
import warnings
from importlib.metadata import entry_points
from typing import Any

import pluggy

from harness.base.errors import DuplicateNameError
from harness.core import hookspecs
from harness.core.registry import Kind, Registry

GROUP = "harness"
#: the distribution whose entry points are the built-ins
DISTRIBUTION = "quant-rl-harness"


class PluginLoadWarning(UserWarning):
    """A plugin's entry point could not be loaded; the rest still were."""


def _allowed() -> set[str] | None:
    raw = os.environ.get("HARNESS_LOAD_PLUGINS")
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def _load_order(ep) -> tuple[bool, str]:
    """Built-ins first, then third parties by name: the plugin registered first keeps a name two
    plugins claim, so a third party can never take ``rtn`` from the harness by sorting before it."""
    dist = getattr(ep, "dist", None)
    builtin = dist is not None and dist.metadata["Name"] == DISTRIBUTION
    return (not builtin, ep.name)


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
    for ep in sorted(entry_points(group=GROUP), key=_load_order):
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

    Each hook is called through pluggy (:func:`call_hook`), one plugin at a time, so each
    item is attributed to the plugin that registered it and each implementation receives
    only the arguments it names. A plugin fails whole, like an import failure, and the rest
    still register: an unknown (misspelled) hook, a hook that raises, an item of the wrong
    type, or a name another plugin already owns (that one keeps it). A failed plugin's items
    are all dropped and it is unregistered from ``pm``.
    """
    registry = Registry.empty()
    registry.failures.update(failures or {})
    # one hook per kind: register_<attribute> (register_strategies fills registry.strategies)
    kinds = {f"register_{attr}": kind for attr, kind in registry.kinds().items()}
    for name, error in _unknown_hooks(pm).items():
        _fail(pm, registry, name, error)
    for name, plugin in pm.list_name_plugin():
        if plugin is not None and (error := _register_plugin(pm, plugin, name, kinds)) is not None:
            _fail(pm, registry, name, error)
    return registry


def call_hook(pm: pluggy.PluginManager, hook_name: str, plugin: object, **kwargs: Any) -> list[Any]:
    """Call ``plugin``'s implementation of ``hook_name`` alone, through pluggy; its results.

    Through the manager rather than the implementation's function, so pluggy passes each
    implementation only the hookspec arguments it names: a hookspec can gain an argument
    (the harness then passes it here) and a plugin written before it still loads. Every other
    plugin is left out of the call, so what the hook registers is known to be this plugin's.
    Nothing is called (an empty list) when ``plugin`` does not implement the hook.
    """
    caller = getattr(pm.hook, hook_name, None)  # None: no hookspec and no plugin implements it
    if caller is None or not any(impl.plugin is plugin for impl in caller.get_hookimpls()):
        return []
    others = [p for _, p in pm.list_name_plugin() if p is not None and p is not plugin]
    return pm.subset_hook_caller(hook_name, remove_plugins=others)(**kwargs)


def _unknown_hooks(pm: pluggy.PluginManager) -> dict[str, str]:
    """Plugin name -> why, for every plugin with a hook implementation no hookspec declares.

    pluggy's ``check_pending`` raises on the first such hook only, so each offender is
    unregistered in turn and the check repeated: all of them are reported, and what stays
    registered passes the check."""
    known = sorted(n for n in dir(hookspecs) if n.startswith("register_"))
    bad: dict[str, str] = {}
    while True:
        try:
            pm.check_pending()
            return bad
        except pluggy.PluginValidationError as exc:
            name = pm.get_name(exc.plugin) or repr(exc.plugin)
            hooks = sorted(h.name for h in pm.get_hookcallers(exc.plugin) or [] if not h.has_spec())
            hints = [f"did you mean {close[0]!r}?" for h in hooks
                     if (close := difflib.get_close_matches(h, known, n=1))]
            bad[name] = (
                f"unknown hook {', '.join(map(repr, hooks))} (the hooks are {', '.join(known)})"
                + (f"; {' '.join(hints)}" if hints else "")
            )
            pm.unregister(exc.plugin)


def _register_plugin(pm: pluggy.PluginManager, plugin: object, name: str, kinds: dict[str, Kind]) -> str | None:
    """Register everything ``plugin`` offers, or nothing: the reason it failed, or None."""
    offered: list[tuple[Kind, object]] = []
    for hook_name, kind in kinds.items():
        try:
            call_hook(pm, hook_name, plugin, register=lambda item, _k=kind: offered.append((_k, item)))
        except Exception as exc:  # noqa: BLE001 - a plugin may fail in any way
            return f"its {hook_name} hook raised {type(exc).__name__}: {exc}"
    added: list[tuple[Kind, str]] = []
    for kind, item in offered:
        try:
            kind.add(item, name)
        except (DuplicateNameError, TypeError) as exc:
            for done_kind, done_name in added:
                done_kind.discard(done_name)
            return str(exc)
        added.append((kind, item.name))  # type: ignore[attr-defined]
    return None


def _fail(pm: pluggy.PluginManager, registry: Registry, name: str, error: str) -> None:
    registry.failures[name] = error
    plugin = pm.get_plugin(name)
    if plugin is not None:
        pm.unregister(plugin)
    warnings.warn(f"harness plugin {name!r} failed to register: {error}", PluginLoadWarning, stacklevel=3)


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
    """One row per plugin: name, version, hooks, what it registered (one key per kind), error."""
    from importlib.metadata import entry_points as eps

    dist_of = {}
    for ep in eps(group=GROUP):
        dist = getattr(ep, "dist", None)
        if dist is not None:
            dist_of[ep.name] = (dist.metadata["Name"], dist.version)
    kinds = registry.kinds()
    rows = []
    names = [(name, plugin) for name, plugin in pm.list_name_plugin() if plugin is not None]
    for name, error in [(n, None) for n, _ in names] + sorted(registry.failures.items()):
        plugin = pm.get_plugin(name) if error is None else None
        registered = {attr: sorted(n for n, owner in kind.owners.items() if owner == name)
                      for attr, kind in kinds.items()}
        unavailable = {
            n: reason
            for attr, kind in kinds.items()
            for n in registered[attr]
            if callable(getattr(kind.items[n], "unavailable_reason", None))
            and (reason := kind.items[n].unavailable_reason()) is not None
        }
        dist_name, dist_version = dist_of.get(name, (None, None))
        rows.append(
            {
                "name": name,
                "distribution": dist_name,
                "version": dist_version,
                "hooks": sorted(h.name for h in pm.get_hookcallers(plugin) or []) if plugin is not None else [],
                **registered,
                "unavailable": unavailable,
                "error": error,
            }
        )
    return sorted(rows, key=lambda r: r["name"])
