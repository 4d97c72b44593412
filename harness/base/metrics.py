"""Scores with honest uncertainty: means with bootstrap intervals, pass@k, spread between repeats,
paired differences.

The unit of resampling is always the problem: a benchmark is a draw of
problems, and the samples of one problem are not independent of each other.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.base.errors import UserError


def mean_ci(
    values: Sequence[float], n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap (1 - alpha) interval, resampling problems."""
    import numpy as np

    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    boots = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return float(x.mean()), float(lo), float(hi)


# ---------------------------------------------------------------------------
# pass@k


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem: n samples, c of them correct (Chen et al., 2021).

    ``1 - C(n - c, k) / C(n, k)``, computed as a product so large n never
    overflows. pass@1 is ``c / n``.
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n (k samples drawn from n), got n={n}, k={k}")
    if n - c < k:
        return 1.0
    prob_all_wrong = 1.0
    for i in range(n - c + 1, n + 1):
        prob_all_wrong *= 1.0 - k / i
    return 1.0 - prob_all_wrong


def pass_at_k_per_problem(correct: Mapping[str, Sequence[bool | int]], k: int) -> dict[str, float]:
    """pass@k of each problem from its samples' correctness (problem id -> [bool, ...])."""
    return {pid: pass_at_k(len(samples), int(sum(bool(s) for s in samples)), k) for pid, samples in correct.items()}


