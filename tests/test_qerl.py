"""qerl: QLoRA + adaptive quantization noise (AQN) in the RMSNorm weights, through the trainer's callbacks."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from test_grpo import SMALL, make_ctx

from harness.base.errors import UserError
from harness.cli import cli
from harness.strategies.qerl import NOISE_KEY, QeRL, QeRLOptions, noise_scale


def test_schedule_decays_exponentially_in_stages():
    paper = QeRLOptions()
    assert (paper.noise_start, paper.noise_end, paper.stages) == (5e-2, 5e-4, 10)
    scales = [noise_scale(s, 100, paper) for s in range(100)]
    assert scales[0] == pytest.approx(5e-2) and scales[-1] == pytest.approx(5e-4)
    stages = [scales[i] for i in range(0, 100, 10)]
    assert all(scales[i] == stages[i // 10] for i in range(100)), "constant within a stage"
    ratios = [b / a for a, b in zip(stages, stages[1:])]
    assert ratios == pytest.approx([(5e-4 / 5e-2) ** (1 / 9)] * 9), "one geometric factor per stage"

    linear = QeRLOptions(schedule="linear", stages=3)
    assert [noise_scale(s, 30, linear) for s in (0, 10, 29)] == pytest.approx([5e-2, 2.525e-2, 5e-4])
    assert {noise_scale(s, 30, QeRLOptions(schedule="constant")) for s in range(30)} == {5e-2}
    # the published script: 1e-2 -> 1e-4 over 10 stages after a noise-free first interval
    script = QeRLOptions(noise_start=1e-2, noise_end=1e-4, noise_free_start=True)
    assert [noise_scale(s, 110, script) for s in (0, 9, 10, 109)] == pytest.approx([0, 0, 1e-2, 1e-4])
    assert noise_scale(0, 100, QeRLOptions(aqn=False)) == 0.0


@pytest.mark.parametrize(
    "opts, expected",
    [
        ({"noise_start": "-0.01"}, "noise_start must be a finite number >= 0, got -0.01"),
        ({"noise_end": "-1e-4"}, "noise_end must be a finite number >= 0"),
        ({"noise_start": "1e-3", "noise_end": "1e-2"}, "noise_end (0.01) must not exceed noise_start (0.001)"),
        ({"stages": "0"}, "stages must be >= 1, got 0"),
        ({"schedule": "cosine"}, "choose one of exponential, linear, constant"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(opts, expected):
    with pytest.raises(UserError, match="strategy 'qerl'"):
        QeRL().make_options(opts)
    args = ["run", "--strategy", "qerl", "--trainer", "grpo"]
    for key, value in opts.items():
        args += ["--strategy-opt", f"{key}={value}"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert expected in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_qerl_without_a_trainer_is_refused():
    result = CliRunner().invoke(cli, ["run", "--strategy", "qerl"], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert "strategy 'qerl' quantizes during training and needs a trainer" in result.output
    assert len(result.output.strip().splitlines()) == 1


def _rms(module, x):
    """What an RMSNorm does to ``x`` before scaling by its weight."""
    import torch

    eps = getattr(module, "variance_epsilon", getattr(module, "eps", 1e-6))
    x = x.float()
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def _dequantized(data, state, scales_dtype=None):
    """What a 4-bit weight means: its float values, from whichever layout bitsandbytes keeps it in.

    On a CPU with AVX512-BF16, bitsandbytes repacks a ``Params4bit`` in place at its first inference forward
    (``Linear4bit.forward``: ``_convert_weight_packed_for_cpu``): the 4-bit codes reordered into its CPU
    kernel's blocks, the double-quantized block scales dequantized, transposed and rounded to bfloat16
    (``quant_state.packing_format_for_cpu``). ``dequantize_4bit`` reads only the plain layout, so the
    reordering is undone here on copies, and the scales are put back in block order. ``scales_dtype``
    rounds the scales as that repack does, to compare a weight with its repacked self exactly.
    """
    import copy

    from bitsandbytes.functional import (
        _convert_weight_packed_for_cpu_inverse,
        dequantize_4bit,
        dequantize_blockwise,
    )

    state = copy.copy(state)  # attributes are reassigned below, never written into: the weight is untouched
    if getattr(state, "packing_format_for_cpu", False):
        state.original_nested = False  # undo the layout only (bitsandbytes would quantize the scales again)
        data, state = _convert_weight_packed_for_cpu_inverse(data, state)
        state.absmax = state.absmax.T.reshape(-1)  # [K / blocksize, N] -> one scale per block, in order
    elif state.nested:
        state.absmax = dequantize_blockwise(state.absmax, state.state2) + state.offset
        state.nested, state.state2, state.offset = False, None, None
    if scales_dtype is not None:
        state.absmax = state.absmax.to(scales_dtype)
    state.absmax = state.absmax.float()
    return dequantize_4bit(data, state)


def _snapshot(weight):
    """A copy of a weight to compare later: a 4-bit one by its codes and scales (see :func:`_dequantized`)."""
    import copy

    if getattr(weight, "quant_state", None) is not None:
        return weight.data.clone(), copy.deepcopy(weight.quant_state)
    return weight.detach().clone()


def _unchanged(weight, before) -> bool:
    """``weight`` means what it meant at :func:`_snapshot`, whatever layout bitsandbytes moved it to since."""
    import torch

    if isinstance(before, tuple):
        data, state = before
        repacked = getattr(weight.quant_state, "packing_format_for_cpu", False)
        expected = _dequantized(data, state, torch.bfloat16 if repacked else None)
        return torch.equal(_dequantized(weight.data, weight.quant_state), expected)
    return torch.equal(weight, before)


def test_forward_sees_the_scheduled_noise_and_stored_weights_never_change(tiny_dir):
    """The callback alone, on the prepared NF4 model: at each simulated step the RMSNorm weights the
    forward multiplies by are the stored ones plus noise whose std is that step's scheduled scale."""
    import copy

    import torch

    from harness.core.strategy import QuantContext
    from harness.strategies.qerl import target_norms

    strategy = QeRL()
    opts = strategy.make_options({})
    ctx = QuantContext(spec=strategy.spec(4), options=opts, seed=0)
    model, _ = strategy.prepare(tiny_dir, ctx)
    norms = dict(target_norms(model, opts.norms))
    assert len(norms) == 2 * model.config.num_hidden_layers
    stored = {name: m.weight.detach().clone() for name, m in norms.items()}
    # the 4-bit base by what it means (codes and scales), the other weights as stored: on some CPUs bitsandbytes
    # repacks a 4-bit weight at the first forward (see _dequantized); nothing else may change it
    base4 = {n: (p.data.clone(), copy.deepcopy(p.quant_state)) for n, p in model.named_parameters()
             if getattr(p, "quant_state", None) is not None}
    assert len(base4) == 7 * model.config.num_hidden_layers
    base = {n: p.detach().clone() for n, p in model.named_parameters() if "norm" not in n and n not in base4}

    seen: dict[str, tuple] = {}

    def spy(name):
        def hook(module, inputs, output):
            seen[name] = (module.weight.detach().clone(), _rms(module, inputs[0]), output.detach())
        return hook

    handles = [m.register_forward_hook(spy(name)) for name, m in norms.items()]
    (callback,) = strategy.train_callbacks(model, ctx)
    callback.on_train_begin(None, None, None, model=model)
    ids = torch.randint(4, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
    total = 40
    rng_before = torch.get_rng_state()
    noise_at: dict[int, torch.Tensor] = {}
    for step in (0, 3, 4, 17, 39):
        callback.on_step_begin(None, SimpleNamespace(global_step=step, max_steps=total), None)
        with torch.no_grad():
            model(input_ids=ids)
        diffs = []
        for name, (weight, normed, output) in seen.items():
            # the forward's output is the normalised input times exactly these (noisy) weights
            torch.testing.assert_close(output.float(), weight.float() * normed, rtol=1e-5, atol=1e-5)
            diffs.append((weight - stored[name]).flatten())
        diff = torch.cat(diffs)
        expected = noise_scale(step, total, opts)
        assert diff.std().item() == pytest.approx(expected, rel=0.1), f"step {step}"
        assert abs(diff.mean().item()) < 4 * expected / math.sqrt(diff.numel())
        noise_at[step] = diff
        logs = {"loss": 0.0}
        callback.on_log(None, None, None, logs=logs)
        assert logs[NOISE_KEY] == expected
        for name, module in norms.items():  # the stored weight is untouched
            assert torch.equal(module.parametrizations.weight.original, stored[name])
    assert noise_scale(0, total, opts) == noise_scale(3, total, opts) != noise_scale(4, total, opts)
    assert not torch.equal(noise_at[3], noise_at[0]), "a fresh draw every step, within a stage too"
    assert torch.equal(torch.get_rng_state(), rng_before), "the noise has its own generator"
    callback.on_step_begin(None, SimpleNamespace(global_step=17, max_steps=total), None)
    with torch.no_grad():
        model(input_ids=ids)
    assert torch.equal(torch.cat([(seen[n][0] - stored[n]).flatten() for n in norms]), noise_at[17]), \
        "the noise of a step is a function of (seed, step): a resumed run draws the same"

    callback.on_train_end(None, None, None)
    for h in handles:
        h.remove()
    for name, module in norms.items():
        assert not hasattr(module, "parametrizations")
        assert torch.equal(module.weight, stored[name])
    for n, p in model.named_parameters():
        if n in base:
            assert torch.equal(p, base[n]), n
        elif n in base4:
            data, state = base4[n]
            repacked = getattr(p.quant_state, "packing_format_for_cpu", False)
            expected = _dequantized(data, state, torch.bfloat16 if repacked else None)
            assert torch.equal(_dequantized(p.data, p.quant_state), expected), n
    assert QeRL().train_callbacks(model, QuantContext(spec=ctx.spec, options=QeRLOptions(aqn=False))) == []


def _train(tiny_dir, tmp_path, strategy, strategy_opts, name):
    import transformers

    from harness.trainers.grpo import GRPO

    out = tmp_path / name
    ctx, _ = make_ctx(tiny_dir, out, GRPO(), SMALL, strategy, strategy_opts, 4)
    transformers.set_seed(0)  # each sweep cell is a fresh process: start both runs from one RNG state
    return ctx.train(GRPO())


@pytest.mark.slow
def test_without_aqn_the_training_is_qloras_step_for_step(tiny_dir, tmp_path):
    from harness.strategies.qlora import QLoRA

    qlora = _train(tiny_dir, tmp_path, QLoRA(), {}, "qlora")
    qerl = _train(tiny_dir, tmp_path, QeRL(), {"aqn": "false"}, "qerl")
    keys = ("loss", "reward", "entropy", "grad_norm", "completions/mean_length")
    assert [p["step"] for p in qerl.curve] == [1, 2]
    for key in keys:
        assert [p[key] for p in qerl.curve] == [p[key] for p in qlora.curve], key
    assert all(NOISE_KEY not in p for p in qerl.curve)


@pytest.mark.slow
def test_grpo_with_aqn_logs_entropy_and_noise_and_keeps_the_base(tiny_dir, tmp_path, monkeypatch):
    """A real GRPO run: the noise the forwards saw follows the schedule, the curve records it beside
    TRL's entropy, and the 4-bit base and the stored RMSNorm weights end as they started."""
    import torch

    from harness.strategies import qerl
    from harness.strategies.qlora import QLoRA

    start: list[tuple[str, torch.nn.Module, torch.Tensor]] = []
    seen: list[tuple[str, torch.Tensor]] = []
    prepare, finalize = qerl.QeRL.prepare, qerl.QeRL.finalize

    def spy_prepare(self, model_dir, ctx):
        model, lora = prepare(self, model_dir, ctx)
        start.extend((n, m, _snapshot(m.weight)) for n, m in model.named_modules()
                     if isinstance(getattr(m, "weight", None), torch.Tensor))
        for name, module in qerl.target_norms(model, ctx.options.norms):
            def hook(m, inputs, output, name=name):
                if hasattr(m, "parametrizations"):
                    seen.append((name, (m.weight - m.parametrizations.weight.original).detach().flatten()))
            module.register_forward_hook(hook)
        return model, lora

    def spy_finalize(self, model, out_dir, ctx):
        assert len(start) > 8 * 4  # the 4-bit projections, the norms, the embedding
        for name, module, before in start:  # PEFT wraps the projections but keeps these modules
            assert _unchanged(module.weight, before), f"{name} changed during training"
        return finalize(self, model, out_dir, ctx)

    monkeypatch.setattr(qerl.QeRL, "prepare", spy_prepare)
    monkeypatch.setattr(qerl.QeRL, "finalize", spy_finalize)
    report = _train(tiny_dir, tmp_path, qerl.QeRL(), {}, "qerl")

    opts = QeRLOptions()
    scheduled = [noise_scale(step, 2, opts) for step in (0, 1)]
    assert [p[NOISE_KEY] for p in report.curve] == scheduled
    assert all(p["entropy"] > 0 for p in report.curve)
    # group the forwards by step: the noise of a module changes only when a step begins
    per_module: dict[str, list[torch.Tensor]] = {}
    for name, diff in seen:
        steps = per_module.setdefault(name, [])
        if not steps or not torch.equal(steps[-1], diff):
            steps.append(diff)
    assert {len(v) for v in per_module.values()} == {2}
    for step, expected in enumerate(scheduled):
        pooled = torch.cat([v[step] for v in per_module.values()])
        assert pooled.std().item() == pytest.approx(expected, rel=0.1)
    assert report.quant.extra["aqn"]["on"] is True and report.quant.extra["rank"] == 8
    assert type(QLoRA().load(tmp_path / "qerl" / "out", "cpu")).__name__ == "Qwen3ForCausalLM"


def test_training_curves_of_a_sweeps_rows_on_one_figure(tmp_path):
    from harness.core.config import RunConfig
    from harness.reports.training_curves import mean_curve, moving_average, plot, summary_table, sweep_curves
    from harness.runs.store import Store

    store = Store(tmp_path / "r.db")
    for order, (row, strategy) in enumerate((("GRPO", "none"), ("QeRL 4-bit", "qerl"))):
        for seed in (0, 1):
            config = RunConfig(trainer="grpo", strategy=strategy, bits=4 if strategy != "none" else None, seed=seed)
            rid = config.run_id
            store.start_run(rid, config.label, config.to_dict(), {}, None)
            store.add_curve(rid, [(step, {"entropy": 0.1 * step + seed + order, "loss": 0.0}) for step in (1, 2, 3)])
            store.tag_sweep(rid, {"sweep": "qerl", "row": row, "order": order, "variant": "", "twin": None})
            store.finish_run(rid, "complete")
    store.close()

    curves = sweep_curves(tmp_path / "r.db", "qerl", "entropy")
    assert list(curves) == ["GRPO", "QeRL 4-bit"] and sorted(curves["QeRL 4-bit"]) == [0, 1]
    steps, mean = mean_curve(curves["QeRL 4-bit"])
    assert steps == [1, 2, 3] and mean == pytest.approx([1.6, 1.7, 1.8])
    assert moving_average([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    written = plot({"entropy": curves}, tmp_path / "study" / "entropy", smooth=2)
    assert [p.suffix for p in written] == [".png", ".svg"] and all(p.stat().st_size > 1000 for p in written)
    with pytest.raises(UserError, match="no complete run of sweep 'nope'"):
        sweep_curves(tmp_path / "r.db", "nope", "entropy")
    # the page's table: each run's mean over its steps (seed 0: 0.2 + order, seed 1: 1.2 + order), then over seeds
    table = summary_table({"entropy": curves, "loss": sweep_curves(tmp_path / "r.db", "qerl", "loss")})
    assert table.splitlines()[0] == "| row | seeds | entropy | loss |"
    assert "| GRPO | 0,1 | 0.7 [0.2, 1.2] | 0 [0, 0] |" in table
    assert "| QeRL 4-bit | 0,1 | 1.7 [1.2, 2.2] | 0 [0, 0] |" in table
