"""What a run id and an artifact key depend on, and what they must not depend on."""

from __future__ import annotations

import dataclasses

import pytest

from harness.core.config import HASHED_UNLESS, RunConfig


def _plan(**kw):
    from harness.core.plugin_manager import get_registry
    from harness.runs.planning import plan

    return plan(RunConfig(device="cpu", limit=2, **kw), get_registry())


def test_fields_that_do_not_change_results_do_not_change_the_run_id():
    base = RunConfig()
    for change in ({"batch_size": 7}, {"data_dir": "/somewhere"}, {"device": "cpu"}):
        assert dataclasses.replace(base, **change).run_id == base.run_id, change


def test_fields_added_later_keep_old_ids_at_their_old_value_and_count_otherwise():
    base = RunConfig()
    assert not HASHED_UNLESS.keys() - {f.name for f in dataclasses.fields(RunConfig)}
    for name, legacy in HASHED_UNLESS.items():
        assert base.to_dict()[name] == legacy, f"{name}: the default must be the value earlier runs had"
        assert name not in base.hashed_dict()


def test_every_hashed_field_changes_the_run_id():
    base = RunConfig()
    changes = {"model": "other", "trainer": "grpo", "strategy": "rtn", "bits": 4, "seed": 1, "limit": 3,
               "prompt": "raw", "benchmarks": ("arith", "gsm8k"), "act_bits": 8, "kv_bits": 8}
    ids = {dataclasses.replace(base, **{k: v}).run_id for k, v in changes.items()}
    assert base.run_id not in ids and len(ids) == len(changes)


def test_the_code_that_made_an_artifact_is_part_of_its_key(monkeypatch):
    from harness.core import graph  # the graph reads the libraries' versions into each key
    from harness.core.graph import run_graph

    plan = _plan(strategy="rtn", bits=4)
    key = run_graph(plan).key("quantize")
    run_id = plan.config.run_id
    monkeypatch.setattr(type(plan.strategy), "version", "2")
    bumped = run_graph(plan).key("quantize")
    assert bumped != key
    monkeypatch.setattr(type(plan.strategy), "version", "1")
    assert run_graph(plan).key("quantize") == key

    real = graph.library_versions
    monkeypatch.setattr(graph, "library_versions",
                        lambda names: {**real(names),
                                       **({"llmcompressor": "99.0"} if "llmcompressor" in names else {})})
    assert run_graph(plan).key("quantize") not in (key, bumped)
    assert plan.config.run_id == run_id, "library versions are recorded with results, not hashed into run ids"


def test_trainer_and_library_versions_are_part_of_the_checkpoint_key(monkeypatch):
    pytest.importorskip("trl")
    from harness.core import graph  # the graph reads the libraries' versions into each key
    from harness.core.graph import run_graph

    plan = _plan(trainer="grpo")
    key = run_graph(plan).key("train")
    monkeypatch.setattr(type(plan.trainer), "version", "2")
    assert run_graph(plan).key("train") != key
    monkeypatch.setattr(type(plan.trainer), "version", "1")
    real = graph.library_versions
    monkeypatch.setattr(graph, "library_versions", lambda names: {**real(names), "trl": "0.0.1"})
    assert run_graph(plan).key("train") != key


def test_a_third_party_reference_strategy_is_a_baseline(tmp_path):
    """The baseline is whatever strategy declares ``is_reference``, not the string "none"."""
    from leaderboard_data import GOOD, WEAK, add_run

    from harness.leaderboard.generate import generate
    from harness.runs.store import Store

    store = Store(tmp_path / "r.db")
    ref = add_run(store, strategy="fp16-cast", bits=16, correct=GOOD, weight_bytes=6_000_000)
    store.add_artifacts(ref, {"reference": True})
    add_run(store, strategy="rtn", bits=4, correct=WEAK, weight_bytes=2_000_000)
    plain_none = add_run(store, strategy="none", bits=16, seed=1, correct=GOOD, weight_bytes=6_000_000)
    store.add_artifacts(plain_none, {"reference": False})  # a run that says it is not a reference
    store.close()
    rows = {r["strategy"]: r for r in generate(tmp_path / "r.db", tmp_path / "board")["rows"]}
    assert rows["rtn"]["baseline"]["against_key"] == rows["fp16-cast"]["key"]
    assert rows["fp16-cast"]["baseline"] is None


def test_the_built_in_full_precision_strategy_declares_itself_the_reference():
    from harness.core.plugin_manager import get_registry

    strategies = get_registry().strategies
    assert [s.name for s in strategies if s.is_reference] == ["none"]


def _jsonl(folder, rows):
    import json

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "gsm8k.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


ROWS = [{"id": f"g{i}", "problem": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(3)]


def test_the_data_a_run_evaluates_is_part_of_its_id(tmp_path, monkeypatch):
    """A benchmark's version and (for data read from files or a hub) its problems are in the run id;
    where the same data lives is not; a generated benchmark at version 1 keeps the ids runs had."""
    from harness.core.plugin_manager import get_registry

    here = _jsonl(tmp_path / "a", ROWS)
    there = _jsonl(tmp_path / "b", ROWS)
    changed = _jsonl(tmp_path / "c", [ROWS[0], {**ROWS[1], "answer": "5"}, ROWS[2]])  # within --limit 2
    ids = {name: _plan(benchmarks=("gsm8k",), data_dir=str(folder)).config.run_id
           for name, folder in (("here", here), ("there", there), ("changed", changed))}
    assert ids["here"] == ids["there"], "the same problems in another folder are the same run"
    assert ids["changed"] != ids["here"], "an edited data file is a new run, not a replay"

    arith = _plan()
    assert arith.config.data == () and arith.config.run_id == RunConfig(limit=2, bits=16).run_id
    bench = get_registry().benchmarks.get("arith")
    monkeypatch.setattr(type(bench), "version", "2")
    bumped = _plan()
    assert bumped.config.data == (("arith", "v2"),) and bumped.config.run_id != arith.config.run_id


def test_the_device_class_and_dtype_a_run_computes_in_are_part_of_its_id(monkeypatch):
    """cuda computes in bf16, cpu in fp32: the same configuration on a GPU is a new run; cpu keeps the
    ids every stored (CPU) run has. Which GPU (cuda:0, cuda:1) or where data lives does not count."""
    from harness.base.model import compute_identity
    from harness.runs import planning

    assert compute_identity("cpu") == "cpu:float32"
    assert compute_identity("cuda:1") == compute_identity("cuda") == "cuda:bfloat16"
    cpu = _plan()
    assert cpu.config.compute == "cpu:float32" and cpu.config.run_id == RunConfig(limit=2, bits=16).run_id
    monkeypatch.setattr(planning, "compute_identity", lambda device, dtype=None: "cuda:bfloat16")
    assert _plan().config.run_id != cpu.config.run_id
