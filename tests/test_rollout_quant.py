"""Quantized rollouts with TRL's importance-sampling correction (issue 30): the options and their
refusals, the rollout copy's quantization, the sampled log-probabilities, TRL's corrected weights
against a hand computation of its formula in every mode, and a GRPO run whose stored curve holds
the mismatch figures."""

from __future__ import annotations

import math
import typing

import pytest
from click.testing import CliRunner

from harness.base.errors import UserError
from harness.cli import cli
from harness.toolkit.rollout_correction import (
    EXTRA_METRICS,
    QuantizedRollout,
    RolloutCorrection,
    RolloutQuant,
    fake_quantize_weight,
    mismatch_metrics,
    sample_with_logprobs,
)
from harness.trainers.grpo import GRPO, DrGRPO, GRPOOptions

ROLLOUT_OPTIONS = ("rollout_quant", "rollout_correction", "rollout_clip_max", "rollout_clip_min", "rollout_engine")
TRL_NAMES = ("sampling/sampling_logp_difference/mean", "sampling/sampling_logp_difference/max",
             "sampling/importance_sampling_ratio/min", "sampling/importance_sampling_ratio/mean",
             "sampling/importance_sampling_ratio/max")


@pytest.fixture(scope="module")
def reason_dir():
    from pathlib import Path

    from harness.base.model import resolve_model

    return Path(resolve_model("tiny-reason").source)


@pytest.fixture(scope="module")
def reason_model(reason_dir):
    """tiny-reason, loaded once for the module: tests copy it before changing it."""
    from harness.base.model import load_model

    return load_model(reason_dir, "cpu")


# -- options -----------------------------------------------------------------------------------------


