"""Repeated sampled evaluation: ``--repeats K`` is ``-n K``, reported as mean accuracy, its spread between
repeats and avg@K; greedy runs are untouched, and several greedy samples are refused."""

from __future__ import annotations

import json
import statistics

import pytest
from click.testing import CliRunner

from harness.base.errors import UserError
from harness.base.metrics import repeat_report
from harness.cli import cli
from harness.core.resolve import resolve_config
from harness.runs.evaluation import compute_metrics
from harness.runs.store import Store

#: problem -> correctness of samples 0, 1, 2: repeat accuracies 2/4, 3/4, 1/4
OUTCOMES = {"a": [1, 1, 0], "b": [0, 1, 0], "c": [1, 1, 1], "d": [0, 0, 0]}


def _rows(outcomes: dict[str, list[int]]) -> list[dict]:
    return [{"problem_id": pid, "sample": k, "correct": c, "reward": 1.1 * c, "formatted": 1, "n_tokens": 3,
             "level": None}
            for pid, samples in outcomes.items() for k, c in enumerate(samples)]


def _one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


# -- the metrics -------------------------------------------------------------------------------------

def test_repeat_report_is_the_spread_of_whole_repeats_and_the_mean_per_problem_pass_rate():
    report = repeat_report({p: dict(enumerate(s)) for p, s in OUTCOMES.items()})
    assert report["repeats"] == (3.0, None, None)
    assert report["accuracy_repeat_std"][0] == pytest.approx(statistics.stdev([0.5, 0.75, 0.25]))
    mean, lo, hi = report["avg@3"]
    assert mean == pytest.approx(statistics.mean([0.5, 0.75, 0.25]))  # the mean of the repeat accuracies ...
    assert mean == pytest.approx(statistics.mean([2 / 3, 1 / 3, 1, 0]))  # ... is the mean per-problem pass rate
    assert lo <= mean <= hi


def test_a_repeat_some_problem_lacks_is_left_out_and_one_repeat_reports_nothing():
    partial = {"a": {0: 1, 1: 0, 2: 1}, "b": {0: 0, 1: 1}}  # repeat 2 unfinished
    report = repeat_report(partial)
    assert report["repeats"][0] == 2.0 and "avg@2" in report
    assert report["accuracy_repeat_std"][0] == pytest.approx(statistics.stdev([0.5, 0.5]))
    assert repeat_report({"a": {0: 1}, "b": {0: 0}}) == {}
    assert repeat_report({}) == {}


def test_compute_metrics_reports_repeats_and_avg_at_k_equals_accuracy():
    metrics = compute_metrics(_rows(OUTCOMES), n_requested=3)
    assert metrics["repeats"][0] == 3.0
    assert metrics["avg@3"][0] == pytest.approx(metrics["accuracy"][0])
    assert metrics["accuracy_repeat_std"][0] == pytest.approx(0.25)


def test_one_sample_per_problem_gets_no_new_metric():
    """Every greedy run has one sample per problem: its metrics are the ones it always had."""
    metrics = compute_metrics(_rows({p: s[:1] for p, s in OUTCOMES.items()}), n_requested=1)
    assert set(metrics) == {"accuracy", "reward", "format_rate", "mean_tokens", "problems", "samples"}


def test_the_paired_tests_per_problem_scores_are_the_avg_at_k_pass_rates(tmp_path):
    """``Store.problem_scores`` (what paired comparisons resample) averages each problem's samples."""
    store = Store(tmp_path / "r.db")
    config = resolve_config({"temperature": 1.0, "repeats": 3})
    store.start_run(config.run_id, config.label, config.to_dict(), {}, None)
    store.add_samples(config.run_id, "arith", [
        {**r, "level": None, "prompt": "", "completion": "", "predicted": "", "reference": ""}
        for r in _rows(OUTCOMES)])
    scores = store.problem_scores(config.run_id)["arith"]
    assert {p: acc for p, (acc, _) in scores.items()} == pytest.approx(
        {p: sum(s) / len(s) for p, s in OUTCOMES.items()})
    avg = compute_metrics(_rows(OUTCOMES))["avg@3"][0]
    assert statistics.mean(acc for acc, _ in scores.values()) == pytest.approx(avg)
    store.close()


# -- the configuration ------------------------------------------------------------------------------

