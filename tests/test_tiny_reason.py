"""tiny-reason and its benchmark ``chain``: deterministic levelled problems, shipped weights that load
and answer, an identity of its own, and tiny-arith left as it was."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from harness import tiny
from harness.base.errors import UserError
from harness.base.model import resolve_model
from harness.benchmarks import chain
from harness.runs.tiny_recipe import recipe_for

EQUATION = re.compile(r"(\d+) ([-+*]) (\d+) = (\d+)\.")


def test_chain_is_registered_as_a_generated_benchmark():
    from harness.core.plugin_manager import get_registry

    bench = get_registry().benchmarks.get("chain")
    assert bench.generated and bench.version == "1" and set(bench.splits) == {"test", "train", "validation"}
    assert len(bench.load("test")) == 5 * chain.TEST_PER_LEVEL


def test_test_split_is_deterministic_and_interleaved():
    fresh = chain.generate.__wrapped__("test")  # bypass the cache: generated again from the seed
    assert fresh == chain.generate("test")
    assert [p.level for p in fresh[:10]] == ["1", "2", "3", "4", "5"] * 2
    assert len({p.id for p in fresh}) == len(fresh)
    assert chain.generate.__wrapped__("test", seed=1) != fresh


def test_each_level_chains_its_steps_through_carried_values():
    by_level: dict[str, list[int]] = {}
    for p in chain.generate("test"):
        steps = EQUATION.findall(p.solution)
        assert len(steps) == chain.operations(int(p.level)) == int(p.level)
        assert re.match(r"\D*(\d+)\.", p.problem).group(1) == steps[0][0]  # starts from the problem's number
        for i, (a, op, b, result) in enumerate(steps):
            assert int(result) == {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
            assert 0 <= int(result) <= chain.MAX_VALUE
            if i:
                assert a == steps[i - 1][3]  # each step works on the previous step's result
        assert p.answer == steps[-1][3] and p.solution.endswith(f"\\boxed{{{p.answer}}}.")
        by_level.setdefault(p.level, []).append(len(p.solution))
    assert sorted(by_level) == ["1", "2", "3", "4", "5"]
    assert all(len(v) == chain.TEST_PER_LEVEL for v in by_level.values())
    means = [sum(by_level[k]) / len(by_level[k]) for k in sorted(by_level)]
    assert means == sorted(means) and means[-1] > 2 * means[0]  # the budget a solution needs grows with level


def test_train_split_never_holds_a_test_problem():
    train = chain.generate("train")
    assert len(train) == chain.TRAIN_SIZE
    assert {p.level for p in train} == {"1", "2", "3", "4", "5"}
    assert not {p.problem for p in train} & {p.problem for p in chain.generate("test")}


def test_model_table_names_both_and_keeps_tiny_arith_the_default():
    from harness.runs.tiny_recipe import TinyRecipe

    assert tiny.NAME == "tiny-arith" and set(tiny.MODELS) >= {"tiny-arith", "tiny-reason"}
    assert recipe_for(tiny.get("tiny-arith")) == TinyRecipe()  # tiny-arith's recipe is the defaults, unchanged
    shipped = json.loads((tiny.weights_dir() / "recipe.json").read_text())["recipe"]
    assert all(getattr(TinyRecipe(), k) == v for k, v in shipped.items())
    assert tiny.get("tiny-reason").benchmark == "chain"
    with pytest.raises(UserError, match="tiny-reason"):
        tiny.get("tiny-resaon")


def test_shipped_tiny_reason_is_small_and_built_by_its_recipe():
    from transformers import AutoConfig

    folder = tiny.weights_dir("tiny-reason")
    cfg = AutoConfig.from_pretrained(folder)
    assert cfg.model_type == "qwen3"
    assert cfg.hidden_size % 128 == 0 and cfg.intermediate_size % 128 == 0  # group-128 quantizers fit
    assert (folder / "model.safetensors").stat().st_size < 20 * 2**20
    report = json.loads((folder / "recipe.json").read_text())
    assert report["recipe"] == json.loads(json.dumps(dataclasses.asdict(recipe_for(tiny.get("tiny-reason")))))


def test_resolve_tiny_reason_has_its_own_identity():
    reason, arith = resolve_model("tiny-reason"), resolve_model("tiny-arith")
    assert reason.is_local and reason.identity.startswith("tiny-reason:")
    assert reason.identity != arith.identity and reason.source != arith.source


@pytest.mark.slow
def test_shipped_tiny_reason_answers_level_one():
    import torch

    from harness.base.model import load_model, load_tokenizer
    from harness.core.prompts import get_template
    from harness.grading import grade

    folder = tiny.weights_dir("tiny-reason")
    tok, model = load_tokenizer(folder), load_model(folder)
    problems = [p for p in chain.generate("test") if p.level == "1"][:16]
    prompts = [get_template("boxed").render(p.problem, tok) for p in problems]
    batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=32, do_sample=False)
    texts = tok.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    assert sum(grade(t, p.answer) for t, p in zip(texts, problems)) >= 8


@pytest.mark.slow
def test_tiny_reason_rebuild_is_deterministic(tmp_path):
    from safetensors.torch import load_file

    from harness.runs.tiny_recipe import build

    recipe = recipe_for(tiny.get("tiny-reason"), steps=2)
    a = build(tmp_path / "a", recipe, progress=False)
    b = build(tmp_path / "b", recipe, progress=False)
    wa, wb = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)
    assert a["final_loss"] == b["final_loss"]


def test_an_embedded_models_own_benchmark_is_its_default():
    """`harness run --model tiny-reason` evaluates and trains on chain; tiny-arith's runs keep their ids."""
    from harness.core.config import RunConfig
    from harness.core.resolve import resolve_config

    reason = resolve_config({"model": "tiny-reason"})
    assert (reason.benchmarks, reason.train_data) == (("chain",), "chain")
    assert resolve_config({}).run_id == RunConfig().run_id  # arith, exactly as before the default moved
    assert resolve_config({"model": "tiny-reason", "benchmarks": "arith"}).benchmarks == ("arith",)
    assert resolve_config({"model": "Qwen/Qwen3-0.6B"}).benchmarks == ("arith",)
