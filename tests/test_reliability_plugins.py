"""A misbehaving plugin (a clash, a raising or misspelled hook) fails alone, like an import failure.

Each test registers inline plugins on a fresh manager (the style of tests/test_plugins.py); the
subprocess tests install a real distribution on PYTHONPATH and run ``harness plugins``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness import hookimpl
from harness.core.benchmark import Benchmark
from harness.core.plugin_manager import (
    PluginLoadWarning,
    build_registry,
    make_manager,
    plugin_listing,
)
from harness.core.strategy import Strategy


class _Strat(Strategy):
    def __init__(self, name):
        self.name = name


class _Bench(Benchmark):
    def __init__(self, name):
        self.name = name

    def load(self, split="test", data_dir=None):
        return []


def fresh(*named_plugins, entry_points=False):
    pm, failures = make_manager(load_entry_points=entry_points)
    for name, plugin in named_plugins:
        pm.register(plugin, name=name)
    with pytest.warns(PluginLoadWarning) if _any_bad(named_plugins) else _nothing():
        registry = build_registry(pm, failures)
    return pm, registry


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _any_bad(named_plugins) -> bool:
    return any(name.startswith("bad") for name, _ in named_plugins)


class Good:
    @hookimpl
    def register_strategies(self, register):
        register(_Strat("good-strategy"))


class ClashesWithGood:
    """Registers a free benchmark first, then a strategy name Good owns: it must fail whole."""

    @hookimpl
    def register_benchmarks(self, register):
        register(_Bench("clash-bench"))

    @hookimpl
    def register_strategies(self, register):
        register(_Strat("own-strategy"))
        register(_Strat("good-strategy"))


class RaisesHalfWay:
    @hookimpl
    def register_strategies(self, register):
        register(_Strat("half-strategy"))
        raise RuntimeError("backend exploded")


class Misspelled:
    @hookimpl
    def register_strategys(self, register):  # a typo pluggy's check_pending catches
        register(_Strat("never-registered"))


class AlsoGood:
    @hookimpl
    def register_benchmarks(self, register):
        register(_Bench("also-good-bench"))


def rows_of(pm, registry):
    return {r["name"]: r for r in plugin_listing(pm, registry)}


def test_a_clash_fails_the_second_plugin_whole_and_names_both():
    pm, reg = fresh(("good", Good()), ("bad-clash", ClashesWithGood()), ("also", AlsoGood()))
    assert reg.strategies.owners["good-strategy"] == "good"  # the one registered first keeps it
    error = reg.failures["bad-clash"]
    assert "'good'" in error and "'bad-clash'" in error and "good-strategy" in error
    # everything the failed plugin offered is dropped, its other kinds too
    assert "own-strategy" not in reg.strategies and "clash-bench" not in reg.benchmarks
    assert "also-good-bench" in reg.benchmarks
    rows = rows_of(pm, reg)
    assert rows["bad-clash"]["error"] == error and rows["bad-clash"]["strategies"] == []
    assert rows["good"]["error"] is None and rows["good"]["strategies"] == ["good-strategy"]


def test_a_hook_that_raises_half_way_registers_nothing():
    pm, reg = fresh(("bad-raises", RaisesHalfWay()), ("good", Good()))
    assert "half-strategy" not in reg.strategies
    assert "RuntimeError: backend exploded" in reg.failures["bad-raises"]
    assert "register_strategies" in reg.failures["bad-raises"]
    assert reg.strategies.names() == ["good-strategy"]
    assert rows_of(pm, reg)["bad-raises"]["error"] == reg.failures["bad-raises"]


def test_a_misspelled_hook_is_reported_not_silently_ignored():
    pm, reg = fresh(("bad-typo", Misspelled()), ("good", Good()), ("bad-typo2", Misspelled()))
    for name in ("bad-typo", "bad-typo2"):  # check_pending stops at the first; every offender is reported
        error = reg.failures[name]
        assert "unknown hook 'register_strategys'" in error
        assert "did you mean 'register_strategies'?" in error
    assert reg.strategies.names() == ["good-strategy"]
    pm.check_pending()  # what stays registered is valid


def test_builtins_keep_their_names_against_a_third_party_sorted_first(tmp_path):
    """A third-party entry point named 'aaa' loads after the built-ins, so 'rtn' stays the built-in's."""
    _distribution(
        tmp_path,
        """
        from harness import hookimpl
        from harness.core.strategy import Strategy

        class Fake(Strategy):
            name = "rtn"

        @hookimpl
        def register_strategies(register):
            register(Fake())
        """,
    )
    proc = _harness(tmp_path, "plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["rtn"]["strategies"] == ["rtn"] and rows["rtn"]["error"] is None
    assert "'rtn'" in rows["aaa"]["error"] and "'aaa'" in rows["aaa"]["error"]
    assert "aaa" in proc.stderr and "failed to register" in proc.stderr
    # the rest of the commands work: the table, and a look-up of the built-in that kept its name
    table = _harness(tmp_path, "plugins")
    assert table.returncode == 0 and "failed" in table.stdout
    shown = _harness(tmp_path, "plugins", "rtn", "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)[0]["plugin"] == "rtn"


def test_a_raising_third_party_hook_gives_no_traceback(tmp_path):
    _distribution(
        tmp_path,
        """
        from harness import hookimpl

        @hookimpl
        def register_benchmarks(register):
            raise KeyError("no such backend")
        """,
    )
    proc = _harness(tmp_path, "benchmarks")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "no such backend" in proc.stderr
    assert "arith" in proc.stdout


def test_a_format_whose_recognises_raises_is_named_in_one_line(tmp_path):
    from harness.api import ArtifactFormat, artifact_format
    from harness.base.errors import HarnessError

    class Broken(ArtifactFormat):
        name = "broken"
        priority = 100

        def recognises(self, model_dir, config):
            raise KeyError("weights")

    with pytest.raises(HarnessError, match=r"artifact format 'broken' failed to read .*: KeyError: 'weights'"):
        artifact_format(tmp_path, [Broken()])


def _distribution(root: Path, body: str) -> None:
    (root / "aaa_plugin.py").write_text(textwrap.dedent(body))
    info = root / "aaa_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: aaa-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[harness]\naaa = aaa_plugin\n")


def _harness(pythonpath: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "COLUMNS": "80"}
    return subprocess.run(
        [sys.executable, "-m", "harness.cli.__main__", *args], check=False, capture_output=True, text=True, env=env,
        timeout=120,
    )
