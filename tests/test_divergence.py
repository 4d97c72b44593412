"""Divergence from the full-precision reference: the figures, the stage, `harness compare`."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from harness.cli import cli as main
from harness.toolkit.divergence import (
    exact_token_figures,
    first_sample_correct,
    flips,
    summarize,
    topk_token_figures,
)


def _logprobs(rows: list[list[float]]):
    import torch

    return torch.log_softmax(torch.tensor(rows, dtype=torch.float64), dim=-1)


def test_exact_kl_matches_the_definition_and_is_zero_against_itself():
    import torch

    ref = _logprobs([[2.0, 0.5, -1.0], [0.0, 0.0, 3.0]])
    run = _logprobs([[1.0, 1.5, -1.0], [0.0, 0.5, 2.0]])
    figs = exact_token_figures(ref, run, torch.tensor([0, 2]))
    for t in range(2):
        p, q = ref[t].exp(), run[t].exp()
        assert figs.kl[t] == pytest.approx(float((p * (p.log() - q.log())).sum()), rel=1e-9)
    assert figs.top1 == [False, True]  # 0 against 1, then 2 against 2
    assert figs.nll_ref == pytest.approx([-float(ref[0, 0]), -float(ref[1, 2])])
    same = exact_token_figures(ref, ref, torch.tensor([0, 2]))
    assert same.kl == [0.0, 0.0] and same.top1 == [True, True]


def test_topk_approximation_is_exact_when_k_is_the_vocabulary_and_close_when_k_holds_the_mass():
    import torch

    torch.manual_seed(0)
    ref = torch.log_softmax(torch.randn(20, 50, dtype=torch.float64) * 4, dim=-1)
    run = torch.log_softmax(torch.log_softmax(ref, -1) + 0.3 * torch.randn(20, 50, dtype=torch.float64), dim=-1)
    targets = ref.argmax(-1)
    exact = exact_token_figures(ref, run, targets)

    def top(lp, k):
        vals, ids = lp.topk(k, dim=-1)
        return [dict(zip(i.tolist(), v.tolist())) for i, v in zip(ids, vals)]

    ref_t = [float(ref[i, t]) for i, t in enumerate(targets)]
    run_t = [float(run[i, t]) for i, t in enumerate(targets)]
    full = topk_token_figures(top(ref, 50), top(run, 50), ref_t, run_t)
    assert full.kl == pytest.approx(exact.kl, abs=1e-9)
    approx = topk_token_figures(top(ref, 20), top(run, 20), ref_t, run_t)
    mean_exact, mean_approx = sum(exact.kl) / 20, sum(approx.kl) / 20
    assert abs(mean_approx - mean_exact) < 0.05 * mean_exact + 1e-4
    assert approx.top1 == exact.top1


def test_summary_resamples_problems_and_flips_count_both_ways():
    from harness.toolkit.divergence import TokenFigures

    per_problem = {"a": TokenFigures([0.1, 0.3], [True, False], [1.0, 1.0], [1.5, 1.0]),
                   "b": TokenFigures([0.0], [True], [0.5], [0.5]), "empty": TokenFigures()}
    s = summarize(per_problem)
    assert s["kl_mean"]["value"] == pytest.approx((0.2 + 0.0) / 2)  # per-problem means, then over problems
    assert s["kl_mean"]["lo"] <= s["kl_mean"]["value"] <= s["kl_mean"]["hi"]
    assert s["top1_agree"] == pytest.approx(2 / 3) and s["nll_delta"] == pytest.approx(0.5 / 3)
    assert s["problems"] == 2 and s["tokens"] == 3
    f = flips({"1": True, "2": False, "3": True, "4": False}, {"1": False, "2": True, "3": True, "5": True})
    assert (f["lost"], f["gained"], f["problems"]) == (1, 1, 3) and f["lost_rate"] == pytest.approx(1 / 3)
    rows = [{"problem_id": "x", "sample": 0, "correct": 1}, {"problem_id": "x", "sample": 1, "correct": 0}]
    assert first_sample_correct(rows) == {"x": True}


def _run(runner, tmp_path, *args):
    result = runner.invoke(main, ["run", "--limit", "60", "--json", "--divergence", "--store", str(tmp_path / "r.db"),
                                  "--cache-dir", str(tmp_path / "cache"), *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.slow
def test_a_quantized_run_measures_its_divergence_and_compare_agrees(tmp_path):
    runner = CliRunner()
    w4 = _run(runner, tmp_path, "--strategy", "rtn", "--bits", "4")
    div4 = w4["divergence"]["arith"]
    for name in ("kl_mean", "kl_p99", "top1_agree", "nll_delta", "flips"):
        assert name in div4
    assert div4["top_k"] is None and div4["engine"] == "hf" and div4["problems"] == 60
    w8 = _run(runner, tmp_path, "--strategy", "rtn", "--bits", "8")
    div8 = w8["divergence"]["arith"]
    assert div4["kl_mean"]["value"] > div8["kl_mean"]["value"] > 0
    assert div4["reference_run"] == div8["reference_run"]  # one reference, evaluated once
    ref = _run(runner, tmp_path)  # the plain full-precision run: the same id, stored, no divergence of its own
    assert ref["run_id"] == div4["reference_run"] and ref["divergence"] == {}
    listed = json.loads(runner.invoke(main, ["runs", "--json", "--store", str(tmp_path / "r.db")]).stdout)
    assert len(listed) == 3

    def compare(a, b):
        out = runner.invoke(main, ["compare", a, b, "--json", "--store", str(tmp_path / "r.db"),
                                   "--cache-dir", str(tmp_path / "cache")])
        assert out.exit_code == 0, out.output
        return json.loads(out.stdout)["benchmarks"]["arith"]

    stored = compare(ref["run_id"], w4["run_id"])
    assert stored["divergence"]["kl_mean"] == div4["kl_mean"]
    assert stored["flips"] == div4["flips"]
    itself = compare(w4["run_id"], w4["run_id"])
    assert itself["divergence"]["kl_mean"]["value"] == 0.0
    assert itself["flips"]["lost"] == itself["flips"]["gained"] == 0
    assert math.isclose(itself["difference"]["value"], 0.0, abs_tol=1e-12)
    # computed, not read: 8-bit against 4-bit
    between = compare(w4["run_id"], w8["run_id"])
    assert between["divergence"]["reference_run"] == w4["run_id"] and between["divergence"]["kl_mean"]["value"] > 0


@pytest.mark.slow
def test_no_divergence_skips_the_stage_and_bad_comparisons_are_one_line(tmp_path):
    runner = CliRunner()
    out = _run(runner, tmp_path, "--strategy", "rtn", "--bits", "4", "--no-divergence")
    assert out["divergence"] == {}
    listed = json.loads(runner.invoke(main, ["runs", "--json", "--store", str(tmp_path / "r.db")]).stdout)
    assert len(listed) == 1  # no reference run was needed
    other = runner.invoke(main, ["run", "--limit", "30", "--json", "--no-divergence", "--store", str(tmp_path / "r.db"),
                                 "--cache-dir", str(tmp_path / "cache")])
    assert other.exit_code == 0
    other_id = json.loads(other.stdout)["run_id"]
    for a, b, words in ((out["run_id"], "nope", "no run 'nope'"),
                        (out["run_id"], other_id, "different problems")):
        bad = runner.invoke(main, ["compare", a, b, "--store", str(tmp_path / "r.db")])
        assert bad.exit_code == 2 and words in bad.output
        assert len([line for line in bad.output.splitlines() if line.startswith("error:")]) == 1


def test_a_reference_the_seed_cannot_change_is_one_run_for_every_seed():
    """A three-seed GPTQ row needs one full-precision evaluation, not three identical ones; a trained or
    sampled reference keeps the run's seed, since its model or its completions depend on it."""
    import dataclasses

    from harness.core.config import RunConfig, Sampling
    from harness.core.plugin_manager import get_registry
    from harness.runs.planning import plan as plan_run

    def reference(**fields):
        config = RunConfig(strategy="gptq", bits=4, device="cpu", divergence=True, seed=2, **fields)
        return plan_run(config, get_registry()).reference

    plain = reference()
    assert (plain.strategy, plain.seed) == ("none", 0)
    assert plain.run_id == RunConfig(device="cpu", divergence=True).run_id  # the plain `--strategy none` run
    assert reference(trainer="grpo").seed == 2
    sampled = reference(sampling=dataclasses.replace(Sampling(), temperature=1.0))
    assert sampled.seed == 2 and sampled.sampling.temperature == 1.0
