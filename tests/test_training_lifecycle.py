"""Core owns the in-training lifecycle: a trainer that knows nothing of strategies still gets a
prepared model, and what is evaluated is the strategy's finalized, quantized artifact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import hookimpl
from harness.core.trainer import TrainContext, Trainer, TrainReport


class PlainSGD(Trainer):
    """A third party's trainer: a few SGD steps of next-token loss. It never mentions strategies."""

    name = "plain-sgd"
    description = "test trainer"
    seen: dict = {}

    def train(self, model, peft_config, ctx: TrainContext) -> TrainReport:
        import torch

        from harness.base.model import load_tokenizer

        if peft_config is not None:  # an adapter trainer wraps the model it is given
            from peft import get_peft_model

            model = get_peft_model(model, peft_config)
        tokenizer = load_tokenizer(ctx.model_dir)
        params = [p for p in model.parameters() if p.requires_grad]
        before = [p.detach().clone() for p in params]
        optimizer = torch.optim.SGD(params, lr=0.05)
        texts = [ctx.prompt_for(p) + str(p.answer) for p in ctx.problems[:4]]
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        model.train()
        for step in range(2):
            loss = model(**batch, labels=batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            ctx.on_log(step + 1, {"loss": float(loss)})
        PlainSGD.seen = {
            "module_types": {type(m).__name__ for m in model.modules()},
            "attributes": set(vars(getattr(model, "base_model", model)).keys()) | set(vars(model).keys()),
            "changed": sum(not torch.equal(a, b.detach()) for a, b in zip(before, params)),
            "trainable": len(params),
            "callbacks": list(ctx.callbacks),
        }
        return TrainReport(steps=2, seconds=0.0, model=model)


class Plugin:
    @hookimpl
    def register_trainers(self, register):
        register(PlainSGD())


@pytest.fixture
def with_trainer(install_plugin, monkeypatch):
    from harness.runs import evaluate as engine_stage

    install_plugin(Plugin(), "third-party-trainer")
    # after training, evaluation runs in a fresh process that re-plans the run through the installed
    # entry points, where a trainer defined in this test does not exist: evaluate here instead
    monkeypatch.setattr(engine_stage, "_in_fresh_process", engine_stage.evaluate_here)
    PlainSGD.seen = {}


def _run(tmp_path, strategy: str, bits: int) -> dict:
    from harness.core.config import RunConfig
    from harness.core.plugin_manager import get_registry
    from harness.runs.cache import ArtifactCache
    from harness.runs.pipeline import Runner
    from harness.runs.planning import plan
    from harness.runs.store import Store

    config = RunConfig(trainer="plain-sgd", strategy=strategy, bits=bits, limit=3, device="cpu")
    return Runner(Store(tmp_path / "r.db"), ArtifactCache(tmp_path / "cache")).run(plan(config, get_registry()))


@pytest.mark.slow
def test_a_trainer_that_never_mentions_strategies_trains_the_ste_prepared_model(with_trainer, tmp_path):
    from harness.strategies.ste import STATE_ATTR

    result = _run(tmp_path, "ste", 8)
    assert result["status"] == "complete"
    seen = PlainSGD.seen
    assert STATE_ATTR in seen["attributes"], "the trainer got the model ste prepared (fake quantization installed)"
    assert seen["changed"] > 0
    quant = result["artifacts"]["quant"]
    assert quant["weight_bytes"] < quant["fp_bytes"], "the evaluated artifact is the finalized, quantized one"
    model_dir = Path(tmp_path / "cache").rglob("config.json")
    configs = [json.loads(p.read_text()) for p in model_dir if "train" in p.parts]
    assert any(c.get("quantization_config", {}).get("quant_method") == "compressed-tensors" for c in configs)


@pytest.mark.slow
def test_a_trainer_that_never_mentions_strategies_trains_qlora_adapters_on_a_4bit_base(with_trainer, tmp_path):
    result = _run(tmp_path, "qlora", 4)
    assert result["status"] == "complete"
    seen = PlainSGD.seen
    assert "Linear4bit" in seen["module_types"], "the trainer got qlora's 4-bit base"
    assert seen["changed"] > 0 and seen["trainable"] > 0
    quant = result["artifacts"]["quant"]
    assert quant["weight_bytes"] < quant["fp_bytes"]


def test_a_trainer_gets_the_strategys_callbacks_and_a_trainer_without_a_model_is_an_error(tmp_path):
    from harness.base.errors import HarnessError
    from harness.core.strategy import Strategy
    from harness.runs import training

    class Marker(Strategy):
        name = "marker"

        def prepare(self, model_dir, ctx):
            return "prepared-model", None

        def train_callbacks(self, model, ctx):
            return [f"callback-for-{model}"]

        def recommended_lr(self, ctx, preset):
            return 0.5 if preset == "tiny" else None

        def finalize(self, model, out_dir, ctx):
            return f"finalized-{model}"

    class Echo(Trainer):
        name = "echo"

        def train(self, model, peft_config, ctx):
            return TrainReport(steps=1, seconds=0.0, model=f"trained-{model}",
                               extra={"callbacks": ctx.callbacks, "lr": ctx.recommended_lr("tiny")})

    ctx = TrainContext(model_dir=tmp_path, out_dir=tmp_path / "out", problems=[], prompt_for=str, config=None,
                       seed=0, device="cpu")
    report = training.train(Echo(), ctx, Marker(), quant=None)
    assert report.quant == "finalized-trained-prepared-model" and report.model is None
    assert report.extra == {"callbacks": ["callback-for-prepared-model"], "lr": 0.5}

    class Forgetful(Trainer):
        name = "forgetful"

        def train(self, model, peft_config, ctx):
            return TrainReport(steps=1, seconds=0.0)

    with pytest.raises(HarnessError, match="trainer 'forgetful' returned no model"):
        training.train(Forgetful(), ctx, Marker(), quant=None)
