"""``harness compare A B``: two stored runs side by side, on the problems both answered.

Accuracy alone ties recipes whose intervals overlap; the paired difference
(per-problem, so the between-problem variance cancels), the answers that
flipped and how far B's next-token distribution moved from A's say more. The
divergence of B from A is read from the store when A is B's reference, and
computed otherwise (both models built from the artifact cache, or rebuilt).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from harness.base.errors import UserError
from harness.base.metrics import paired_difference
from harness.core.config import RunConfig
from harness.core.plugin_manager import get_registry
from harness.runs.cache import ArtifactCache
from harness.runs.divergence import Reference, measure_divergence
from harness.runs.pipeline import Runner
from harness.runs.planning import plan
from harness.runs.results import stored_run
from harness.runs.store import Store
from harness.toolkit.divergence import first_sample_correct, flips


def compare_runs(store: Store, cache: ArtifactCache, run_a: str, run_b: str, console: Any = None) -> dict:
    """The comparison of stored runs ``run_a`` (the baseline) and ``run_b``, per benchmark."""
    a, b = stored_run(store, run_a), stored_run(store, run_b)
    scores_a, scores_b = store.problem_scores(a["id"]), store.problem_scores(b["id"])
    if not scores_a or not scores_b:
        empty = a if not scores_a else b
        raise UserError(f"run {empty['id']} ({empty['label']}) has no stored completions to compare")
    if sorted(scores_a) != sorted(scores_b):
        raise UserError(f"runs {a['id']} and {b['id']} were evaluated on different benchmarks "
                        f"({', '.join(sorted(scores_a))} and {', '.join(sorted(scores_b))})")
    for bench in scores_a:
        if set(scores_a[bench]) != set(scores_b[bench]):
            raise UserError(f"runs {a['id']} and {b['id']} answered different problems of {bench} "
                            f"({len(scores_a[bench])} and {len(scores_b[bench])}): compare runs of one problem set")
    out: dict[str, Any] = {"a": {"run_id": a["id"], "label": a["label"]}, "b": {"run_id": b["id"], "label": b["label"]},
                           "benchmarks": {}}
    divergence = _divergence(store, cache, a, b, console)
    for bench in sorted(scores_a):
        acc_a = {pid: s[0] for pid, s in scores_a[bench].items()}
        acc_b = {pid: s[0] for pid, s in scores_b[bench].items()}
        diff = paired_difference(acc_b, acc_a)
        out["benchmarks"][bench] = {
            "accuracy_a": sum(acc_a.values()) / len(acc_a),
            "accuracy_b": sum(acc_b.values()) / len(acc_b),
            "difference": {"value": diff.diff, "lo": diff.lo, "hi": diff.hi, "significant": diff.significant,
                           "problems": diff.n},
            "flips": flips(first_sample_correct(store.samples(a["id"], bench)),
                           first_sample_correct(store.samples(b["id"], bench))),
            "by_level": _by_level(store, a["id"], b["id"], bench),
            "divergence": divergence.get(bench),
        }
    return out


def _by_level(store: Store, run_a: str, run_b: str, bench: str) -> dict[str, dict]:
    """Level -> both runs' accuracy and their difference (B - A), on that level's problems."""
    level: dict[str, str] = {}
    correct: dict[str, dict[str, list[float]]] = {run_a: defaultdict(list), run_b: defaultdict(list)}
    for run_id in (run_a, run_b):
        for row in store.samples(run_id, bench):
            level[row["problem_id"]] = str(row["level"]) if row["level"] is not None else "-"
            correct[run_id][row["problem_id"]].append(float(row["correct"]))
    out = {}
    for name in sorted(set(level.values())):
        pids = [pid for pid, lv in level.items() if lv == name]
        acc = {run: sum(sum(correct[run][p]) / len(correct[run][p]) for p in pids) / len(pids) for run in correct}
        out[name] = {"problems": len(pids), "accuracy_a": acc[run_a], "accuracy_b": acc[run_b],
                     "difference": acc[run_b] - acc[run_a]}
    return out


def _divergence(store: Store, cache: ArtifactCache, a: dict, b: dict, console: Any) -> dict[str, dict]:
    """B's divergence from A: stored when A is B's reference, else measured now (not stored)."""
    stored = store.divergence(b["id"])
    if stored and all(figures.get("reference_run") == a["id"] for figures in stored.values()):
        return stored
    registry = get_registry()
    plan_a = plan(RunConfig.from_dict(a["config"]), registry)
    plan_b = plan(RunConfig.from_dict(b["config"]), registry)
    if plan_a.engine.name != plan_b.engine.name:
        raise UserError(f"runs {a['id']} and {b['id']} were served by different engines "
                        f"({plan_a.engine.name}, {plan_b.engine.name}): their divergence would mix two engines")
    runner = Runner(store, cache, console=console)
    dir_a, _ = runner.materialize(plan_a, a["id"])
    dir_b, _ = runner.materialize(plan_b, b["id"])
    return measure_divergence(plan_b, Path(dir_b), Reference(plan_a, a["id"], Path(dir_a)), store, b["id"],
                              console, cache.root / "logs", keep=False)