def test_repeats_is_n_one_run_with_one_id():
    repeats = resolve_config({"temperature": 0.7, "repeats": 4})
    assert repeats.sampling.n == 4
    assert repeats.run_id == resolve_config({"temperature": 0.7, "n": 4}).run_id
    assert resolve_config({"temperature": 0.7, "repeats": 4, "n": 4}).run_id == repeats.run_id
    assert resolve_config({"repeats": 1}).run_id == resolve_config({}).run_id  # greedy ids stay what they were
    assert resolve_config({"preset": "rlquant", "repeats": 2}).sampling.n == 2


@pytest.mark.parametrize("values, expected", [
    ({"temperature": 1.0, "repeats": 0}, "--repeats must be >= 1, got 0"),
    ({"temperature": 1.0, "repeats": "4"}, "--repeats must be a whole number >= 1, got '4'"),
    ({"temperature": 1.0, "repeats": 2, "n": 3}, "--repeats 2 and -n 3 disagree"),
    ({"repeats": 3}, "--repeats 3 with greedy decoding (temperature 0)"),
    ({"n": 3}, "-n 3 with greedy decoding (temperature 0)"),
])
def test_bad_repeats_are_refused(values, expected):
    with pytest.raises(UserError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        resolve_config(values)


@pytest.mark.parametrize("args, expected", [
    (["--repeats", "0", "--temperature", "1"], "--repeats must be >= 1, got 0"),
    (["--repeats", "3"], "--temperature"),
    (["--repeats", "2", "-n", "3", "--temperature", "1"], "disagree"),
    (["-n", "2"], "--temperature"),
])
@pytest.mark.parametrize("command", ["run", "profile"])
def test_bad_repeats_at_the_command_line_are_one_line_and_exit_2(tmp_path, command, args, expected):
    store = tmp_path / "r.db"
    result = CliRunner().invoke(cli, [command, *args, "--store", str(store), "--cache-dir", str(tmp_path / "c")])
    line = _one_error_line(result)
    assert line.startswith("error: ") and expected in line
    assert not (tmp_path / "c").exists()


def test_a_sweep_cell_takes_repeats_as_n(tmp_path):
    sweep = tmp_path / "s.toml"
    sweep.write_text('name = "rep"\n[defaults]\nlimit = 4\ntemperature = 1.0\n'
                     '[[cell]]\nrow = "a"\nrepeats = 4\n[[cell]]\nrow = "b"\nn = 4\n')
    result = CliRunner().invoke(cli, ["sweep", str(sweep), "--dry-run", "--json", "--store", str(tmp_path / "r.db")])
    assert result.exit_code == 0, result.output
    cells = json.loads(result.stdout)["cells"]
    assert cells[0]["run_id"] == cells[1]["run_id"] and cells[1]["state"] == "duplicate"

    greedy = tmp_path / "g.toml"
    greedy.write_text('name = "greedy"\n[[cell]]\nrow = "a"\nrepeats = 3\n')
    result = CliRunner().invoke(cli, ["sweep", str(greedy), "--dry-run", "--store", str(tmp_path / "r.db")])
    assert "--temperature" in _one_error_line(result)


# -- end to end ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_sampled_run_with_repeats_stores_and_prints_its_spread(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("HARNESS_THREADS", "1")
    where = ["--store", str(tmp_path / "r.db"), "--cache-dir", str(tmp_path / "cache")]
    args = ["run", "--temperature", "1", "--repeats", "2", "--limit", "4", "--max-new-tokens", "8",
            "--no-divergence", *where]
    text = CliRunner().invoke(cli, args)
    assert text.exit_code == 0, text.output
    assert "arith over 2 repeats: accuracy" in text.stdout and "avg@2" in text.stdout
    assert "accuracy % [95% CI]" in text.stdout  # the header whole, though stdout is no terminal

    as_json = CliRunner().invoke(cli, [*args, "--json"])  # stored: read back, not evaluated again
    result = json.loads(as_json.stdout)
    metrics = result["metrics"]["arith"]
    assert metrics["repeats"]["value"] == 2 and "accuracy_repeat_std" in metrics
    assert metrics["avg@2"]["value"] == pytest.approx(metrics["accuracy"]["value"])
    assert len(Store(tmp_path / "r.db").samples(result["run_id"])) == 8

    same = CliRunner().invoke(cli, ["run", "--temperature", "1", "-n", "2", "--limit", "4", "--max-new-tokens", "8",
                                    "--no-divergence", "--json", *where])
    assert json.loads(same.stdout)["run_id"] == result["run_id"]
    shown = CliRunner().invoke(cli, ["show", result["run_id"], "--store", str(tmp_path / "r.db")])
    assert "arith over 2 repeats" in shown.stdout and "latency at batch size 1: TTFT" in shown.stdout
