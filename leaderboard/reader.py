"""Reading the result store for the leaderboard: read-only, through the Store's public methods only.

:func:`open_store` opens it with SQLite's ``mode=ro`` (``Store(path,
read_only=True)``), so the leaderboard can never change a result; no folder
is created and no migration runs, so a missing store is an error, not a new
empty one.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from harness.base.errors import UserError
from harness.core.status import RunStatus
from harness.leaderboard.model import Run
from harness.runs.results import is_reference_run
from harness.runs.store import Store

#: the sample fields a leaderboard shows (the store keeps more: level, formatting, token counts)
SAMPLE_FIELDS = ("benchmark", "problem_id", "sample", "prompt", "completion", "predicted", "reference", "correct",
                 "reward")


def open_store(path: Path | str) -> Store:
    """The store at ``path``, opened read-only."""
    return Store(path, read_only=True)


def sweep_tags(artifacts: dict) -> dict[str, dict]:
    """The sweeps a run is a row of, by name (stores written before ``sweeps`` have only ``sweep``)."""
    tags = dict(artifacts.get("sweeps") or {})
    latest = artifacts.get("sweep") or {}
    if latest.get("sweep") and latest["sweep"] not in tags:
        tags[latest["sweep"]] = latest
    return tags


def first_samples(store: Store, run_id: str, n: int) -> list[dict]:
    """The first ``n`` samples of a run, in (benchmark, problem, sample) order, with the fields shown."""
    if n <= 0:
        return []
    return [{k: s.get(k) for k in SAMPLE_FIELDS} for s in store.samples(run_id, limit=n)]


def read_divergence(store: Store, run_id: str) -> dict[str, dict]:
    """A run's stored divergence figures; none from a store written before divergence was measured
    (opened read-only, it was never migrated, so it has no divergence table)."""
    try:
        return store.divergence(run_id)
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return {}
        raise


def load_runs(store: Store, n_samples: int = 3, sweep: str | None = None) -> list[Run]:
    """Every complete run (of ``sweep`` only, named as that sweep names it, when given), with its
    metrics, profile, per-problem scores, divergence from its reference and first samples."""
    runs = []
    seen: set[str] = set()
    for r in store.list_runs():
        if r["status"] != RunStatus.COMPLETE:
            continue
        artifacts = r.get("artifacts") or {}
        by_sweep = sweep_tags(artifacts)
        seen.update(by_sweep)
        if sweep is not None and sweep not in by_sweep:
            continue
        runs.append(Run(
            id=r["id"], label=r["label"], created=r["created"], config=r["config"],
            tags=by_sweep[sweep] if sweep is not None else artifacts.get("sweep") or {},
            metrics=store.metrics(r["id"]),
            profile=store.profile(r["id"]) or {}, scores=store.problem_scores(r["id"]),
            samples=first_samples(store, r["id"], n_samples),
            reference=is_reference_run(r["config"], artifacts),
            divergence=read_divergence(store, r["id"]),
        ))
    if sweep is not None and not runs:
        known = ", ".join(sorted(seen)) or "none (no run in this store was made by a sweep)"
        raise UserError(f"no complete run in {store.path} belongs to sweep {sweep!r}; sweeps here: {known}")
    return runs
