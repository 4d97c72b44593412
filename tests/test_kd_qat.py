"""kd-qat and the kd trainer: group fake quantization, PTQ initialisation, distillation through TRL,
a trainer chain's hand-over, and the real low-bit result."""

from __future__ import annotations

import json

import pytest
import torch

from harness.base.errors import UserError
from harness.strategies.kd_qat import install, uninstall
from harness.toolkit.group_fake_quant import fake_quantize, integers


def absmax_scale(weight: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """compressed-tensors' symmetric min-max scale: absmax / ((qmax - qmin) / 2)."""
    levels = 2**bits - 1
    return weight.reshape(weight.shape[0], -1, group_size).abs().amax(-1) / (levels / 2)


class Toy(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(256, 8, bias=False)
        self.head = torch.nn.Linear(8, 4, bias=False)

    def forward(self, x):
        return self.head(self.proj(x))


def test_three_bit_fake_quant_has_eight_levels_per_group():
    torch.manual_seed(0)
    # every group of 128 inputs spans (a bit more than) its 3-bit range, in a random order
    scale = torch.rand(8, 2) + 0.1
    span = torch.stack([torch.linspace(-4.4, 3.4, 128)[torch.randperm(128)] for _ in range(16)]).reshape(8, 2, 128)
    w = (span * scale.unsqueeze(-1)).reshape(8, 256)
    fq = fake_quantize(w, scale, 3)
    codes = fq.reshape(8, 2, 128) / scale.unsqueeze(-1)
    assert torch.allclose(codes, codes.round(), atol=1e-5)
    for row in range(8):
        for group in range(2):
            levels = codes[row, group].round().unique()
            assert len(levels) == 8
            assert levels.min() == -4 and levels.max() == 3
    # rounding is idempotent: quantized weights quantize to themselves
    assert torch.equal(fake_quantize(fq, scale, 3), fq)


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_codes_stay_in_the_signed_range(bits):
    w = torch.randn(4, 256) * 3
    scale = absmax_scale(w, bits, 128) / 2  # small scales: many values clamp
    codes = integers(w, scale, bits)
    assert codes.min() >= -(2 ** (bits - 1)) and codes.max() <= 2 ** (bits - 1) - 1


@pytest.mark.parametrize("kl, beta", [("forward", 0.0), ("reverse", 1.0)])
def test_kd_is_off_policy_gkd_with_the_asked_kl_and_ntp_is_sft(kl, beta, tmp_path):
    from trl import SFTConfig

    from harness.core.plugin_manager import get_registry
    from harness.core.trainer import TrainContext
    from harness.trainers.kd import trl_config

    kd = get_registry().trainers.get("kd")
    ctx = TrainContext(model_dir=tmp_path, out_dir=tmp_path / "o", problems=[], prompt_for=str, config=None,
                       seed=3, device="cpu")
    args = trl_config(ctx, kd.make_config({"kl": kl, "max_steps": "7"}), tmp_path)
    # lmbda=0: never the student's own samples; seq_kd off: the pre-sampled teacher data, as the study
    assert type(args).__name__ == "GKDConfig" and (args.lmbda, args.seq_kd, args.beta) == (0.0, False, beta)
    assert (args.max_steps, args.seed, args.learning_rate, args.per_device_train_batch_size) == (7, 3, 2e-4, 16)
    ntp = trl_config(ctx, kd.make_config({"objective": "ntp"}), tmp_path)
    assert type(ntp) is SFTConfig and ntp.learning_rate == args.learning_rate


def test_gkd_forward_kl_is_the_mean_over_completion_tokens():
    """What the kd trainer asks TRL for: KL(teacher || student) per completion token, averaged; by hand."""
    from harness.compat.trl import gkd

    torch.manual_seed(0)
    student, teacher = torch.randn(2, 5, 11), torch.randn(2, 5, 11)
    labels = torch.tensor([[-100, -100, 4, 5, 6], [-100, 1, 2, -100, -100]])
    by_hand = []
    for b, t in zip(*torch.nonzero(labels != -100, as_tuple=True)):
        p, log_q = torch.softmax(teacher[b, t], -1), torch.log_softmax(student[b, t], -1)
        by_hand.append((p * (p.log() - log_q)).sum())
    loss = gkd()[0].generalized_jsd_loss(student, teacher, labels=labels, beta=0.0)
    assert loss.item() == pytest.approx(torch.stack(by_hand).mean().item(), rel=1e-5)


def test_training_rows_learn_only_the_completion(tiny_dir):
    from harness.base.model import load_tokenizer
    from harness.benchmarks.arith import generate
    from harness.core.plugin_manager import get_registry
    from harness.core.prompts import get_template
    from harness.core.trainer import TrainContext
    from harness.trainers.kd import training_rows

    tokenizer = load_tokenizer(tiny_dir)
    template = get_template("boxed")
    problems = generate("train")[:6]
    ctx = TrainContext(model_dir=tiny_dir, out_dir=tiny_dir, problems=problems,
                       prompt_for=lambda p: template.render(p.problem, tokenizer), config=None, seed=0, device="cpu")
    opts = get_registry().trainers.get("kd").make_config({"data": "reference", "prompts": "4"})
    rows, stats = training_rows(None, tokenizer, ctx, opts)
    assert stats["examples"] == 4 and len(rows) == 4
    for row in rows:
        prompt_len = row["labels"].count(-100)
        assert row["labels"][prompt_len:] == row["input_ids"][prompt_len:]
        assert row["input_ids"][-1] == tokenizer.eos_token_id  # a reference solution ends
        completion = tokenizer.decode(row["input_ids"][prompt_len:], skip_special_tokens=True)
        assert any(p.solution == completion for p in problems)


def test_gradients_reach_master_weights_and_scales():
    torch.manual_seed(0)
    model = Toy()
    w = model.proj.weight.detach().clone()
    scale = absmax_scale(w, 3, 128).to(torch.bfloat16).float()  # checkpoints store bf16 scales
    init = fake_quantize(w, scale, 3)  # what a PTQ checkpoint holds: q * s
    install(model, {"proj": (init, scale)}, bits=3, train_scales=True)
    # step 0 computes exactly the PTQ model
    assert torch.equal(model.proj.weight, init)
    loss = model(torch.randn(16, 256)).pow(2).sum()
    loss.backward()
    master = model.proj.parametrizations.weight.original
    learned_scale = model.proj.parametrizations.weight[0].scale
    assert master.grad is not None and master.grad.abs().sum() > 0
    assert learned_scale.grad is not None and learned_scale.grad.abs().sum() > 0
    assert model.head.weight.grad.abs().sum() > 0


def test_uninstall_leaves_the_trained_integers_and_bf16_scales():
    torch.manual_seed(0)
    model = Toy()
    w = model.proj.weight.detach().clone()
    scale = absmax_scale(w, 3, 128)
    install(model, {"proj": (fake_quantize(w, scale, 3), scale)}, bits=3, train_scales=True)
    with torch.no_grad():  # a training step's worth of change
        model.proj.parametrizations.weight.original.add_(torch.randn_like(w) * 0.05)
        model.proj.parametrizations.weight[0].scale.mul_(1.01)
    seen = model.proj.weight.detach().clone()
    state, scales = uninstall(model)
    assert state.layer_names == ["proj"]
    assert not hasattr(model.proj, "parametrizations")
    s = scales["proj"]
    assert torch.equal(s, s.to(torch.bfloat16).float())
    codes = model.proj.weight.reshape(8, 2, 128) / s.unsqueeze(-1)
    assert torch.allclose(codes, codes.round(), atol=1e-5)
    assert codes.round().unique().numel() <= 8
    # the written weights are exactly what the fake-quantized layer computed with (bf16 scales)
    assert torch.allclose(model.proj.weight, seen, atol=1e-6)


def test_options_are_checked():
    from harness.core.plugin_manager import get_registry

    registry = get_registry()
    strategy = registry.strategies.get("kd-qat")
    assert strategy.make_options({"init": "rtn", "group_size": "0"}).init == "rtn"
    with pytest.raises(UserError, match="init"):
        strategy.make_options({"init": "awq3"})
    with pytest.raises(UserError, match="bits 8"):
        strategy.spec(8)
    kd = registry.trainers.get("kd")
    opts = kd.make_config({"objective": "ntp", "max_steps": "5", "temperature": "0", "samples": "1"})
    assert (opts.objective, opts.max_steps, opts.kl) == ("ntp", 5, "forward")
    with pytest.raises(UserError, match="samples"):
        kd.make_config({"temperature": "0", "samples": "4"})


def test_kd_qat_runs_its_default_trainer_and_ste_needs_one():
    from harness.core.config import RunConfig
    from harness.core.plugin_manager import get_registry
    from harness.runs.planning import plan

    registry = get_registry()
    p = plan(RunConfig(strategy="kd-qat", bits=3, limit=2), registry)
    assert p.in_training and p.trainer.name == "kd"
    assert (p.init.strategy.name, p.init.quant.spec.bits, p.init.quant.options.group_size) == ("gptq", 3, 128)
    with pytest.raises(UserError, match="needs a trainer"):
        plan(RunConfig(strategy="ste", bits=4, limit=2), registry)


def test_kd_qat_with_grpo_alone_is_fake_quantized_rl_without_distillation():
    from harness.core.config import RunConfig
    from harness.core.plugin_manager import get_registry
    from harness.runs.planning import plan

    p = plan(RunConfig(strategy="kd-qat", bits=3, trainer="grpo", limit=2), get_registry())
    assert [s.trainer.name for s in p.training] == ["grpo"]


def _context(strategy, tokenizer, opts: dict, n: int = 16):
    from harness.benchmarks.arith import generate
    from harness.core.prompts import get_template
    from harness.core.strategy import QuantContext

    template = get_template("boxed")
    problems = generate("train")[:n]
    prompts = [template.render(p.problem, tokenizer) for p in problems]
    return QuantContext(
        spec=strategy.spec(3), options=strategy.make_options(opts), tokenizer=tokenizer,
        calibration=[pr + p.solution for pr, p in zip(prompts, problems)],
    )


@pytest.mark.slow
def test_prepare_and_finalize_write_a_three_bit_checkpoint_a_later_stage_starts_from(tiny_dir, tmp_path):
    from safetensors import safe_open

    from harness.base.model import load_model, load_tokenizer
    from harness.base.weights import stored_weight_bytes
    from harness.core.plugin_manager import get_registry

    registry = get_registry()
    strategy = registry.strategies.get("kd-qat")
    tokenizer = load_tokenizer(tiny_dir)
    ctx = _context(strategy, tokenizer, {"init": "rtn"})
    # what core does first (the graph's init stage): quantize with the strategy kd-qat starts from
    name, opts = strategy.initialisation(ctx.spec, ctx.options)
    rtn = registry.strategies.get(name)
    rtn.quantize(tiny_dir, tmp_path / "init", _context(rtn, tokenizer, opts))
    with pytest.raises(RuntimeError, match="prepares from a quantized checkpoint"):
        strategy.prepare(tiny_dir, ctx)
    student, peft = strategy.prepare(tmp_path / "init", ctx)
    assert peft is None
    master = student.model.layers[0].mlp.down_proj.parametrizations.weight.original
    assert master.requires_grad
    with torch.no_grad():  # a few training steps' worth of change, master weights and a norm alike
        master.add_(torch.randn_like(master) * master.abs().mean())
        student.model.norm.weight.mul_(1.05)
    ids = tokenizer([ctx.calibration[0]], return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        fake_logits = student(ids).logits
    report = strategy.finalize(student, tmp_path / "out", ctx)

    out = tmp_path / "out"
    config = json.loads((out / "config.json").read_text())["quantization_config"]
    weights = config["config_groups"]["group_0"]["weights"]
    assert (weights["num_bits"], weights["group_size"], weights["symmetric"]) == (3, 128, True)
    assert report.weight_bytes == stored_weight_bytes(out)
    assert report.weight_bytes < 0.3 * report.fp_bytes
    assert 0.01 < report.extra["codes_changed_fraction"] < 0.1  # one layer of 28 moved
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert f.get_tensor("model.layers.0.mlp.down_proj.weight_packed").dtype == torch.int32

    # the reloaded checkpoint computes what the fake-quantized student computed
    reloaded = load_model(out, "cpu")
    with torch.no_grad():
        logits = reloaded(ids).logits
    assert (logits - fake_logits).abs().max() < 0.05 * fake_logits.abs().max()
    assert (logits.argmax(-1) == fake_logits.argmax(-1)).float().mean() > 0.95

    # a chain's next stage (kd,grpo) prepares from that checkpoint: it starts where the last one ended
    tokenizer.save_pretrained(out)
    again, _ = strategy.prepare(out, ctx)
    with torch.no_grad():
        resumed = again(ids).logits
    assert torch.allclose(resumed, logits, atol=1e-3 * logits.abs().max().item())
    assert again.model.norm.weight.allclose(reloaded.model.norm.weight)
    with pytest.raises(UserError, match="3-bit with group size 128; this run asks for 4-bit"):
        strategy.prepare(out, _context_bits(strategy, tokenizer, 4))


def _context_bits(strategy, tokenizer, bits: int):
    import dataclasses

    ctx = _context(strategy, tokenizer, {})
    return dataclasses.replace(ctx, spec=strategy.spec(bits))


@pytest.mark.slow
def test_harness_run_kd_qat_then_a_chain_that_reuses_its_stage(tmp_path):
    from harness.core.config import RunConfig
    from harness.core.graph import run_graph
    from harness.core.plugin_manager import get_registry
    from harness.runs.cache import ArtifactCache
    from harness.runs.pipeline import Runner
    from harness.runs.planning import plan
    from harness.runs.store import Store

    kd = (("batch_size", "4"), ("max_new_tokens", "24"), ("max_steps", "3"), ("prompts", "12"))
    store = Store(tmp_path / "results.db")
    runner = Runner(store, ArtifactCache(tmp_path / "cache"))
    config = RunConfig(strategy="kd-qat", bits=3, limit=5, strategy_opts=(("init", "rtn"),), trainer_opts=kd)
    result = runner.run(plan(config, get_registry()))
    assert result["status"] == "complete" and result["config"]["trainer"] == "kd"
    quant = result["artifacts"]["quant"]
    assert quant["weight_bytes"] < 0.3 * quant["fp_bytes"]
    assert result["artifacts"]["init"]["strategy"] == "rtn"
    # the init stage is the very checkpoint `--strategy rtn --bits 3` makes (the cache shares it)
    rtn = plan(RunConfig(strategy="rtn", bits=3, limit=5), get_registry())
    assert result["artifacts"]["init"]["key"] == run_graph(rtn).key("quantize")
    curve = store.curve(result["run_id"])
    assert [p["step"] for p in curve] == [1, 2, 3] and all("loss" in p for p in curve)
    assert "arith" in result["metrics"]

    chain = RunConfig(strategy="kd-qat", bits=3, limit=5, strategy_opts=(("init", "rtn"),), trainer="kd,grpo",
                      trainer_opts=(*((f"kd.{k}", v) for k, v in kd), ("grpo.max_steps", "2"),
                                    ("grpo.per_device_train_batch_size", "16")))
    chained = Runner(store, ArtifactCache(tmp_path / "cache")).run(plan(chain, get_registry()))
    stages = chained["artifacts"]["train_chain"]
    assert [s["stage"] for s in stages] == ["train", "train.grpo"]
    assert stages[0]["key"] == result["artifacts"]["train"]["key"]  # the kd stage came from the cache
    curve = store.curve(chained["run_id"])
    assert [(p["step"], p["stage"]) for p in curve] == [(1, "train"), (2, "train"), (3, "train"),
                                                         (4, "train.grpo"), (5, "train.grpo")]
