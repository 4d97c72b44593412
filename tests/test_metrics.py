"""Metrics: bootstrap means, unbiased pass@k, paired differences, breakdowns."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from harness.base.errors import UserError
from harness.base.metrics import (
    breakdown,
    by_level,
    by_subject,
    mean_ci,
    paired_difference,
    pass_at_k,
    pass_at_k_over_problems,
    pass_at_k_per_problem,
)
from harness.core.benchmark import Problem


def test_mean_ci_brackets_the_mean_and_is_reproducible():
    values = [1, 0, 1, 1, 0, 0, 1, 1, 1, 0] * 5
    mean, lo, hi = mean_ci(values, seed=3)
    assert mean == pytest.approx(0.6)
    assert lo < mean < hi
    assert (mean, lo, hi) == mean_ci(values, seed=3)
    assert all(math.isnan(x) for x in mean_ci([]))


def test_pass_at_k_closed_form():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(5, 5, 1) == 1.0
    assert pass_at_k(5, 3, 3) == 1.0  # fewer than k wrong samples: some draw always has a right one
    assert pass_at_k(10, 2, 5) == pytest.approx(1 - math.comb(8, 5) / math.comb(10, 5))
    assert pass_at_k(200, 13, 100) == pytest.approx(1 - math.comb(187, 100) / math.comb(200, 100))


def test_pass_at_k_is_the_probability_over_all_k_subsets():
    """Unbiased: the exact mean, over every k-subset of the n samples, of "some sample is right"."""
    samples = [True, False, False, True, False, False, False]
    for k in range(1, len(samples) + 1):
        subsets = list(itertools.combinations(samples, k))
        exact = sum(any(s) for s in subsets) / len(subsets)
        assert pass_at_k(len(samples), sum(samples), k) == pytest.approx(exact)


@pytest.mark.parametrize(("n", "c", "k"), [(5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)])
def test_pass_at_k_rejects_impossible_arguments(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_pass_at_k_over_problems():
    correct = {"a": [True, False, False, False], "b": [False] * 4, "c": [True] * 4}
    per = pass_at_k_per_problem(correct, 1)
    assert per == pytest.approx({"a": 0.25, "b": 0.0, "c": 1.0})
    mean, lo, hi = pass_at_k_over_problems(correct, 2)
    assert mean == pytest.approx((0.5 + 0.0 + 1.0) / 3)
    assert lo <= mean <= hi


def test_paired_difference_sees_a_consistent_gain():
    rng = random.Random(0)
    base = {f"p{i}": float(rng.random() < 0.5) for i in range(400)}
    # b is a: it loses 40 problems a solved; the paired interval must see it
    solved = [p for p, v in base.items() if v == 1.0]
    worse = dict(base) | {p: 0.0 for p in solved[:40]}
    d = paired_difference(base, worse)
    assert d.n == 400 and d.only_a == 0 and d.only_b == 0
    assert d.diff == pytest.approx(40 / 400)
    assert d.lo > 0 and d.significant
    same = paired_difference(base, dict(base))
    assert (same.diff, same.lo, same.hi, same.significant) == (0.0, 0.0, 0.0, False)


def test_paired_difference_noise_is_not_significant():
    rng = random.Random(1)
    a = {f"p{i}": float(rng.random() < 0.5) for i in range(200)}
    b = {f"p{i}": float(rng.random() < 0.5) for i in range(200)}
    d = paired_difference(a, b)
    assert d.lo < d.diff < d.hi
    assert not d.significant


def test_paired_difference_uses_only_shared_problems():
    a = {"x": 1.0, "y": 1.0, "only_a": 1.0}
    b = {"x": 0.0, "y": 0.0, "only_b": 1.0, "only_b2": 0.0}
    d = paired_difference(a, b)
    assert (d.n, d.only_a, d.only_b, d.diff) == (2, 1, 2, 1.0)


def test_paired_difference_without_overlap_is_an_error():
    with pytest.raises(UserError, match="share no problem"):
        paired_difference({"a": 1.0}, {"b": 1.0})


def test_breakdowns_by_level_and_subject():
    problems = [
        Problem("1", "p", "1", level="2", subject="Algebra"),
        Problem("2", "p", "1", level="10", subject="Algebra"),
        Problem("3", "p", "1", level="2", subject="Geometry"),
        Problem("4", "p", "1"),
    ]
    scores = {"1": 1.0, "2": 0.0, "3": 0.0, "4": 1.0}
    levels = by_level(scores, problems)
    assert list(levels) == ["2", "10"]  # natural order
    assert (levels["2"].n, levels["2"].mean) == (2, 0.5)
    assert (levels["10"].n, levels["10"].mean) == (1, 0.0)
    subjects = by_subject(scores, problems)
    assert subjects["Algebra"].mean == 0.5 and subjects["Geometry"].mean == 0.0
    assert breakdown(scores, {}) == {}
