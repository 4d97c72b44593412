"""The run's stage graph: one object core owns, which the runner, sweeps and executors read."""

from __future__ import annotations

import pytest

from harness.core.config import RunConfig
from harness.core.graph import ENGINE, QUANTIZER, TRAINER, run_graph


def _plan(**kw):
    from harness.core.plugin_manager import get_registry
    from harness.runs.planning import plan

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
    # kd-qat without --trainer runs its default trainer (kd): the run's config says so, and so does its id
    plan = _plan(strategy="kd-qat", bits=4)
    alone = run_graph(plan)
    assert plan.config.trainer == "kd"
    assert [(s.name, s.body, s.after) for s in alone.artifacts] == [
        ("init", QUANTIZER, None), ("train", TRAINER, "init")
    ]
    assert alone.get("train").inputs["trainer"] == "kd" and alone.get("evaluate").after == "train"
    # its initialisation is keyed as the gptq run at the same bits keys its checkpoint: one artifact for both
    assert alone.key("init") == run_graph(_plan(strategy="gptq", bits=4)).key("quantize")
    assert alone.get("train").inputs["model"] == alone.get("init").identity
    assert plan.config.run_id == _plan(strategy="kd-qat", bits=4, trainer="kd").config.run_id


def test_a_trainer_chain_is_one_stage_per_trainer_each_reading_the_one_before():
    pytest.importorskip("trl")
    chain = _plan(strategy="kd-qat", bits=3, trainer="kd,grpo",
                  trainer_opts=(("grpo.levels", "1,2"), ("kd.max_steps", "7"), ("learning_rate", "1e-5")))
    graph = run_graph(chain)
    assert _shape(graph) == [("init", QUANTIZER, None), ("train", TRAINER, "init"), ("train.grpo", TRAINER, "train"),
                             ("evaluate", ENGINE, "train.grpo"), ("profile", ENGINE, "evaluate")]
    kd, grpo = graph.get("train"), graph.get("train.grpo")
    assert grpo.inputs["model"] == kd.identity and grpo.inputs["base_model"] == chain.model.identity
    # NAME.key reaches that trainer; a plain key every trainer of the chain that has it
    assert kd.inputs["trainer_config"]["max_steps"] == 7 and grpo.inputs["trainer_config"]["levels"] == ("1", "2")
    assert kd.inputs["trainer_config"]["learning_rate"] == grpo.inputs["trainer_config"]["learning_rate"] == 1e-5
    # the chain's first stage is the very checkpoint the kd row alone trains (the cache shares it)
    alone = run_graph(_plan(strategy="kd-qat", bits=3, trainer="kd",
                            trainer_opts=(("max_steps", "7"), ("learning_rate", "1e-5"))))
    assert alone.key("train") == kd.key


@pytest.mark.parametrize("trainer, opts, message", [
    ("kd,kd", (), "names a trainer twice"),
    ("kd,", (), "separated by ','"),
    ("kd,grpo", (("sft.max_steps", "3"),), "'sft' is not a trainer of this run"),
    ("kd,grpo", (("bogus", "3"),), "no trainer of this run"),
])
def test_bad_chains_are_refused_in_one_line(trainer, opts, message):
    from harness.base.errors import UserError

    pytest.importorskip("trl")
    with pytest.raises(UserError, match=message):
        _plan(strategy="kd-qat", bits=3, trainer=trainer, trainer_opts=opts)


def test_the_runner_builds_exactly_the_graphs_stages(tmp_path):
    from harness.runs.cache import ArtifactCache
    from harness.runs.pipeline import Runner
    from harness.runs.store import Store

    plan = _plan(strategy="rtn", bits=8)
    graph = run_graph(plan)
    model_dir, artifacts = Runner(Store(tmp_path / "r.db"), ArtifactCache(tmp_path / "c")).materialize(
        plan, plan.config.run_id)
    assert artifacts["quantize_key"] == graph.key("quantize")
    assert model_dir == ArtifactCache(tmp_path / "c").path("quantize", graph.key("quantize"))
