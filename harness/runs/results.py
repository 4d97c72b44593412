"""The shape of a run's result, as every command prints it and every executor returns it.

One builder, so `harness run --json`, `harness show --json`, a sweep cell's
outcome and a Ray task's return value can never disagree on keys.
"""

from __future__ import annotations

from typing import Any

from harness.base.errors import UserError
from harness.core.config import field_default


def stored_run(store: Any, run_id: str) -> dict:
    """The stored run ``run_id`` (a unique prefix too); a UserError naming the store when there is none."""
    run = store.get_run(run_id)
    if run is None:
        raise UserError(f"no run {run_id!r} in {store.path}; `harness runs` lists them")
    return run


def run_result(store: Any, run_id: str, detail: bool = False) -> dict:
    """The stored run ``run_id`` (a unique prefix too) with its metrics, profile and artifacts.

    ``detail`` adds what `harness show` prints beside them: the error, the
    versions and commit the run was made with, and its training curve.
    """
    run = stored_run(store, run_id)
    rid = run["id"]
    result = {
        "run_id": rid,
        "label": run["label"],
        "status": run["status"],
        "config": run["config"],
        "metrics": store.metrics(rid),
        "profile": store.profile(rid),
        "divergence": store.divergence(rid),
        "artifacts": run["artifacts"],
    }
    if detail:
        result.update(error=run["error"], versions=run["versions"], git_commit=run["git_commit"],
                      curve=store.curve(rid))
    return result


def is_reference_run(config: dict, artifacts: dict) -> bool:
    """Whether a stored run was made by a full-precision reference strategy (``Strategy.is_reference``,
    recorded with its artifacts). Runs stored before strategies declared it used the default
    strategy, the built-in full-precision one, as their reference."""
    return bool(
        artifacts.get("reference", config.get("strategy", field_default("strategy")) == field_default("strategy"))
    )
