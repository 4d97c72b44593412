"""Extraction policies end to end (API, config identity, CLI, prompt templates, reward, evaluation),
bounded time on pathological completions, and honest pass@k."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time

import pytest
from click.testing import CliRunner

from harness.base.errors import UserError
from harness.grading import (
    EXTRACTION_POLICIES,
    check_extraction,
    extract_answer,
    grade,
    grade_full,
)


def test_what_issue_19_must_show():
    code = (
        "from harness.grading import grade; "
        "print(grade('Answer: \\$\\\\frac13\\$', '1/3', extraction='lenient'), "
        "grade('Answer: \\$\\\\frac13\\$', '1/3'))"
    )
    out = subprocess.run([sys.executable, "-c", code.replace("\\$", "$")], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True False"


def test_unknown_policy_names_the_allowed_ones():
    assert EXTRACTION_POLICIES == ("strict", "lenient")
    assert check_extraction("lenient") == "lenient"
    with pytest.raises(UserError, match="unknown extraction policy 'other'; choose one of strict, lenient"):
        grade("\\boxed{1}", "1", extraction="other")


def test_strict_is_the_default_and_lenient_adds_only_a_fallback():
    assert extract_answer("so we get $\\frac{1}{3}$.") is None
    assert extract_answer("so we get $\\frac{1}{3}$.", "lenient") == "\\frac{1}{3}"
    boxed = "we get $x = 2$, so the answer is \\boxed{3}"
    assert extract_answer(boxed, "lenient") == extract_answer(boxed) == "3"


def test_grade_full_reports_the_list_it_graded():
    g = grade_full("\\boxed{2} and \\boxed{5}", "2, 5")
    assert (g.predicted, g.correct, g.formatted) == ("2, 5", True, True)
    assert grade_full("\\boxed{2} and \\boxed{5}", "5").predicted == "5"


# -- the run's identity, the CLI, prompt templates ---------------------------------------------------


def test_default_policy_keeps_run_ids_and_lenient_changes_them():
    from harness.core.config import RunConfig, stable_hash

    strict = RunConfig()
    without_field = {k: v for k, v in strict.hashed_dict().items() if k != "extraction"}
    assert "extraction" not in strict.hashed_dict()
    assert strict.run_id == stable_hash(without_field)
    lenient = RunConfig(extraction="lenient")
    assert lenient.run_id != strict.run_id
    assert RunConfig.from_dict(lenient.to_dict()).run_id == lenient.run_id
    with pytest.raises(UserError, match="choose one of strict, lenient"):
        RunConfig(extraction="other")


def test_explicit_choice_beats_the_template_and_the_preset_beats_both():
    from harness.core.grading_policy import choose_extraction
    from harness.core.prompts import get_template

    assert get_template("plain").extraction == "lenient"  # no answer format asked for
    assert get_template("boxed").extraction == "strict"
    assert choose_extraction(None, "default", "boxed") == "strict"
    assert choose_extraction(None, "default", "plain") == "lenient"
    assert choose_extraction("strict", "default", "plain") == "strict"
    assert choose_extraction("lenient", "default", "boxed") == "lenient"
    assert choose_extraction(None, "rlquant", "plain") == "strict"
    with pytest.raises(UserError, match="--preset rlquant fixes --extraction strict"):
        choose_extraction("lenient", "rlquant", "raw")


def _cli(*args):
    from harness.cli import cli

    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_cli_refuses_an_unknown_policy_listing_the_policies():
    result = _cli("run", "--extraction", "other")
    assert result.exit_code == 2, result.output
    assert "'strict'" in result.output and "'lenient'" in result.output
    assert "Traceback" not in result.output


def test_cli_refuses_lenient_under_the_rlquant_preset():
    result = _cli("run", "--preset", "rlquant", "--extraction", "lenient")
    assert result.exit_code == 2, result.output
    assert "--preset rlquant fixes --extraction strict" in result.output


def test_cli_records_the_policy_in_the_config():
    from harness.cli.options import build_config

    common = {"model": "tiny-arith", "trainer": "none", "train_data": "arith", "strategy": "none", "bits": None,
              "act_bits": 16,
                  "kv_bits": 16, "seed": 0, "device": "cpu"}
    assert build_config(**common).extraction == "strict"
    assert build_config(**common, extraction="lenient").extraction == "lenient"
    assert build_config(**common, prompt="plain").extraction == "lenient"
    assert build_config(**common, preset="rlquant").extraction == "strict"


# -- the reward stays strict; evaluation grades with the run's policy ------------------------------------


def test_rl_reward_is_strict_whatever_the_run_grades_with():
    from harness.toolkit.reward import correctness_reward, format_reward

    completions = ["Answer: $9$", "so the answer is \\boxed{9}."]
    assert correctness_reward(completions, ["9", "9"]) == [0.0, 1.0]
    assert format_reward(completions, ["9", "9"]) == [0.0, 0.1]


class _FixedSession:
    """An engine session that answers every prompt with the same completion."""

    def __init__(self, text: str, samples: int = 1):
        self.text, self.samples = text, samples

    def generate(self, prompts, sampling, batch_size, seed, on_batch):
        from harness.core.engine import Completion

        on_batch(list(range(len(prompts))), [[Completion(self.text, 5)] * self.samples for _ in prompts])


@pytest.mark.parametrize("extraction, correct", [("strict", 0), ("lenient", 1)])
def test_evaluate_grades_with_the_given_policy(tmp_path, extraction, correct):
    from harness.core.benchmark import Problem
    from harness.core.config import Sampling
    from harness.runs.evaluation import evaluate
    from harness.runs.store import Store

    store = Store(tmp_path / "r.db")
    store.start_run("r", "label", {}, {}, None)
    problems = [Problem("p1", "What is 4 + 5?", "9")]
    evaluate(store, "r", "arith", problems, _FixedSession("4 + 5 = 9.\nAnswer: $9$"), lambda p: p.problem,
             Sampling(), 8, 0, extraction=extraction)
    (row,) = store.samples("r", "arith")
    assert (row["correct"], row["formatted"]) == (correct, 0)
    assert row["predicted"] == ("9" if extraction == "lenient" else None)


# -- bounded time ---------------------------------------------------------------------------------------

PATHOLOGICAL = {
    "boxes nested 1,000 deep": "\\boxed{" * 1000 + "1" + "}" * 1000,
    "braces nested 1,000 deep": "\\boxed{" + "{" * 1000 + "1" + "}" * 1000 + "}",
    "roots nested 150 deep": "\\boxed{" + "\\sqrt{" * 150 + "2" + "}" * 150 + "}",
    "a 100 kB number in a box": "\\boxed{" + "7" * 100_000 + "}",
    "a 100 kB number after 'the answer is'": "The answer is " + "7" * 100_000 + ".",
    "a 100 kB number, no format": "so we get " + "7" * 100_000 + ".",
    "100 kB of unclosed displays": "\\[ 1 " * 20_000,
    "100 kB of inline math": "$1$ and " * 12_500,
}


@pytest.mark.parametrize("extraction", EXTRACTION_POLICIES)
@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_pathological_completions_return_in_bounded_time(name, extraction):
    grade("\\boxed{\\sqrt{2}}", "\\sqrt{2}")  # math-verify's import is not the case's time
    start = time.perf_counter()
    grade(PATHOLOGICAL[name], "7", extraction=extraction)
    grade(PATHOLOGICAL[name], "\\frac{1}{2}", extraction=extraction)
    assert time.perf_counter() - start < 5, name


def test_lenient_grading_works_off_the_main_thread():
    results: dict[str, object] = {}

    def worker():
        try:
            results["eq"] = grade("so we get $\\frac{\\sqrt{8}}{2}$.", "\\sqrt{2}", extraction="lenient")
            results["ne"] = grade("Answer: $\\sqrt{5}$", "2.2", extraction="lenient")
        except Exception as exc:  # noqa: BLE001
            results["error"] = exc

    t = threading.Thread(target=worker)
    t.start()
    t.join(60)
    assert results == {"eq": True, "ne": False}


# -- pass@k honesty -------------------------------------------------------------------------------------


def _rows(samples_per_problem: dict[str, list[int]]) -> list[dict]:
    return [{"problem_id": pid, "sample": k, "correct": c, "reward": 1.1 * c, "formatted": 1, "n_tokens": 3,
             "level": None}
            for pid, outcomes in samples_per_problem.items() for k, c in enumerate(outcomes)]


def test_pass_at_k_stops_at_the_samples_every_problem_has_and_says_so():
    from harness.runs.evaluation import compute_metrics

    full = compute_metrics(_rows({"a": [1, 0, 0, 1], "b": [0, 0, 1, 0]}), n_requested=4)
    assert {"pass@2", "pass@4"} <= set(full) and "problems_short_of_n" not in full
    short = compute_metrics(_rows({"a": [1, 0, 0, 1], "b": [0, 1]}), n_requested=4)
    assert "pass@2" in short and "pass@4" not in short
    assert short["problems_short_of_n"][0] == 1.0 and short["samples_fewest"][0] == 2.0
    # without n_requested, a problem with fewer samples than the others is still reported
    assert compute_metrics(_rows({"a": [1, 0, 0, 1], "b": [0, 1]}))["problems_short_of_n"][0] == 1.0


def test_unbiased_pass_at_1_does_not_shrink_as_n_grows():
    """A fixed per-sample success rate p: pass@1 stays p for every n (a peer harness halved it per doubling)."""
    from harness.base.metrics import pass_at_k, pass_at_k_over_problems
    from harness.runs.evaluation import compute_metrics

    p = 0.25
    exact = []
    for n in (4, 8, 16, 32, 64, 128):
        exact.append(pass_at_k(n, int(p * n), 1))
        outcomes = {f"q{i}": [1] * int(p * n) + [0] * (n - int(p * n)) for i in range(20)}
        assert compute_metrics(_rows(outcomes), n_requested=n)["accuracy"][0] == pytest.approx(p)
        assert pass_at_k_over_problems(outcomes, 1)[0] == pytest.approx(p)
    assert exact == pytest.approx([p] * len(exact))

    rng = random.Random(0)  # sampled outcomes: the estimate stays near p, with no trend in n
    estimates = []
    for n in (1, 2, 4, 8, 16, 32):
        outcomes = {f"q{i}": [int(rng.random() < p) for _ in range(n)] for i in range(400)}
        estimates.append(pass_at_k_over_problems(outcomes, 1)[0])
    assert all(abs(e - p) < 0.06 for e in estimates), estimates
    assert estimates[-1] > estimates[0] / 1.5, estimates
