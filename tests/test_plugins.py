"""The plugin system: built-ins and third parties come in the same way; one broken plugin breaks nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pluggy
import pytest

from harness import hookimpl
from harness.base.errors import DuplicateNameError, UnknownNameError
from harness.core import hookspecs
from harness.core.benchmark import Benchmark, Problem
from harness.core.plugin_manager import PluginLoadWarning, build_registry, call_hook, make_manager, plugin_listing
from harness.core.strategy import Strategy


class _Strat(Strategy):
    def __init__(self, name):
        self.name = name


class InlinePlugin:
    @hookimpl
    def register_strategies(self, register):
        register(_Strat("inline-strategy"))


def fresh(*plugins, entry_points=False):
    pm, failures = make_manager(load_entry_points=entry_points)
    for i, p in enumerate(plugins):
        pm.register(p, name=f"plugin{i}")
    return pm, build_registry(pm, failures)


def test_builtins_come_through_entry_points():
    pm, reg = fresh(entry_points=True)
    assert {"none", "rtn"} <= set(reg.strategies.names())
    assert "arith" in reg.benchmarks.names()
    # the built-ins are ordinary entry-point plugins, attributed like any other
    assert reg.strategies.owners["rtn"] == "rtn"


def test_inline_plugin_registers_like_a_builtin():
    pm, reg = fresh(InlinePlugin(), entry_points=True)
    assert "inline-strategy" in reg.strategies.names()
    rows = {r["name"]: r for r in plugin_listing(pm, reg)}
    assert rows["plugin0"]["strategies"] == ["inline-strategy"]
    assert rows["plugin0"]["hooks"] == ["register_strategies"]


def test_duplicate_name_names_both_plugins():
    # the second claimant fails like an import failure; the first keeps the name
    with pytest.warns(PluginLoadWarning, match="plugin0.*plugin1"):
        _, reg = fresh(InlinePlugin(), InlinePlugin())
    assert reg.strategies.owners["inline-strategy"] == "plugin0"
    assert "'plugin0'" in reg.failures["plugin1"] and "'plugin1'" in reg.failures["plugin1"]
    with pytest.raises(DuplicateNameError, match="plugin0.*plugin1"):
        reg.strategies.add(_Strat("inline-strategy"), "plugin1")


def test_wrong_type_is_rejected():
    class Bad:
        @hookimpl
        def register_benchmarks(self, register):
            register(_Strat("not-a-benchmark"))

    with pytest.warns(PluginLoadWarning, match="not a harness.core.benchmark.Benchmark"):
        _, reg = fresh(Bad())
    assert "not a harness.core.benchmark.Benchmark" in reg.failures["plugin0"]
    assert "not-a-benchmark" not in reg.benchmarks


def test_unknown_name_lists_known_and_suggests():
    _, reg = fresh(entry_points=True)
    with pytest.raises(UnknownNameError) as exc:
        reg.strategies.get("rnt")
    assert "Did you mean 'rtn'" in str(exc.value)
    assert "none" in str(exc.value)


def test_every_hookspec_is_documented_and_exercised():
    specs = [n for n in dir(hookspecs) if n.startswith("register_")]
    assert specs == ["register_benchmarks", "register_engines", "register_executors", "register_formats",
                     "register_strategies", "register_trainers"]
    for name in specs:
        doc = getattr(hookspecs, name).__doc__
        assert doc and ":param register:" in doc
    pm, reg = fresh(entry_points=True)
    exercised = {h for row in plugin_listing(pm, reg) for h in row["hooks"]}
    assert {"register_strategies", "register_benchmarks", "register_engines", "register_formats"} <= exercised


def _fake_distribution(root: Path, module_body: str, ep_value: str) -> None:
    """A real installed distribution as importlib.metadata sees it: a module plus a dist-info."""
    (root / "thirdparty_plugin.py").write_text(textwrap.dedent(module_body))
    info = root / "thirdparty_plugin-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-plugin\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[harness]\nthirdparty = {ep_value}\n")


def _plugins_json(pythonpath: Path) -> tuple[list[dict], str]:
    env = {**__import__("os").environ, "PYTHONPATH": str(pythonpath)}
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli.__main__", "plugins", "--json"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


def test_installed_third_party_plugin_shows_up(tmp_path):
    _fake_distribution(
        tmp_path,
        """
        from harness import hookimpl
        from harness.core.benchmark import Benchmark

        class Toy(Benchmark):
            name = "toy"
            def load(self, split="test", data_dir=None):
                return []

        @hookimpl
        def register_benchmarks(register):
            register(Toy())
        """,
        "thirdparty_plugin",
    )
    rows, _ = _plugins_json(tmp_path)
    by_name = {r["name"]: r for r in rows}
    assert by_name["thirdparty"]["benchmarks"] == ["toy"]
    assert by_name["thirdparty"]["version"] == "1.2.3"
    assert by_name["rtn"]["strategies"] == ["rtn"]


def test_broken_plugin_is_reported_and_the_rest_load(tmp_path):
    _fake_distribution(tmp_path, "raise ImportError('missing backend xyz')\n", "thirdparty_plugin")
    rows, stderr = _plugins_json(tmp_path)
    by_name = {r["name"]: r for r in rows}
    assert "missing backend xyz" in by_name["thirdparty"]["error"]
    assert "thirdparty" in stderr and "failed to load" in stderr
    assert by_name["none"]["strategies"] == ["none"]


def test_load_plugins_switch_restricts(monkeypatch):
    monkeypatch.setenv("HARNESS_LOAD_PLUGINS", "rtn")
    _, reg = fresh(entry_points=True)
    assert reg.strategies.names() == ["rtn"]
    assert reg.benchmarks.names() == []


def test_benchmark_problem_roundtrip():
    class B(Benchmark):
        name = "b"

        def load(self, split="test", data_dir=None):
            return [Problem("1", "1+1?", "2")]

    _, reg = fresh(type("P", (), {"register_benchmarks": hookimpl(lambda self, register: register(B()))})())
    assert reg.benchmarks.get("b").load()[0].answer == "2"


# -- hooks are called through pluggy ----------------------------------------------------------------


def test_every_hook_is_called_through_the_manager_one_plugin_at_a_time():
    """The registry's hook calls go through pluggy (its monitoring sees them), each with one implementation."""

    class Other:
        @hookimpl
        def register_strategies(self, register):
            register(_Strat("other-strategy"))

    pm, _ = make_manager(load_entry_points=False)
    pm.register(InlinePlugin(), name="plugin0")
    pm.register(Other(), name="plugin1")
    calls = []
    undo = pm.add_hookcall_monitoring(
        lambda hook_name, impls, kwargs: calls.append((hook_name, [pm.get_name(i.plugin) for i in impls])),
        lambda outcome, hook_name, impls, kwargs: None,
    )
    try:
        reg = build_registry(pm)
    finally:
        undo()
    assert calls == [("register_strategies", ["plugin0"]), ("register_strategies", ["plugin1"])]
    assert reg.strategies.owners == {"inline-strategy": "plugin0", "other-strategy": "plugin1"}


