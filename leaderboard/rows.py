"""Leaderboard rows from the result store: one per configuration, seeds pooled, with comparisons.

A *row* is every complete run of one configuration that differs only in its
seed: its accuracy is the mean over seeds of each problem's score, with a
bootstrap interval over problems (the unit a benchmark draws), and each
seed's own figure beside it. The engine that generated a run is part of its
configuration, so runs of two engines are two rows, never pooled.

The jobs live in their own modules: :mod:`.reader` reads the store
(read-only), :mod:`.model` holds the rows, :mod:`.stats` scores and compares
them, :mod:`.baseline` picks what each row is compared with, and
:mod:`.pareto` marks the fronts, :mod:`.divergence` pools each row's
divergence from its full-precision reference. This module puts them together.

"all" pools every problem of every benchmark of a row, as the seed study
averages its per-problem rewards over its five benchmarks.
"""

from __future__ import annotations

from collections import defaultdict

from harness.base.errors import UserError
from harness.leaderboard.baseline import Baseline, attach_comparisons
from harness.leaderboard.divergence import row_divergence
from harness.leaderboard.model import DEFAULT_CONTEXT_TOKENS, Row, Run, config_key, default_name
from harness.leaderboard.pareto import (
    kl_memory_axis,
    latency_axis,
    mark_kl_pareto,
    mark_latency_pareto,
    mark_pareto,
    memory_axis,
    pareto_front,
)
from harness.leaderboard.reader import load_runs
from harness.leaderboard.stats import score_row
from harness.runs.store import Store

__all__ = ["DEFAULT_CONTEXT_TOKENS", "Baseline", "Row", "Run", "build_rows", "leaderboard_rows", "pareto_front"]


def build_rows(runs: list[Run]) -> list[Row]:
    """Group runs by configuration less the seed, and score each group."""
    groups: dict[str, list[Run]] = defaultdict(list)
    for run in sorted(runs, key=lambda r: (r.seed, r.created)):
        groups[config_key(run.config)].append(run)
    rows = [Row(key=key, runs=members) for key, members in groups.items()]
    for row in rows:
        row.name = row.tags.get("row") or default_name(row.config)
        score_row(row)
        row.divergence = None if row.is_reference else row_divergence([(r.seed, r.divergence) for r in row.runs])
    rows.sort(key=Row.sort_key)
    return rows


def leaderboard_rows(store: Store, baseline: Baseline = Baseline(), n_samples: int = 3,
                     context_tokens: int = DEFAULT_CONTEXT_TOKENS, sweep: str | None = None) -> list[Row]:
    """Everything the leaderboard shows, from one read of the store."""
    if context_tokens < 0:
        raise UserError(f"--context-tokens must be >= 0, got {context_tokens}")
    rows = build_rows(load_runs(store, n_samples, sweep))
    for row in rows:
        row.context_tokens = context_tokens
    memory = memory_axis(rows, context_tokens)
    mark_pareto(rows, memory)
    mark_kl_pareto(rows, kl_memory_axis(rows, memory))
    mark_latency_pareto(rows, latency_axis(rows))
    attach_comparisons(rows, baseline)
    return rows
