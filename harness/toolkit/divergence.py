"""How far a quantized model's next-token distribution moved from its reference's, on the same text.

Accuracy on a few hundred problems cannot tell recipes apart whose scores
tie; the distance between the two models' distributions on the reference's
own completions can (llama.cpp ranks its quantization types this way). For
every completion token the reference wrote, both models are scored
teacher-forced on the same prefix, and four figures are kept:

- ``kl``: KL(reference ‖ model), in nats;
- ``top1``: whether both models' most likely next token is the same;
- ``nll_ref`` and ``nll_run``: each model's negative log-likelihood of the
  token the reference actually wrote.

With the whole vocabulary (the ``hf`` engine) the KL is exact. A server gives
only its top-k log-probabilities per position: :func:`topk_token_figures`
then computes the KL over the reference's top k plus one bucket for the rest
of the vocabulary: an approximation that comes close when k covers most of
the reference's mass (the run records which k, and a test measures the gap).

Problems are the unit of resampling, as everywhere in the harness: each
problem's figure is the mean over its completion tokens, and the interval
resamples problems.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.base.metrics import mean_ci

#: the percentile of per-token KL reported beside the mean (llama.cpp reports the same tail)
TAIL_PERCENTILE = 99.0
#: below this probability a top-k bucket counts as empty (log of zero guarded)
_FLOOR = 1e-12


@dataclass
class TokenFigures:
    """Per completion token of one text: the figures the summary reduces."""

    kl: list[float] = field(default_factory=list)
    top1: list[bool] = field(default_factory=list)
    nll_ref: list[float] = field(default_factory=list)
    nll_run: list[float] = field(default_factory=list)

    def extend(self, other: TokenFigures) -> None:
        self.kl.extend(other.kl)
        self.top1.extend(other.top1)
        self.nll_ref.extend(other.nll_ref)
        self.nll_run.extend(other.nll_run)

    def __len__(self) -> int:
        return len(self.kl)


def exact_token_figures(ref_logprobs: Any, run_logprobs: Any, targets: Any) -> TokenFigures:
    """Figures from full-vocabulary log-probabilities ``[T, V]`` of both models and the ``[T]`` tokens
    the reference wrote (torch tensors; computed in float64 so a KL of 1e-6 is not rounding noise)."""
    import torch

    ref = ref_logprobs.double()
    run = run_logprobs.double()
    if ref.shape != run.shape:
        raise ValueError(f"the two models' distributions differ in shape: {tuple(ref.shape)} vs {tuple(run.shape)}")
    kl = (ref.exp() * (ref - run)).sum(dim=-1).clamp_min(0.0)
    top1 = ref.argmax(dim=-1) == run.argmax(dim=-1)
    index = targets.long().view(-1, 1)
    nll_ref = -torch.gather(ref, 1, index).squeeze(1)
    nll_run = -torch.gather(run, 1, index).squeeze(1)
    return TokenFigures(kl.tolist(), top1.tolist(), nll_ref.tolist(), nll_run.tolist())


def topk_token_figures(
    ref_top: Sequence[Mapping[int, float]],
    run_top: Sequence[Mapping[int, float]],
    ref_target: Sequence[float],
    run_target: Sequence[float],
) -> TokenFigures:
    """Figures from each position's top-k log-probabilities (token id -> log-probability) of both
    models and each model's log-probability of the reference's token.

    The KL is taken over the reference's top k plus a bucket for everything
    else: a token of the reference's top k that the model's top k lacks gets
    the model's smallest listed probability (the most it can have). It equals
    the exact KL when both top-k lists hold all of their models' mass.
    """
    import math

    out = TokenFigures()
    for ref, run, lr, lq in zip(ref_top, run_top, ref_target, run_target):
        floor = min(run.values()) if run else math.log(_FLOOR)
        kl, p_mass, q_mass = 0.0, 0.0, 0.0
        for token, lp in ref.items():
            lq_token = run.get(token, floor)
            p = math.exp(lp)
            kl += p * (lp - lq_token)
            p_mass += p
            q_mass += math.exp(lq_token)
        p_rest, q_rest = max(1.0 - p_mass, 0.0), max(1.0 - q_mass, _FLOOR)
        if p_rest > _FLOOR:
            kl += p_rest * (math.log(p_rest) - math.log(q_rest))
        out.kl.append(max(kl, 0.0))
        out.top1.append(bool(ref) and bool(run) and max(ref, key=ref.get) == max(run, key=run.get))
        out.nll_ref.append(-lr)
        out.nll_run.append(-lq)
    return out


def summarize(per_problem: Mapping[str, TokenFigures], seed: int = 0) -> dict[str, Any]:
    """The stored figures of one benchmark: ``kl_mean`` (mean over problems of each problem's mean KL,
    with its bootstrap interval), ``kl_p99`` (over all tokens), ``top1_agree`` and ``nll_delta``
    (over all tokens), and how many problems and tokens they cover."""
    import numpy as np

    scored = {pid: figs for pid, figs in per_problem.items() if len(figs)}
    if not scored:
        return {"kl_mean": None, "kl_p99": None, "top1_agree": None, "nll_delta": None, "problems": 0, "tokens": 0}
    value, lo, hi = mean_ci([float(np.mean(f.kl)) for f in scored.values()], seed=seed)
    every = TokenFigures()
    for figs in scored.values():
        every.extend(figs)
    return {
        "kl_mean": {"value": value, "lo": lo, "hi": hi},
        "kl_p99": float(np.percentile(every.kl, TAIL_PERCENTILE)),
        "top1_agree": float(np.mean(every.top1)),
        "nll_delta": float(np.mean(np.asarray(every.nll_run) - np.asarray(every.nll_ref))),
        "problems": len(scored),
        "tokens": len(every),
    }


def flips(reference: Mapping[str, bool], run: Mapping[str, bool]) -> dict[str, Any]:
    """Answers that changed between the reference and the run, on the problems both graded:
    ``lost`` (right there, wrong here) and ``gained`` (the reverse), as counts and rates."""
    shared = sorted(set(reference) & set(run))
    lost = sum(1 for pid in shared if reference[pid] and not run[pid])
    gained = sum(1 for pid in shared if run[pid] and not reference[pid])
    n = len(shared)
    return {"lost": lost, "gained": gained, "problems": n,
            "lost_rate": lost / n if n else None, "gained_rate": gained / n if n else None}


def first_sample_correct(rows: Iterable[Mapping[str, Any]]) -> dict[str, bool]:
    """Problem id -> whether its first sample is correct: what a flip compares (greedy: the answer)."""
    return {row["problem_id"]: bool(row["correct"]) for row in rows if int(row.get("sample", 0)) == 0}