def test_a_hookspec_gaining_an_argument_keeps_a_plugin_that_names_only_register():
    """pluggy passes an implementation only the arguments it names (its opt-in arguments), so a
    hookspec may gain one and a plugin written before it keeps working; one that wants it names it."""

    class Newer:
        @hookimpl
        def register_strategies(self, register, harness_version):
            register(_Strat(f"needs-{harness_version}"))

    @hookspecs.hookspec
    def register_strategies(register, harness_version):
        """A later release's ``register_strategies``: it also passes the harness's version."""

    specs = {n: getattr(hookspecs, n) for n in dir(hookspecs) if n.startswith("register_")}
    specs["register_strategies"] = register_strategies
    pm = pluggy.PluginManager("harness")
    pm.add_hookspecs(type("LaterSpecs", (), {n: staticmethod(f) for n, f in specs.items()}))
    older, newer = InlinePlugin(), Newer()
    pm.register(older, name="older")
    pm.register(newer, name="newer")
    pm.check_pending()
    got: dict[str, list] = {"older": [], "newer": []}
    for name, plugin in (("older", older), ("newer", newer)):
        call_hook(pm, "register_strategies", plugin, register=got[name].append, harness_version="9")
    assert [s.name for s in got["older"]] == ["inline-strategy"]
    assert [s.name for s in got["newer"]] == ["needs-9"]
    # calling the implementation's function directly, as the registry once did, breaks the older plugin
    with pytest.raises(TypeError, match="harness_version"):
        older.register_strategies(register=print, harness_version="9")


def test_call_hook_skips_a_plugin_without_the_hook():
    pm, _ = make_manager(load_entry_points=False)
    plugin = InlinePlugin()
    pm.register(plugin, name="plugin0")
    assert call_hook(pm, "register_benchmarks", plugin, register=lambda item: None) == []
    assert call_hook(pm, "register_no_such_hook", plugin, register=lambda item: None) == []
