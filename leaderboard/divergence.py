"""A row's divergence from its full-precision reference, pooled from its runs' stored summaries.

The store keeps, per run and benchmark, the summary of
:func:`harness.toolkit.divergence.summarize` (``kl_mean`` with a bootstrap
interval over problems, ``kl_p99``, ``top1_agree``, ``nll_delta``) and the
flips; per-problem KL is not stored, so a row's seeds cannot be pooled
problem by problem as its accuracy is. What each figure becomes instead:

- ``kl_mean``, one run over several benchmarks: the problem-weighted mean
  (each benchmark's figure is a mean over its problems, so this is the mean
  over all of them), its interval combined from the benchmarks' as
  independent estimates (no problem is in two benchmarks);
- ``kl_mean``, several seeds: the mean of the seeds' figures, with the range
  over seeds (``interval: "seed range"``) in place of a bootstrap interval;
- ``top1_agree`` and ``nll_delta`` are means over tokens: weighted by tokens,
  they pool exactly;
- ``kl_p99``: the largest of the parts, an upper bound on the pooled 99th
  percentile (no more than 1 % of any part lies above it);
- flips: counted over benchmarks, averaged over seeds.

Everything here works on plain dicts, so the model does not depend on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def _kl_value(figures: Mapping) -> float | None:
    return (figures.get("kl_mean") or {}).get("value")


def _end(stat: Mapping, end: str) -> float:
    """An interval's end, or the value where the interval is missing (it then adds no width)."""
    return stat["value"] if stat.get(end) is None else stat[end]


def _token_mean(parts: Sequence[Mapping], key: str) -> float | None:
    """Mean of a per-token figure over parts, each weighted by the tokens it covers."""
    pairs = [(p[key], p.get("tokens") or 0) for p in parts if p.get(key) is not None]
    weight = sum(w for _, w in pairs)
    if weight:
        return sum(v * w for v, w in pairs) / weight
    return sum(v for v, _ in pairs) / len(pairs) if pairs else None


def method(top_ks: Sequence[int | None]) -> tuple[int | None, str]:
    """``(top_k, label)``: None and ``exact`` over the whole vocabulary; the k and ``top-20`` for a
    top-k approximation (``exact + top-20`` when parts differ; the largest k when several)."""
    ks = sorted({k for k in top_ks if k is not None})
    if not ks:
        return None, "exact"
    label = "top-" + "/".join(str(k) for k in ks)
    return ks[-1], ("exact + " + label if any(k is None for k in top_ks) else label)


def run_figures(per_bench: Mapping[str, Mapping]) -> dict | None:
    """One run's figures over the benchmarks it has a KL for (None: none measured); ``top_ks`` lists each
    benchmark's ``top_k`` for :func:`pool_seeds` to label."""
    parts = {b: f for b, f in sorted(per_bench.items()) if _kl_value(f) is not None}
    if not parts:
        return None
    problems = sum(int(f.get("problems") or 0) for f in parts.values())
    values = list(parts.values())
    if len(values) == 1:
        kl = dict(values[0]["kl_mean"])
    else:
        weights = [(f.get("problems") or 0) / problems if problems else 1 / len(values) for f in values]
        value = sum(w * _kl_value(f) for w, f in zip(weights, values))
        kl = {"value": value}
        for end, sign in (("lo", -1), ("hi", 1)):
            spread = [w * abs(_end(f["kl_mean"], end) - f["kl_mean"]["value"]) for w, f in zip(weights, values)]
            kl[end] = max(0.0, value + sign * math.sqrt(sum(s * s for s in spread)))
    flips = {k: sum((f.get("flips") or {}).get(k) or 0 for f in values) for k in ("lost", "gained", "problems")}
    return {
        **_token_figures(kl, values, flips),
        "top_ks": [f.get("top_k") for f in values], "problems": problems,
        "tokens": sum(int(f.get("tokens") or 0) for f in values),
        "reference_runs": sorted({str(f["reference_run"]) for f in values if f.get("reference_run")}),
        "engine": "/".join(dict.fromkeys(str(f["engine"]) for f in values if f.get("engine"))) or None,
        "benchmarks": list(parts),
    }


def pool_seeds(per_seed: Sequence[tuple[int, dict | None]]) -> dict | None:
    """A row's figures from its seeds' :func:`run_figures` (None: no seed has a KL).

    One seed keeps its interval (``interval: "bootstrap"``, or ``"combined"``
    over several benchmarks); several give the mean with the range over
    seeds, because the stored summaries cannot be resampled by problem.
    """
    measured = [(seed, f) for seed, f in per_seed if f]
    if not measured:
        return None
    figs = [f for _, f in measured]
    values = [_kl_value(f) for f in figs]
    if len(figs) == 1:
        kl = {**figs[0]["kl_mean"], "interval": "combined" if len(figs[0]["benchmarks"]) > 1 else "bootstrap"}
    else:
        kl = {"value": sum(values) / len(values), "lo": min(values), "hi": max(values), "interval": "seed range"}
    top_k, label = method([k for f in figs for k in f["top_ks"]])
    kl.update(top_k=top_k, method=label, seeds=[s for s, _ in measured],
              per_seed=[{"seed": s, "value": v} for (s, _), v in zip(measured, values)])
    n = len(figs)
    flips = {k: sum(f["flips"][k] for f in figs) / n for k in ("lost", "gained", "problems")}
    figures = _token_figures(kl, figs, flips)
    figures["flips"]["seeds"] = n
    return {
        **figures,
        "top_k": top_k, "method": label,
        "problems": max(f["problems"] for f in figs), "tokens": sum(f["tokens"] for f in figs),
        "reference_runs": sorted({r for f in figs for r in f["reference_runs"]}),
        "engine": "/".join(dict.fromkeys(f["engine"] for f in figs if f["engine"])) or None,
    }


def _token_figures(kl: dict, parts: Sequence[Mapping], flips: dict) -> dict:
    """The figures every level of pooling shares: the KL given, the worst 99th percentile, the
    token-weighted means, and the flips summed (or averaged) by the caller with their rates."""
    p99 = [f["kl_p99"] for f in parts if f.get("kl_p99") is not None]
    flipped = flips["problems"]
    return {
        "kl_mean": kl, "kl_p99": max(p99) if p99 else None,
        "top1_agree": _token_mean(parts, "top1_agree"), "nll_delta": _token_mean(parts, "nll_delta"),
        "flips": {**flips, "lost_rate": flips["lost"] / flipped if flipped else None,
                  "gained_rate": flips["gained"] / flipped if flipped else None},
    }


def row_divergence(per_seed: Sequence[tuple[int, Mapping[str, Mapping]]]) -> dict | None:
    """A row's divergence: pooled over every benchmark (the row's figures) and per benchmark.

    ``per_seed`` is each seed with its run's stored figures (benchmark -> summary).
    """
    pooled = pool_seeds([(seed, run_figures(figures)) for seed, figures in per_seed])
    if pooled is None:
        return None
    benches = sorted({b for _, figures in per_seed for b in figures})
    pooled["benchmarks"] = {
        b: p for b in benches
        if (p := pool_seeds([(seed, run_figures({b: figures[b]}) if b in figures else None)
                             for seed, figures in per_seed])) is not None
    }
    return pooled
