"""A row's profile is taken in a clean state (issue 16, item 9).

Measured before: after GRPO training in the same process the AWQ row evaluated at 152 tokens/s
and decoded its batch at 103, while the same artifact profiled in a fresh process gave 1,183. A
run that trains now evaluates and profiles in a fresh process (``harness.runs.evaluate``); this
benchmark trains (GRPO, a few steps) and quantizes in one process through ``Runner.run``, then
profiles the same artifact alone with ``harness profile`` in another, and records the ratios of
the latency figures. Target: within 20% (asserted with HARNESS_PERF_STRICT=1, on a quiet machine;
on a shared one other jobs move single timings by more than that).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

TARGET = 0.20
STRICT = os.environ.get("HARNESS_PERF_STRICT") == "1"
KEYS = ("batch_decode_tokens_per_s", "bs1_decode_tokens_per_s")


def test_trained_row_profile_matches_the_artifact_profiled_alone(benchmark, tmp_path):
    from harness.core.config import RunConfig
    from harness.core.plugin_manager import get_registry
    from harness.runs.cache import ArtifactCache
    from harness.runs.pipeline import Runner
    from harness.runs.planning import plan
    from harness.runs.store import Store

    store, cache = tmp_path / "r.db", tmp_path / "cache"
    config = RunConfig(trainer="grpo", max_steps=4, strategy="rtn", bits=8, limit=32, device="cpu", batch_size=16)
    runner = Runner(Store(store), ArtifactCache(cache))
    row = benchmark.pedantic(runner.run, args=(plan(config, get_registry()),), rounds=1, iterations=1)["profile"]
    assert runner.trained_here  # so the row was evaluated and profiled in a fresh process
    alone = subprocess.run(
        [sys.executable, "-m", "harness.cli", "profile", "--trainer", "grpo", "--max-steps", "4", "--strategy", "rtn",
         "--bits", "8", "--limit", "32", "--device", "cpu", "--batch-size", "16", "--json", "--store",
         str(tmp_path / "alone.db"), "--cache-dir", str(cache)],
        capture_output=True, text=True, timeout=900, env={**os.environ})
    assert alone.returncode == 0, alone.stderr[-2000:]
    alone_prof = json.loads(alone.stdout)["profile"]
    ratios = {k: row[k] / alone_prof[k] for k in KEYS if row.get(k) and alone_prof.get(k)}
    benchmark.extra_info.update(row={k: row[k] for k in KEYS}, alone={k: alone_prof[k] for k in KEYS},
                                ratios=ratios, target=TARGET,
                                meets_target=all(abs(r - 1) <= TARGET for r in ratios.values()))
    assert set(ratios) == set(KEYS)
    assert all(0.33 < r < 3 for r in ratios.values()), ratios  # not the 8x distortion measured before
    if STRICT:
        assert all(abs(r - 1) <= TARGET for r in ratios.values()), ratios
