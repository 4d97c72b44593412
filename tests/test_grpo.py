"""GRPO / Dr. GRPO through TRL on tiny-arith, alone and with the in-training strategies."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.base.errors import UserError
from harness.core.trainer import TrainContext
from harness.trainers.grpo import GRPO, PRESETS, DrGRPO, grpo_config

#: a few small steps: 2 prompts x 4 completions of 32 tokens, on the levels tiny-arith does not solve yet
SMALL = {"max_steps": "2", "num_generations": "4", "per_device_train_batch_size": "8",
         "max_completion_length": "32", "levels": "3,4,5", "save_steps": "1"}


@dataclass
class Case:
    """A training run as core would start it: the trainer's context, and the in-training strategy
    (with its quantization context) that core's lifecycle (harness.runs.training) applies around it."""

    ctx: TrainContext
    strategy: Any = None
    quant: Any = None

    @property
    def out_dir(self) -> Path:
        return self.ctx.out_dir

    @out_dir.setter
    def out_dir(self, value: Path) -> None:
        self.ctx.out_dir = value

    def train(self, trainer):
        from harness.runs import training

        return training.train(trainer, self.ctx, self.strategy, self.quant)


def make_ctx(tiny_dir: Path, tmp_path: Path, trainer, opts: dict, strategy=None, strategy_opts=None, bits=None):
    from harness.base.model import load_tokenizer
    from harness.benchmarks.arith import generate
    from harness.core.prompts import get_template
    from harness.core.strategy import QuantContext

    tok = load_tokenizer(tiny_dir)
    template = get_template("boxed")
    quant = None
    if strategy is not None:
        quant = QuantContext(
            spec=strategy.spec(bits), options=strategy.make_options(strategy_opts or {}), tokenizer=tok
        )
    logged: list[tuple[int, dict]] = []
    ctx = TrainContext(
        model_dir=tiny_dir,
        out_dir=tmp_path / "out",
        problems=list(generate("train")),
        prompt_for=lambda p: template.render(p.problem, tok),
        config=trainer.make_config(opts),
        seed=0,
        device="cpu",
        checkpoint_dir=tmp_path / "checkpoints",
        on_log=lambda step, logs: logged.append((step, logs)),
    )
    return Case(ctx, strategy, quant), logged


def test_presets_and_option_checks():
    tiny = GRPO().make_config({})
    assert tiny.preset == "tiny" and tiny.learning_rate is None  # resolved at train time (strategy may recommend)
    assert tiny.num_generations == PRESETS["tiny"]["num_generations"]
    paper = GRPO().make_config({"preset": "paper"})
    assert (paper.per_device_train_batch_size, paper.gradient_accumulation_steps, paper.num_generations) == (4, 8, 8)
    assert (paper.max_completion_length, paper.max_steps, paper.temperature, paper.beta) == (512, -1, 1.0, 0.0)
    assert GRPO().make_config({"preset": "paper", "max_steps": "5"}).max_steps == 5  # explicit beats preset
    with pytest.raises(UserError, match="divisible by num_generations"):
        GRPO().make_config({"num_generations": "3"})
    with pytest.raises(UserError, match="no option"):
        GRPO().make_config({"lr": "1e-4"})
    with pytest.raises(UserError, match="scale_rewards"):
        DrGRPO().make_config({"scale_rewards": "group"})


def test_dr_grpo_is_trls_own_loss(tmp_path):
    dr = DrGRPO().make_config({})
    ctx = TrainContext(
        model_dir=Path("."), out_dir=tmp_path, problems=[], prompt_for=str, config=dr, seed=3, device="cpu"
    )
    args = grpo_config(ctx, dr, tmp_path, 1e-5)
    assert (args.loss_type, args.scale_rewards) == ("dr_grpo", "none")
    assert (args.bf16, args.fp16, args.use_cpu, args.seed) == (False, False, True, 3)
    plain = grpo_config(ctx, GRPO().make_config({}), tmp_path, 1e-5)
    assert (plain.loss_type, plain.scale_rewards, plain.beta) == ("grpo", "group", 0.0)


