"""A row's scores and its paired comparisons, on :mod:`harness.base.metrics`' statistics.

The unit is the problem throughout: several seeds of one configuration are
pooled by averaging each problem's score over the seeds, intervals resample
problems (:func:`harness.base.metrics.mean_ci`), and two rows are compared on the
problems both scored (:func:`harness.base.metrics.paired_difference`), so the
between-problem variance that two separate intervals carry cancels.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from harness.leaderboard.model import Row


def interval(values: list[float], seed: int = 0) -> dict:
    """``{"value", "lo", "hi"}``: the mean with its bootstrap interval over problems."""
    from harness.base.metrics import mean_ci

    value, lo, hi = mean_ci(values, seed=seed)
    return {"value": value, "lo": lo, "hi": hi}


def score_row(row: Row) -> None:
    """Per-benchmark and pooled accuracy and reward of a row, from its runs' per-problem scores."""
    per_problem: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for run in row.runs:
        for bench, problems in run.scores.items():
            for pid, score in problems.items():
                per_problem[f"{bench}/{pid}"].append(score)
    row.scores = {
        k: (sum(a for a, _ in v) / len(v), sum(r for _, r in v) / len(v)) for k, v in sorted(per_problem.items())
    }
    benches = sorted({b for run in row.runs for b in run.metrics} | {k.split("/", 1)[0] for k in row.scores})
    for bench in benches:
        keys = [k for k in row.scores if k.split("/", 1)[0] == bench]
        if len(row.runs) == 1 and "accuracy" in row.runs[0].metrics.get(bench, {}):
            # one run: the store's own figures (the same numbers `harness show` prints)
            m = row.runs[0].metrics[bench]
            entry = {"accuracy": m["accuracy"], "reward": m.get("reward"),
                     "problems": int((m.get("problems") or {}).get("value") or len(keys))}
        elif keys:
            entry = {"accuracy": interval([row.scores[k][0] for k in keys]),
                     "reward": interval([row.scores[k][1] for k in keys]), "problems": len(keys)}
        else:
            continue
        entry["per_seed"] = [(r.metrics.get(bench, {}).get("accuracy") or {}).get("value") for r in row.runs]
        row.benchmarks[bench] = entry
    if row.scores:
        row.overall = {"accuracy": interval([a for a, _ in row.scores.values()]),
                       "reward": interval([r for _, r in row.scores.values()]), "problems": len(row.scores)}
    elif row.benchmarks:  # no stored samples: the mean of the benchmarks, without an interval
        accs = [b["accuracy"]["value"] for b in row.benchmarks.values()]
        rews = [b["reward"]["value"] for b in row.benchmarks.values() if b.get("reward")]
        row.overall = {"accuracy": {"value": sum(accs) / len(accs), "lo": None, "hi": None},
                       "reward": {"value": sum(rews) / len(rews), "lo": None, "hi": None} if rews else None,
                       "problems": sum(b["problems"] for b in row.benchmarks.values())}


def compare(row: Row, other: Row, kind: str) -> dict | None:
    """Paired difference ``row - other`` in accuracy and reward, pooled and per benchmark."""
    from harness.base.metrics import paired_difference

    def diffs(keep: Callable[[str], bool]) -> dict | None:
        a = {k: v for k, v in row.scores.items() if keep(k)}
        b = {k: v for k, v in other.scores.items() if keep(k)}
        if not set(a) & set(b):
            return None
        out = {}
        for i, metric in enumerate(("accuracy", "reward")):
            d = paired_difference({k: v[i] for k, v in a.items()}, {k: v[i] for k, v in b.items()})
            out[metric] = {"diff": d.diff, "lo": d.lo, "hi": d.hi, "significant": d.significant, "n": d.n}
        return out

    pooled = diffs(lambda k: True)
    if pooled is None:
        return None
    benches = sorted({k.split("/", 1)[0] for k in row.scores})
    per_bench = {b: d for b in benches if (d := diffs(lambda k, b=b: k.split("/", 1)[0] == b)) is not None}
    return {"kind": kind, "against": other.name, "against_key": other.key, "against_variant": other.variant,
            "against_engine": other.engine, "against_run_ids": other.run_ids, "all": pooled,
            "benchmarks": per_bench}
