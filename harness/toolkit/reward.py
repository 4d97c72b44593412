"""RL rewards for TRL's GRPOTrainer, built on the evaluation grader.

The seed study rewards 1 for a correct final answer and 0.1 for a boxed one,
so every completion scores 0, 0.1 or 1.1. The two parts are separate TRL
reward functions: TRL sums them (weights 1) for the advantage and logs each one
on its own (``rewards/correctness_reward/mean``, ``rewards/format_reward/mean``),
which is the "format reward" curve the issue asks to store.

Both call :func:`harness.grading.grade_full`, the function evaluation uses, so
training and evaluation can never disagree on what "correct" means. The
reward always extracts with the ``strict`` policy, whatever a run's
``--extraction``: the study's format bonus and its strictness are part of the
method (a lenient reward would pay for unformatted answers). The dataset
passed to the trainer needs an ``answer`` column (the reference).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from harness.grading import CORRECT_REWARD, FORMAT_REWARD, Grade, grade_full

__all__ = ["REWARD_FUNCS", "completion_text", "correctness_reward", "format_reward"]


def completion_text(completion: Any) -> str:
    """A completion as text: TRL passes strings, or message lists for chat datasets."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return str(completion)


@lru_cache(maxsize=8192)
def _grade(completion: str, answer: str) -> Grade:
    # Both reward functions grade the same (completion, answer) pairs of a step:
    # the cache makes the second one free.
    return grade_full(completion, answer, extraction="strict")


def correctness_reward(completions: Sequence[Any], answer: Sequence[str], **kwargs: Any) -> list[float]:
    """1.0 when the completion's final answer equals the reference ``answer``, else 0.0."""
    return [
        CORRECT_REWARD * _grade(completion_text(c), str(a)).correct for c, a in zip(completions, answer, strict=True)
    ]


def format_reward(completions: Sequence[Any], answer: Sequence[str], **kwargs: Any) -> list[float]:
    """0.1 when the completion gives a ``\\boxed{}`` answer (right or wrong), else 0.0."""
    return [
        FORMAT_REWARD * _grade(completion_text(c), str(a)).formatted for c, a in zip(completions, answer, strict=True)
    ]


#: what the GRPO trainers pass as ``reward_funcs`` (order fixes the log names)
REWARD_FUNCS = (correctness_reward, format_reward)
