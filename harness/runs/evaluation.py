"""The evaluation loop: prompts -> an engine's generation -> grading -> per-sample rows -> metrics.

Resumable by construction: samples already in the store for this run are
skipped, and each batch is committed as soon as it is graded. Metrics are
always computed from the stored rows, so a resumed run scores exactly what an
uninterrupted one would.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from harness.base.metrics import mean_ci, pass_at_k_report, repeat_report
from harness.core.benchmark import Problem
from harness.core.config import Sampling
from harness.grading import grade_full, references, unparseable_answers
from harness.runs.store import Store


@dataclass
class EvalTiming:
    """Where the evaluation's wall time went (the profiler reports the loop's overhead)."""

    wall: float = 0.0
    generate: float = 0.0
    problems: int = 0
    tokens: int = 0


def evaluate(
    store: Store,
    run_id: str,
    benchmark: str,
    problems: Sequence[Problem],
    session,
    prompt_for,
    sampling: Sampling,
    batch_size: int,
    seed: int,
    progress=None,
    extraction: str = "strict",
) -> EvalTiming:
    """Generate and grade every (problem, sample) not yet stored for ``run_id``.

    ``session`` is a started engine (:class:`harness.core.engine.Session`): whatever
    generates, this loop grades and stores the same way, batch by batch as they finish."""
    timing = EvalTiming()
    start = time.perf_counter()
    done = store.done_samples(run_id, benchmark)
    todo = [p for p in problems if any((p.id, k) not in done for k in range(sampling.n))]
    if done and progress:
        progress.console.print(
            f"{benchmark}: resuming, {len(done)} of {len(problems) * sampling.n} samples already stored"
        )
    task = (
        progress.add_task(f"{benchmark}", total=len(problems), completed=len(problems) - len(todo))
        if progress else None
    )
    if todo:
        prompts = [prompt_for(p) for p in todo]

        def on_batch(indices: list[int], completions) -> None:
            rows = []
            for i, comps in zip(indices, completions):
                p = todo[i]
                for k, gen in enumerate(comps):
                    if (p.id, k) in done:
                        continue
                    g = grade_full(gen.text, references(p), extraction=extraction)
                    rows.append(
                        dict(problem_id=p.id, sample=k, level=p.level, prompt=prompts[i], completion=gen.text,
                             predicted=g.predicted, reference=p.answer, correct=int(g.correct),
                             formatted=int(g.formatted), reward=g.reward, n_tokens=gen.n_tokens)
                    )
                    timing.tokens += gen.n_tokens
            store.add_samples(run_id, benchmark, rows)
            timing.problems += len(indices)
            if progress:
                progress.update(task, advance=len(indices))

        t0 = time.perf_counter()
        session.generate(prompts, sampling, batch_size=batch_size, seed=seed, on_batch=on_batch)
        timing.generate = time.perf_counter() - t0
    timing.wall = time.perf_counter() - start
    return timing


def compute_metrics(
    rows: list[dict], seed: int = 0, problems: Sequence[Problem] = (), n_requested: int | None = None
) -> dict[str, tuple[float, float | None, float | None]]:
    """Per-benchmark metrics from stored sample rows: (value, lo, hi) each.

    Intervals resample problems (not samples), the unit the benchmark draws.
    ``reward`` is the seed study's Table 1 metric (1 correct + 0.1 formatted).
    With n samples per problem, ``accuracy`` is pass@1 (mean over samples) and
    unbiased pass@k is reported for k = 2, 4, ... up to n (up to the fewest stored, with
    ``problems_short_of_n`` saying so, when some have fewer than ``n_requested``), and so are
    ``repeats``, ``accuracy_repeat_std`` and ``avg@K`` (:func:`harness.base.metrics.repeat_report`;
    greedy runs have one sample per problem, so none of these). References the
    grader cannot parse are counted (``unparseable_refs``), never hidden.
    """
    by_problem: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_problem[r["problem_id"]].append(r)
    pids = sorted(by_problem)
    acc = [sum(r["correct"] for r in by_problem[p]) / len(by_problem[p]) for p in pids]
    rew = [sum(r["reward"] for r in by_problem[p]) / len(by_problem[p]) for p in pids]
    fmt = [sum(r["formatted"] for r in by_problem[p]) / len(by_problem[p]) for p in pids]
    out: dict[str, tuple[float, float | None, float | None]] = {
        "accuracy": mean_ci(acc, seed=seed),
        "reward": mean_ci(rew, seed=seed),
        "format_rate": (sum(fmt) / len(fmt), None, None),
        "mean_tokens": (sum(r["n_tokens"] for r in rows) / len(rows), None, None),
        "problems": (float(len(pids)), None, None),
        "samples": (float(len(rows)), None, None),
    }
    out.update(pass_at_k_report({p: [r["correct"] for r in by_problem[p]] for p in pids}, n_requested))
    repeats = {p: {r.get("sample", i): r["correct"] for i, r in enumerate(by_problem[p])} for p in pids}
    out.update(repeat_report(repeats, seed=seed))
    if problems:
        out["unparseable_refs"] = (float(len(unparseable_answers(problems))), None, None)
    levels: dict[str, list[float]] = defaultdict(list)
    for p, a in zip(pids, acc):
        level = by_problem[p][0].get("level")
        if level:
            levels[level].append(a)
    for level, vals in sorted(levels.items()):
        out[f"accuracy/level={level}"] = mean_ci(vals, seed=seed)
    return out
