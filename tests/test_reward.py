"""The RL reward: the grader's verdict, split into correctness (1.0) and format (0.1) for TRL."""

from __future__ import annotations

from harness.grading import grade_full
from harness.toolkit.reward import REWARD_FUNCS, correctness_reward, format_reward

COMPLETIONS = [
    "12 + 30 = 42. The answer is \\boxed{42}.",  # correct and boxed
    "12 + 30 = 41. The answer is \\boxed{41}.",  # boxed, wrong
    "12 + 30 = 42.",  # neither a boxed nor a stated answer
    "The answer is \\boxed{\\frac{84}{2}}",  # equivalent by math-verify
]


def _total(completions, answers):
    return [c + f for c, f in zip(correctness_reward(completions, answers), format_reward(completions, answers))]


def test_parts_and_total_take_the_papers_values():
    answers = ["42"] * len(COMPLETIONS)
    assert correctness_reward(COMPLETIONS, answers) == [1.0, 0.0, 0.0, 1.0]
    assert format_reward(COMPLETIONS, answers) == [0.1, 0.1, 0.0, 0.1]
    totals = _total(COMPLETIONS, answers)
    assert totals == [1.1, 0.1, 0.0, 1.1]
    assert set(totals) <= {0.0, 0.1, 1.1}


def test_agrees_with_the_evaluation_grader():
    answers = ["42", "41", "42", "42"]
    for completion, answer, total in zip(COMPLETIONS, answers, _total(COMPLETIONS, answers)):
        assert total == grade_full(completion, answer).reward


def test_accepts_trls_calling_convention():
    """TRL passes prompts, completion ids, every dataset column and helpers as keywords."""
    kwargs = dict(
        prompts=["p"] * 2,
        completions=["\\boxed{7}", "\\boxed{8}"],
        completion_ids=[[1], [2]],
        answer=["7", "7"],
        level=["1", "1"],
        trainer_state=None,
        log_extra=lambda *a, **k: None,
        log_metric=lambda *a, **k: None,
    )
    assert [f(**kwargs) for f in REWARD_FUNCS] == [[1.0, 0.0], [0.1, 0.1]]


def test_conversational_completions():
    completions = [[{"role": "assistant", "content": "so \\boxed{5}"}]]
    assert correctness_reward(completions, ["5"]) == [1.0]
    assert format_reward(completions, ["5"]) == [0.1]


def test_trl_logs_the_two_parts_under_distinct_names():
    from trl.trainer.utils import get_callable_name

    names = [get_callable_name(f) for f in REWARD_FUNCS]
    assert names == ["correctness_reward", "format_reward"]
