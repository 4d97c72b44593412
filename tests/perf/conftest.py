"""Fixtures of the performance suite: models quantized once per session, prompts, settings.

Run as benchmarks (CI keeps the JSON at ``.ci/artifacts/perf.json``)::

    pytest tests/perf --benchmark-enable --benchmark-min-rounds=3 --benchmark-max-time=0.5 \\
        --benchmark-json=.ci/artifacts/perf.json

Without ``--benchmark-enable`` (the default in pyproject's addopts) every
benchmark runs its function once, as a plain test.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

#: the model measured (default the shipped tiny-arith; any local path or hub id works)
MODEL = os.environ.get("HARNESS_PERF_MODEL", "tiny-arith")
N_PROMPTS = 32


@pytest.fixture(scope="session")
def perf_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("perf")
    return root / "cache", root / "results.db"


@pytest.fixture(scope="session")
def loaded(perf_dirs) -> Callable[[str, int | None], tuple]:
    """``loaded(strategy, bits) -> (model, tokenizer)``: through the pipeline's own stages, once each."""
    cache: dict[tuple[str, int | None], tuple] = {}

    def get(strategy: str, bits: int | None) -> tuple:
        if (strategy, bits) not in cache:
            from harness.base.model import load_tokenizer
            from harness.base.quiet import quiet_libraries
            from harness.core.config import RunConfig
            from harness.core.plugin_manager import get_registry
            from harness.runs.cache import ArtifactCache
            from harness.runs.pipeline import Runner
            from harness.runs.planning import plan
            from harness.runs.store import Store

            quiet_libraries()
            registry = get_registry()
            if strategy not in registry.strategies.names():
                pytest.skip(f"strategy {strategy!r} is not installed")
            the_plan = plan(RunConfig(model=MODEL, strategy=strategy, bits=bits, device="cpu"), registry)
            reason = the_plan.strategy.unavailable_reason()
            if reason:
                pytest.skip(reason)
            runner = Runner(Store(perf_dirs[1]), ArtifactCache(perf_dirs[0]))
            model_dir, _ = runner.materialize(the_plan, the_plan.config.run_id)
            cache[strategy, bits] = (the_plan.strategy.load(model_dir, "cpu"), load_tokenizer(model_dir))
        return cache[strategy, bits]

    return get


@pytest.fixture(scope="session")
def problems():
    from harness.core.plugin_manager import get_registry

    return get_registry().benchmarks.get("arith").load("test")[:N_PROMPTS]


@pytest.fixture(scope="session")
def prompt_for(loaded):
    from harness.core.prompts import get_template

    _, tokenizer = loaded("none", None)
    template = get_template("boxed")
    return lambda p: template.render(p.problem, tokenizer)



@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Everything in this folder is the performance suite (marker ``perf``): the README's ``pytest``
    leaves it out (``-m "not perf"`` in pyproject's addopts), ``.ci/run`` runs it timed with ``-m perf``."""
    from pathlib import Path

    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.perf)