def pass_at_k_over_problems(
    correct: Mapping[str, Sequence[bool | int]], k: int, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """Mean pass@k over problems with its bootstrap interval: (mean, lo, hi)."""
    return mean_ci(list(pass_at_k_per_problem(correct, k).values()), n_boot=n_boot, alpha=alpha, seed=seed)


def pass_at_k_report(
    correct: Mapping[str, Sequence[bool | int]], n_requested: int | None = None
) -> dict[str, tuple[float, float | None, float | None]]:
    """pass@k for k = 2, 4, ... up to the fewest samples any problem has, and a note when some fell short.

    The unbiased estimator needs k <= n for every problem. When a run stored
    fewer samples for some problems than ``-n`` asked for (``n_requested``;
    None: the most any problem has), k stops at what every problem has --
    never an estimate that mixes problems with k > n, nor one that silently
    drops them -- and two metrics say so: ``problems_short_of_n`` (how many
    problems have fewer samples than asked) and ``samples_fewest``.
    """
    sizes = [len(samples) for samples in correct.values()]
    if not sizes:
        return {}
    fewest, asked = min(sizes), n_requested or max(sizes)
    out: dict[str, tuple[float, float | None, float | None]] = {}
    k = 2
    while k <= fewest:
        out[f"pass@{k}"] = pass_at_k_over_problems(correct, k)
        k *= 2
    short = sum(1 for n in sizes if n < asked)
    if short:
        out["problems_short_of_n"] = (float(short), None, None)
        out["samples_fewest"] = (float(fewest), None, None)
    return out


# ---------------------------------------------------------------------------
# repeats


def repeat_report(
    correct: Mapping[str, Mapping[int, bool | int]], seed: int = 0
) -> dict[str, tuple[float, float | None, float | None]]:
    """The spread of accuracy between repeats of a sampled evaluation (problem id -> {sample: correct}).

    Repeat k is sample k of every problem, so its accuracy is a whole
    evaluation's; ``accuracy_repeat_std`` is the sample standard deviation
    (ddof 1) of those K accuracies: how far one evaluation of this run could
    land from another. ``avg@K`` is the mean over problems of each problem's
    share of correct samples, with its bootstrap interval over problems (the
    per-problem figure paired comparisons use); it equals the mean of the
    repeat accuracies. Only repeats that every problem has count, so a
    half-finished repeat never skews either figure. Fewer than two complete
    repeats: nothing (one evaluation has no spread).
    """
    import numpy as np

    if not correct:
        return {}
    complete = sorted(set.intersection(*(set(samples) for samples in correct.values())))
    if len(complete) < 2:
        return {}
    pids = sorted(correct)
    grid = np.array([[float(bool(correct[p][k])) for k in complete] for p in pids])  # problems x repeats
    per_repeat = grid.mean(axis=0)
    return {
        "repeats": (float(len(complete)), None, None),
        "accuracy_repeat_std": (float(per_repeat.std(ddof=1)), None, None),
        f"avg@{len(complete)}": mean_ci(grid.mean(axis=1), seed=seed),
    }


# ---------------------------------------------------------------------------
# paired comparison


@dataclass(frozen=True)
class PairedDifference:
    """Mean of (a - b) over the problems both runs scored, with its bootstrap interval."""

    diff: float
    lo: float
    hi: float
    #: the interval excludes zero
    significant: bool
    #: problems in both runs (the ones compared)
    n: int
    #: problems only one of the runs scored (left out of the comparison)
    only_a: int = 0
    only_b: int = 0
    alpha: float = 0.05


def paired_difference(
    a: Mapping[str, float], b: Mapping[str, float], n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> PairedDifference:
    """Compare two runs on the same problems: mean per-problem difference a - b.

    Resampling the shared problems (a paired bootstrap) removes the
    between-problem variance that two independent intervals would carry, so a
    small but consistent difference can be told from noise. Problems that only
    one run has are left out and counted. No shared problem is an error.
    """
    import numpy as np

    shared = sorted(set(a) & set(b))
    if not shared:
        raise UserError(
            f"the two runs share no problem ids ({len(a)} and {len(b)} problems): "
            "compare runs on the same benchmark and data"
        )
    d = np.array([float(a[i]) - float(b[i]) for i in shared])
    mean, lo, hi = mean_ci(d, n_boot=n_boot, alpha=alpha, seed=seed)
    return PairedDifference(
        diff=mean, lo=lo, hi=hi, significant=bool(lo > 0 or hi < 0), n=len(shared),
        only_a=len(set(a) - set(b)), only_b=len(set(b) - set(a)), alpha=alpha,
    )


# ---------------------------------------------------------------------------
# breakdowns


@dataclass(frozen=True)
class GroupScore:
    """The mean score of one group of problems (a level, a subject) with its interval."""

    group: str
    n: int
    mean: float
    lo: float
    hi: float


def breakdown(
    scores: Mapping[str, float],
    groups: Mapping[str, str | None],
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, GroupScore]:
    """Scores grouped by ``groups[problem id]``; problems without a group are left out.

    Groups come back in natural order ("2" before "10").
    """
    by_group: dict[str, list[float]] = defaultdict(list)
    for pid, score in scores.items():
        group = groups.get(pid)
        if group is not None and str(group) != "":
            by_group[str(group)].append(float(score))
    out = {}
    for group in sorted(by_group, key=_natural_key):
        mean, lo, hi = mean_ci(by_group[group], n_boot=n_boot, alpha=alpha, seed=seed)
        out[group] = GroupScore(group, len(by_group[group]), mean, lo, hi)
    return out


def _attribute_map(problems: Iterable[Any], attr: str) -> dict[str, str | None]:
    return {p.id: getattr(p, attr, None) for p in problems}


def by_level(scores: Mapping[str, float], problems: Iterable[Any], **kw: Any) -> dict[str, GroupScore]:
    """:func:`breakdown` by each problem's ``level`` (empty when the data has none)."""
    return breakdown(scores, _attribute_map(problems, "level"), **kw)


def by_subject(scores: Mapping[str, float], problems: Iterable[Any], **kw: Any) -> dict[str, GroupScore]:
    """:func:`breakdown` by each problem's ``subject`` (empty when the data has none)."""
    return breakdown(scores, _attribute_map(problems, "subject"), **kw)


def _natural_key(text: str) -> tuple:
    import re

    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text))