def test_plugins_json_lists_the_rollout_options_of_both_trainers():
    for name in ("grpo", "dr_grpo"):
        result = CliRunner().invoke(cli, ["plugins", name, "--json"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        text = result.output
        for option in ROLLOUT_OPTIONS:
            assert f'"{option}"' in text, (name, option)
    # the options' allowed values are the enums' (one list of names, checked here)
    hints = typing.get_type_hints(GRPOOptions)
    assert typing.get_args(hints["rollout_quant"]) == tuple(q.value for q in RolloutQuant)
    assert typing.get_args(hints["rollout_correction"]) == tuple(c.value for c in RolloutCorrection)
    opts = DrGRPO().make_config({"rollout_quant": "fp8", "rollout_correction": "sequence_mask"})
    assert (opts.rollout_quant, opts.rollout_correction, opts.rollout_clip_max, opts.rollout_clip_min) == (
        "fp8", "sequence_mask", 3.0, None)  # TRL's clip defaults


@pytest.mark.parametrize(("opts", "message"), [
    ({"rollout_quant": "int4"}, "rollout_quant='int4' is not allowed; choose one of none, int8, fp8, w4"),
    ({"rollout_correction": "tis"}, "choose one of none, token_truncate, token_mask"),
    ({"rollout_quant": "int8", "rollout_clip_max": "0.5"}, "rollout_clip_max must be >= 1"),
    ({"rollout_quant": "int8", "rollout_clip_max": "1", "rollout_clip_min": "1"}, "must be below rollout_clip_max"),
    ({"rollout_quant": "int8", "rollout_clip_min": "1.5", "rollout_clip_max": "3"}, r"must lie in \[0, 1\]"),
    ({"rollout_quant": "int8", "rollout_correction": "token_mask", "top_p": "0.9"}, "nucleus truncation biases"),
    ({"rollout_engine": "vllm", "rollout_quant": "int8"}, "rollout_engine=vllm with rollout_quant=int8: TRL loads"),
    ({"rollout_engine": "sglang"}, "rollout_engine='sglang' is not allowed; choose one of hf, vllm"),
])
def test_bad_rollout_options_are_refused_in_one_line(opts, message):
    with pytest.raises(UserError, match=message) as err:
        GRPO().make_config(opts)
    assert "\n" not in str(err.value)


def test_bad_rollout_option_exits_2_before_training():
    result = CliRunner().invoke(cli, ["run", "--model", "tiny-reason", "--trainer", "grpo", "--trainer-opt",
                                      "rollout_correction=bogus", "--limit", "1"])
    assert result.exit_code == 2
    assert "rollout_correction='bogus' is not allowed" in result.output
    assert "train grpo" not in result.output


def test_rollout_options_take_part_in_the_checkpoint_key_only_when_set():
    plain = GRPO().describe_config(GRPO().make_config({}))
    assert not set(ROLLOUT_OPTIONS) & set(plain)  # checkpoints trained before the options keep their keys
    int8 = GRPO().describe_config(GRPO().make_config({"rollout_quant": "int8"}))
    assert int8["rollout_quant"] == "int8" and {k: v for k, v in int8.items() if k != "rollout_quant"} == plain
    clipped = GRPO().describe_config(GRPO().make_config({"rollout_quant": "int8", "rollout_clip_max": "2"}))
    assert clipped["rollout_clip_max"] == 2.0


# -- the rollout copy and its log-probabilities ------------------------------------------------------


def test_quantized_copy_follows_the_policy_and_leaves_it_alone(reason_model):
    import copy

    import torch

    policy = copy.deepcopy(reason_model)
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    for quant, levels in ((RolloutQuant.INT8, 256), (RolloutQuant.W4, 16)):
        rollout = QuantizedRollout(policy, quant)
        rollout.sync(policy)
        name, layer = rollout.layers[0]
        weight = layer.weight
        rows = weight.reshape(weight.shape[0], -1, 128) if quant is RolloutQuant.W4 else weight.unsqueeze(1)
        distinct = max(len(torch.unique(rows[0, g])) for g in range(rows.shape[1]))
        assert 2 < distinct <= levels, (quant, distinct)
        assert not torch.equal(weight, policy.get_submodule(name).weight)
        assert torch.equal(rollout.model.lm_head.weight, policy.lm_head.weight)  # the head stays full precision
    assert all(torch.equal(p, before[n]) for n, p in policy.named_parameters())
    # the copy is quantized again from the policy's current weights at every sync
    with torch.no_grad():
        policy.get_submodule(name).weight.mul_(2)
    rollout.sync(policy)
    assert torch.equal(layer.weight, fake_quantize_weight(2 * before[f"{name}.weight"], rollout.scheme.weights))
    assert not torch.equal(layer.weight, fake_quantize_weight(before[f"{name}.weight"], rollout.scheme.weights))


def test_sampled_logprobs_are_the_tempered_distribution_of_the_sampler(reason_dir, reason_model):
    import torch
    from transformers import GenerationConfig

    from harness.base.model import load_tokenizer

    model, tok = reason_model, load_tokenizer(reason_dir)
    prompts = [tok("Start at 7. Add 5.")["input_ids"], tok("Start at 12.")["input_ids"]]
    config = GenerationConfig(max_new_tokens=6, do_sample=True, temperature=0.7, top_k=0, top_p=1.0,
                              pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    completions, logprobs = sample_with_logprobs(model, prompts, config, tok.pad_token_id)
    worst = 0.0
    for prompt, ids, lps in zip(prompts, completions, logprobs, strict=True):
        assert len(ids) == len(lps) >= 1
        with torch.no_grad():
            logits = model(torch.tensor([prompt + ids])).logits[0, len(prompt) - 1: -1] / 0.7
        forced = torch.log_softmax(logits, -1).gather(-1, torch.tensor(ids).unsqueeze(-1)).squeeze(-1)
        worst = max(worst, (forced - torch.tensor(lps)).abs().max().item())
    assert worst < 1e-4, worst  # the same distribution, to the precision of cached vs full forward passes


# -- TRL's correction, through the seam --------------------------------------------------------------


def _trl_formula(train, rollout, mask, mode: str, low, high):
    """TRL 1.16's importance weights written out by hand (grpo_trainer.py, the vLLM IS block)."""
    import torch

    diff = (train - rollout) * mask
    if mode.startswith("sequence"):
        diff = diff.sum(-1, keepdim=True)
    ratio = torch.exp(diff)
    lo = -math.inf if low is None else low
    if mode.endswith("truncate"):
        return torch.clamp(ratio, min=low, max=high)
    return torch.where((ratio < lo) | (ratio > high), torch.zeros_like(ratio), ratio)


def test_corrected_weights_are_trls_formula_in_every_mode(reason_dir, reason_model, tmp_path):
    import copy

    import torch
    from datasets import Dataset
    from trl import GRPOConfig

    from harness.base.model import load_tokenizer
    from harness.compat.trl import rollout_corrected_trainer
    from harness.toolkit.reward import REWARD_FUNCS

    tok = load_tokenizer(reason_dir)
    prompts = ["Start at 3. Add 4.", "Start at 9."]
    completions = [tok(text, add_special_tokens=False)["input_ids"][:3]
                   for text in (" 7 is it", " 12 and", " 9 so", " 4 or")]
    assert all(len(c) == 3 for c in completions)
    # rollout log-probabilities = the policy's + these offsets (ratio = exp(-offset)), so that in every mode
    # some units fall inside the band [0.5, 3] and some outside: per token e^1.5 and e^-1.5 leave it; per
    # sequence, 0 stays, -2 (e^2) and +1.5 (e^-1.5) leave it, 0.3 stays
    offsets = torch.tensor([[1.5, -1.5, 0.0], [-2.0, 0.0, 0.0], [1.5, 0.0, 0.0], [0.1, 0.1, 0.1]])
    rollout_logps = [[0.0] * 3 for _ in completions]
    synced = []

    def rollout_func(batch, trainer):
        ids = trainer.processing_class(text=batch)["input_ids"]
        return {"prompt_ids": ids, "completion_ids": completions, "logprobs": rollout_logps}

    args = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", num_generations=2,
                      per_device_train_batch_size=4, max_completion_length=8, disable_tqdm=True,
                      vllm_importance_sampling_correction=True, vllm_importance_sampling_mode="token_truncate",
                      vllm_importance_sampling_clip_min=0.5, vllm_importance_sampling_clip_max=3.0)
    seen = {}
    trainer = rollout_corrected_trainer()(
        model=copy.deepcopy(reason_model), reward_funcs=list(REWARD_FUNCS), args=args, processing_class=tok,
        train_dataset=Dataset.from_dict({"prompt": prompts, "answer": ["7", "9"]}), rollout_func=rollout_func,
        on_sync=synced.append, on_batch=lambda **kw: seen.update(kw) or {"x/figure": 1.0},
    )
    inputs = [{"prompt": p, "answer": a} for p, a in (("Start at 3. Add 4.", "7"),) * 2 + (("Start at 9.", "9"),) * 2]
    policy = trainer._generate_and_score_completions(inputs)["old_per_token_logps"]
    rollout = policy + offsets
    rollout_logps[:] = rollout.tolist()
    for mode in ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask"):
        trainer.vllm_importance_sampling_mode = mode
        out = trainer._generate_and_score_completions(inputs)
        mask = out["completion_mask"].float()
        assert mask.all() and torch.allclose(out["old_per_token_logps"], policy, atol=1e-6)
        expected = _trl_formula(out["old_per_token_logps"], rollout, mask, mode, 0.5, 3.0)
        assert out["importance_sampling_ratio"].shape == expected.shape == ((4, 1) if "sequence" in mode else (4, 3))
        assert torch.allclose(out["importance_sampling_ratio"], expected, atol=1e-5), mode
        raw = torch.exp(-offsets.sum(-1, keepdim=True) if "sequence" in mode else -offsets)
        clipped = ~torch.isclose(expected, raw)
        assert clipped.any() and not clipped.all(), mode  # the band bites, but not everywhere
        assert torch.equal(seen["weights"], out["importance_sampling_ratio"])
    assert synced, "the rollout copy is synced before the first generation"
    logged = trainer._metrics["train" if trainer.model.training else "eval"]
    assert len(logged["x/figure"]) == 5 and len(logged["sampling/importance_sampling_ratio/max"]) == 5
    # without a correction the ratio is measured and logged, and the loss weights are ones
    trainer.apply_correction = False
    out = trainer._generate_and_score_completions(inputs)
    assert torch.equal(out["importance_sampling_ratio"], torch.ones_like(out["importance_sampling_ratio"]))
    assert not torch.equal(seen["weights"], out["importance_sampling_ratio"])


def test_mismatch_figures_by_hand():
    import torch

    train = torch.log(torch.tensor([[0.5, 0.2, 0.3], [0.4, 0.4, 0.0]]).clamp_min(1e-9))
    rollout = torch.log(torch.tensor([[0.5, 0.8, 0.1], [0.1, 0.4, 0.9]]))
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    ratios = [1.0, 0.25, 3.0, 4.0, 1.0]  # p/q on the five real tokens
    weights = torch.clamp(torch.tensor([[1.0, 0.25, 3.0], [4.0, 1.0, 1.0]]), max=3.0)
    got = mismatch_metrics(train, rollout, mask, weights, RolloutCorrection.TOKEN_TRUNCATE, 0.5, 3.0)
    assert set(got) == set(EXTRA_METRICS)
    assert got["sampling/clipped_fraction"] == pytest.approx(2 / 5)  # 0.25 below, 4.0 above the band
    k3 = [r - 1 - math.log(r) for r in ratios]
    assert got["sampling/kl_rollout_train"] == pytest.approx(sum(k3) / 5)
    w = [1.0, 0.25, 3.0, 3.0, 1.0]
    assert got["sampling/effective_sample_size"] == pytest.approx(sum(w) ** 2 / (5 * sum(x * x for x in w)))
    seq = mismatch_metrics(train, rollout, mask, torch.tensor([[0.75], [0.0]]), RolloutCorrection.SEQUENCE_MASK,
                           None, 3.0)
    assert seq["sampling/clipped_fraction"] == pytest.approx(1 / 2)  # sequence ratios 0.75 and 4.0
    assert seq["sampling/effective_sample_size"] == pytest.approx(0.75 ** 2 / (2 * 0.75 ** 2))


# -- a run, end to end -------------------------------------------------------------------------------


def _stored_curve(tmp_path, *opts: str) -> list[dict]:
    """Train tiny-reason 3 GRPO steps through the run's own graph (planning, the train stage, the store)
    and read back the curve the store holds; evaluation is left out (it adds a minute, nothing here)."""
    from harness.core.config import RunConfig
    from harness.runs.opening import opened_run

    small = ("max_steps=3", "num_generations=4", "per_device_train_batch_size=8", "max_completion_length=24",
             "save_steps=3", *opts)
    config = RunConfig(model="tiny-reason", trainer="grpo", train_data="chain", benchmarks=("chain",),
                       device="cpu", trainer_opts=tuple(sorted(o.split("=", 1) for o in small)))
    with opened_run(config, tmp_path / "results.db", tmp_path / "cache") as run:
        run.store.start_run(config.run_id, config.label, config.to_dict(), {}, None)
        run.runner.materialize(run.plan, config.run_id, until="train")
        return run.store.curve(config.run_id)


@pytest.mark.slow
def test_int8_rollouts_store_the_mismatch_curve_and_full_precision_ones_match(tmp_path):
    curve = _stored_curve(tmp_path / "int8", "rollout_quant=int8", "rollout_correction=token_truncate")
    assert [p["step"] for p in curve] == [1, 2, 3]
    for point in curve:
        for name in (*TRL_NAMES, *EXTRA_METRICS):
            assert name in point, name
        assert point["sampling/sampling_logp_difference/max"] > 1e-3  # int8 rollouts differ from the policy
        assert 0 < point["sampling/importance_sampling_ratio/min"] <= point["sampling/importance_sampling_ratio/max"]
        assert point["sampling/importance_sampling_ratio/max"] <= 3.0 + 1e-6  # truncated at TRL's clip_max
    # the policy's own rollouts: the difference is the two forward passes' rounding (measured about 5e-7
    # mean, 7e-6 max on tiny-reason in float32), two orders below int8's
    full = _stored_curve(tmp_path / "none", "rollout_quant=none", "rollout_correction=token_truncate")
    mean = "sampling/sampling_logp_difference/mean"
    for point, quantized in zip(full, curve, strict=True):
        assert point[mean] < 1e-5 and point["sampling/sampling_logp_difference/max"] < 1e-4
        assert point[mean] * 100 < quantized[mean]


def test_vllm_rollouts_map_onto_trls_own_switches():
    """rollout_engine=vllm hands sampling to TRL's colocated vLLM (no rollout_func: TRL's own correction of the
    vLLM/trainer mismatch, under the same mode and bounds); on a CPU, or without vLLM here, it is refused."""
    from trl import GRPOConfig

    from harness.trainers.rollouts import check_vllm_rollouts, trl_vllm_args

    corrected = GRPO().make_config({"rollout_engine": "vllm", "rollout_correction": "sequence_mask",
                                    "rollout_clip_min": "0.5", "rollout_clip_max": "2"})
    assert not corrected.rollouts_separate  # TRL samples: the harness's rollout_func stays out
    args = trl_vllm_args(corrected)
    assert args == {"use_vllm": True, "vllm_mode": "colocate", "vllm_importance_sampling_correction": True,
                    "vllm_importance_sampling_mode": "sequence_mask", "vllm_importance_sampling_clip_min": 0.5,
                    "vllm_importance_sampling_clip_max": 2.0}
    assert set(args) <= {f.name for f in __import__("dataclasses").fields(GRPOConfig)}
    plain = trl_vllm_args(GRPO().make_config({"rollout_engine": "vllm"}))
    assert plain == {"use_vllm": True, "vllm_mode": "colocate", "vllm_importance_sampling_correction": False}
    with pytest.raises(UserError, match="rollout_engine=vllm needs a CUDA GPU .* device is 'cpu'"):
        check_vllm_rollouts("cpu")


def test_vllm_rollouts_on_a_cpu_are_refused_when_planned_and_store_nothing(tmp_path):
    from harness.runs.store import Store

    store = tmp_path / "r.db"
    result = CliRunner().invoke(cli, ["run", "--model", "tiny-reason", "--trainer", "grpo", "--trainer-opt",
                                      "rollout_engine=vllm", "--limit", "1", "--device", "cpu", "--store", str(store)])
    assert result.exit_code == 2
    assert "trainer 'grpo' with rollout_engine=vllm needs a CUDA GPU" in result.output
    assert "train grpo" not in result.output
    assert not store.exists() or Store(store).list_runs() == []


@pytest.mark.gpu
def test_trls_vllm_rollouts_log_the_mismatch_on_a_gpu(tmp_path):
    """The GPU check of the mapping (never CI): 3 GRPO steps on tiny-reason with TRL's colocated vLLM rollouts and
    its token_truncate correction store TRL's mismatch figures in the curve."""
    import importlib.util

    import torch

    if not torch.cuda.is_available() or importlib.util.find_spec("vllm") is None:
        pytest.skip("needs a CUDA GPU and vLLM importable in this environment")
    from harness.core.config import RunConfig
    from harness.runs.opening import opened_run

    small = ("max_steps=3", "num_generations=4", "per_device_train_batch_size=8", "max_completion_length=24",
             "save_steps=3", "rollout_engine=vllm", "rollout_correction=token_truncate")
    config = RunConfig(model="tiny-reason", trainer="grpo", train_data="chain", benchmarks=("chain",),
                       device="cuda", trainer_opts=tuple(sorted(o.split("=", 1) for o in small)))
    with opened_run(config, tmp_path / "results.db", tmp_path / "cache") as run:
        run.store.start_run(config.run_id, config.label, config.to_dict(), {}, None)
        run.runner.materialize(run.plan, config.run_id, until="train")
        curve = run.store.curve(config.run_id)
    assert [p["step"] for p in curve] == [1, 2, 3]
    assert all(name in curve[-1] for name in TRL_NAMES), sorted(curve[-1])


def test_the_rollout_seam_accepts_the_installed_trl_only():
    from packaging.specifiers import SpecifierSet

    from harness.compat.trl import ROLLOUT_SEAM

    assert ROLLOUT_SEAM.written_against in SpecifierSet(ROLLOUT_SEAM.supported)
    if ROLLOUT_SEAM.installed() is None:
        pytest.skip("trl is not installed")
    assert ROLLOUT_SEAM.require() == ROLLOUT_SEAM.installed()


def test_show_prints_the_mismatch_columns_of_a_quantized_rollout_run():
    from rich.console import Console

    from harness.cli.curve import print_curve

    point = {"step": 1, "reward": 0.5, "loss": 0.01, "sampling/sampling_logp_difference/mean": 0.0143,
             "sampling/kl_rollout_train": 0.00277, "sampling/importance_sampling_ratio/min": 0.147,
             "sampling/importance_sampling_ratio/max": 2.04, "sampling/clipped_fraction": 0.0,
             "sampling/effective_sample_size": 0.995, "step_time": 7.7}
    console = Console(record=True, width=240)
    print_curve([point, {**point, "step": 2}], console)
    text = console.export_text()
    for title in ("logp diff", "KL(rollout||train)", "IS ratio min", "IS ratio max", "clipped", "ESS", "s/step"):
        assert title in text, title
    assert "0.00277" in text and "2.0400" in text and "0.1470" in text
    # a run without quantized rollouts shows no mismatch columns
    plain = Console(record=True, width=240)
    print_curve([{"step": 1, "reward": 0.5}], plain)
    assert "KL(rollout||train)" not in plain.export_text()