def _params(model, pick):
    return {n: p.detach().float().clone() for n, p in model.named_parameters() if pick(n)}


@pytest.mark.slow
def test_grpo_changes_the_weights_and_logs_both_rewards(tiny_dir, tmp_path):
    import torch

    from harness.base.model import load_model

    ctx, logged = make_ctx(tiny_dir, tmp_path, GRPO(), {**SMALL, "learning_rate": "1e-4"})
    report = ctx.train(GRPO())
    assert report.steps == 2 and report.seconds > 0
    assert [row["step"] for row in report.curve] == [1, 2] and [s for s, _ in logged] == [1, 2]
    for key in ("reward", "rewards/correctness_reward/mean", "rewards/format_reward/mean",
                "completions/mean_length", "grad_norm", "loss"):
        assert key in report.curve[0], key
    assert report.extra["trl_config"]["loss_type"] == "grpo"

    before = load_model(tiny_dir, "cpu")
    after = load_model(ctx.out_dir, "cpu")
    changed = [n for n, p in after.named_parameters() if not torch.equal(p, before.get_parameter(n))]
    assert changed, "two GRPO steps at lr 1e-4 left every weight unchanged"

    # a crash after the last checkpoint resumes from it instead of starting again
    again, _ = make_ctx(tiny_dir, tmp_path, GRPO(), {**SMALL, "learning_rate": "1e-4"})
    again.out_dir = tmp_path / "out2"
    resumed = again.train(GRPO())
    assert resumed.extra["resumed_from"] == "checkpoint-2" and resumed.steps == 2


@pytest.mark.slow
def test_grpo_with_ste_finalizes_into_integer_weights(tiny_dir, tmp_path):
    from harness.base.model import load_model
    from harness.base.weights import bf16_bytes
    from harness.strategies.ste import STE

    ctx, _ = make_ctx(tiny_dir, tmp_path, GRPO(), {**SMALL, "learning_rate": "1e-4"}, STE(), {}, 8)
    report = ctx.train(GRPO())
    assert report.steps == 2 and report.quant is not None
    assert report.quant.weight_bytes < bf16_bytes(load_model(tiny_dir, "cpu"))
    assert report.quant.extra["estimator"] == "ste"
    config = (ctx.out_dir / "config.json").read_text()
    assert "compressed-tensors" in config
    STE().load(ctx.out_dir, "cpu")  # loads as a plain transformers model


@pytest.mark.slow
def test_grpo_with_qlora_trains_adapters_on_a_4bit_base(tiny_dir, tmp_path, monkeypatch):
    import bitsandbytes as bnb
    import torch

    from harness.base.model import load_model
    from harness.base.weights import bf16_bytes
    from harness.strategies import qlora

    seen = {}
    original = qlora.QLoRA.finalize

    def spy(self, model, out_dir, quant):
        seen["lora"] = _params(model, lambda n: "lora_" in n)
        seen["linear4bit"] = sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
        return original(self, model, out_dir, quant)

    monkeypatch.setattr(qlora.QLoRA, "finalize", spy)
    strategy = qlora.QLoRA()
    ctx, _ = make_ctx(tiny_dir, tmp_path, GRPO(), SMALL, strategy, {"eval_mode": "adapter"}, 4)
    initial, peft_config = strategy.prepare(tiny_dir, ctx.quant)
    from peft import get_peft_model

    torch.manual_seed(0)
    start = _params(get_peft_model(initial, peft_config), lambda n: "lora_" in n)
    report = ctx.train(GRPO())

    assert report.extra["learning_rate"] == qlora.RECOMMENDED_LR["tiny"]  # strategy's rate, trainer's unset
    assert seen["linear4bit"] == 7 * 4, "every projection of every layer stays a bnb Linear4bit"
    lora_b = [n for n in seen["lora"] if "lora_B" in n]
    assert lora_b and all(not torch.equal(seen["lora"][n], start[n]) for n in lora_b), "LoRA B matrices must train"
    assert report.quant.weight_bytes < bf16_bytes(load_model(tiny_dir, "cpu"))
    model = strategy.load(ctx.out_dir, "cpu")
    assert type(model).__name__.startswith("PeftModel")
