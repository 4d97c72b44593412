"""The run's stage graph: one object core owns, which the runner, sweeps and executors read."""

from __future__ import annotations

import pytest

from harness.config import RunConfig
from harness.graph import ENGINE, QUANTIZER, SELF_TRAINING, TRAINER, run_graph


def _plan(**kw):
    from harness.pipeline import plan
    from harness.plugins import get_registry

    return plan(RunConfig(device="cpu", limit=2, **kw), get_registry())


def _shape(graph):
    return [(s.name, s.body, s.after) for s in graph.stages]


def test_a_post_training_run_quantizes_the_plan_model_then_evaluates_and_profiles():
    graph = run_graph(_plan(strategy="rtn", bits=4))
    assert _shape(graph) == [("quantize", QUANTIZER, None), ("evaluate", ENGINE, "quantize"),
                             ("profile", ENGINE, "evaluate")]
    assert [s.name for s in graph.artifacts] == ["quantize"] and graph.key("train") is None


def test_a_trained_and_quantized_run_keys_its_quantized_model_by_the_checkpoint():
    pytest.importorskip("trl")
    graph = run_graph(_plan(trainer="grpo", strategy="rtn", bits=4))
    assert _shape(graph)[:2] == [("train", TRAINER, None), ("quantize", QUANTIZER, "train")]
    assert graph.get("quantize").inputs["source"] == graph.get("train").identity
    assert graph.before("quantize") is graph.get("train")
    other_seed = run_graph(_plan(trainer="grpo", strategy="rtn", bits=4, seed=1))
    assert other_seed.key("train") != graph.key("train") and other_seed.key("quantize") != graph.key("quantize")


def test_an_in_training_strategy_has_one_artifact_stage():
    pytest.importorskip("trl")
    with_trainer = run_graph(_plan(trainer="grpo", strategy="ste", bits=8))
    assert [(s.name, s.body) for s in with_trainer.artifacts] == [("train", TRAINER)]
    alone = run_graph(_plan(strategy="kd-qat", bits=4))
    assert [(s.name, s.body) for s in alone.artifacts] == [("train", SELF_TRAINING)]
    assert alone.get("evaluate").after == "train"


def test_the_runner_builds_exactly_the_graphs_stages(tmp_path):
    from harness.cache import ArtifactCache
    from harness.pipeline import Runner
    from harness.store import Store

    plan = _plan(strategy="rtn", bits=8)
    graph = run_graph(plan)
    model_dir, artifacts = Runner(Store(tmp_path / "r.db"), ArtifactCache(tmp_path / "c")).materialize(
        plan, plan.config.run_id)
    assert artifacts["quantize_key"] == graph.key("quantize")
    assert model_dir == ArtifactCache(tmp_path / "c").path("quantize", graph.key("quantize"))
