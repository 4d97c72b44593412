"""kd-qat: group fake quantization, the distillation loss, PTQ initialisation and the real low-bit result."""

from __future__ import annotations

import json

import pytest
import torch

from harness.distillation import Example, collate, distillation_loss
from harness.errors import UserError
from harness.group_fake_quant import fake_quantize, integers
from harness.strategies.kd_qat import KDQATOptions, install, uninstall


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


@pytest.mark.parametrize("kl", ["forward", "reverse"])
def test_kd_loss_is_zero_for_identical_teacher_and_student(kl):
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    ids = torch.randint(0, 11, (2, 6))
    target = torch.zeros(2, 6, dtype=torch.bool)
    target[:, 3:] = True
    assert distillation_loss(logits, logits.clone(), ids, target, "kd", kl).item() == pytest.approx(0.0, abs=1e-6)
    other = distillation_loss(logits, torch.randn(2, 6, 11), ids, target, "kd", kl)
    assert other.item() > 0.01


def test_losses_count_only_completion_tokens():
    torch.manual_seed(0)
    batch = [Example([5, 6, 7, 8, 9], 3), Example([5, 6, 1, 2], 2)]
    ids, attention, target = collate(batch, pad_id=0, device="cpu")
    assert ids.tolist() == [[5, 6, 7, 8, 9], [5, 6, 1, 2, 0]]
    assert attention.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    logits = torch.randn(2, 5, 12)
    # next-token CE by hand: tokens 8, 9 (row 0) and 1, 2 (row 1), each from the logits one position earlier
    picks = [(0, 2, 8), (0, 3, 9), (1, 1, 1), (1, 2, 2)]
    expected = torch.stack([-torch.log_softmax(logits[b, t], -1)[tok] for b, t, tok in picks]).mean()
    assert distillation_loss(logits, None, ids, target, "ntp").item() == pytest.approx(expected.item(), rel=1e-5)
    # padding and prompt positions do not matter
    changed = logits.clone()
    changed[1, 4] += 100
    changed[0, 0] += 100
    assert distillation_loss(changed, None, ids, target, "ntp").item() == pytest.approx(expected.item(), rel=1e-5)


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
    from harness.plugins import get_registry

    strategy = get_registry().strategies.get("kd-qat")
    opts = strategy.make_options({"init": "rtn", "objective": "ntp", "steps": "5", "temperature": "0", "samples": "1"})
    assert (opts.init, opts.objective, opts.steps) == ("rtn", "ntp", 5)
    with pytest.raises(UserError, match="samples"):
        strategy.make_options({"temperature": "0", "samples": "4"})
    with pytest.raises(UserError, match="init"):
        strategy.make_options({"init": "awq3"})
    with pytest.raises(UserError, match="bits 8"):
        strategy.spec(8)
    assert KDQATOptions().kl == "forward"


def test_kd_qat_plans_without_a_trainer_and_ste_still_needs_one():
    from harness.config import RunConfig
    from harness.pipeline import plan
    from harness.plugins import get_registry

    registry = get_registry()
    p = plan(RunConfig(strategy="kd-qat", bits=3, limit=2), registry)
    assert p.in_training and p.trainer is None and p.strategy.needs_calibration
    with pytest.raises(UserError, match="needs a trainer"):
        plan(RunConfig(strategy="ste", bits=4, limit=2), registry)


def test_kd_qat_then_grpo_plans():
    from harness.config import RunConfig
    from harness.pipeline import plan
    from harness.plugins import get_registry

    p = plan(RunConfig(strategy="kd-qat", bits=3, trainer="grpo", limit=2), get_registry())
    assert p.in_training and p.trainer.name == "grpo" and p.strategy.needs_trainer is False


def _context(strategy, tokenizer, opts: dict, n: int = 16):
    from harness.benchmarks.arith import generate
    from harness.prompts import get_template
    from harness.strategy import QuantContext

    template = get_template("boxed")
    problems = generate("train")[:n]
    prompts = [template.render(p.problem, tokenizer) for p in problems]
    return QuantContext(
        spec=strategy.spec(3), options=strategy.make_options(opts), tokenizer=tokenizer,
        calibration=[pr + p.solution for pr, p in zip(prompts, problems)], calibration_prompts=prompts,
    )


@pytest.mark.slow
def test_prepare_and_finalize_write_a_three_bit_checkpoint(tiny_dir, tmp_path):
    from safetensors import safe_open

    from harness.model import load_model, load_tokenizer
    from harness.plugins import get_registry
    from harness.weights import stored_weight_bytes

    strategy = get_registry().strategies.get("kd-qat")
    tokenizer = load_tokenizer(tiny_dir)
    ctx = _context(strategy, tokenizer, {"init": "rtn", "steps": "4", "batch_size": "4", "max_new_tokens": "24"})
    student, peft = strategy.prepare(tiny_dir, ctx)
    assert peft is None
    master = student.model.layers[0].mlp.down_proj.parametrizations.weight.original
    assert master.requires_grad
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
    assert report.extra["steps"] == 4 and report.extra["examples"] == 32  # 16 prompts x 2 samples
    assert report.extra["init"] == "rtn" and len(report.extra["curve"]) == 4
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert f.get_tensor("model.layers.0.mlp.down_proj.weight_packed").dtype == torch.int32

    # the reloaded checkpoint computes what the fake-quantized student computed
    reloaded = load_model(out, "cpu")
    with torch.no_grad():
        logits = reloaded(ids).logits
    assert (logits - fake_logits).abs().max() < 0.05 * fake_logits.abs().max()
    assert (logits.argmax(-1) == fake_logits.argmax(-1)).float().mean() > 0.95


@pytest.mark.slow
def test_harness_run_kd_qat_end_to_end(tmp_path):
    from harness.cache import ArtifactCache
    from harness.config import RunConfig
    from harness.pipeline import Runner, plan
    from harness.plugins import get_registry
    from harness.store import Store

    opts = (("batch_size", "4"), ("init", "rtn"), ("max_new_tokens", "24"), ("steps", "3"))
    config = RunConfig(strategy="kd-qat", bits=3, limit=5, strategy_opts=opts)
    store = Store(tmp_path / "results.db")
    runner = Runner(store, ArtifactCache(tmp_path / "cache"))
    result = runner.run(plan(config, get_registry()))
    assert result["status"] == "complete"
    quant = result["artifacts"]["quant"]
    assert quant["weight_bytes"] < 0.3 * quant["fp_bytes"]
    assert "curve" not in quant["extra"]  # moved into the run's training curve
    curve = store.curve(result["run_id"])
    assert len(curve) == 3 and all("loss" in str(point) for point in curve)
    assert "arith" in result["metrics"]
