"""Moving a run between stores: everything stored for one run as plain data, and back.

A Ray worker runs a cell against a store of its own and returns
:func:`export_run`'s data to the driver, which alone writes the sweep's store
(:func:`import_run`): one writer per SQLite file, however many workers.
"""

from __future__ import annotations

import json

from harness.base.errors import StoreError
from harness.runs.store import INSERT_SAMPLE, RESULT_TABLES, Store

#: version of :func:`export_run`'s layout (a driver and its workers must agree on it)
EXPORT_FORMAT = 1


def export_run(store: Store, run_id: str) -> dict:
    """Everything stored for one run, as plain data (JSON-able, picklable).

    A Ray worker runs a cell against a store of its own and returns this to
    the driver, which alone writes the sweep's store (:func:`import_run`).
    """
    run = store.get_run(run_id)
    if run is None or run["id"] != run_id:
        raise StoreError(f"run {run_id!r} is not in {store.path}")
    metrics = [tuple(r) for r in store.db.execute(
        "SELECT benchmark, metric, value, lo, hi FROM metrics WHERE run_id = ? ORDER BY benchmark, metric",
        (run_id,))]
    curve = [(s, json.loads(logs)) for s, logs in store.db.execute(
        "SELECT step, logs FROM train_curves WHERE run_id = ? ORDER BY step", (run_id,))]
    return {"format": EXPORT_FORMAT, "run": run, "samples": store.samples(run_id), "metrics": metrics,
            "profile": store.profile(run_id), "curve": curve, "divergence": store.divergence(run_id)}


def import_run(store: Store, data: dict) -> str:
    """Store a run that :func:`export_run` gave, replacing whatever this store held for its id.

    One transaction, so the run appears complete or not at all; importing the
    same run twice stores it once. Artifacts already recorded here (a sweep's
    tags) are kept under the imported ones.
    """
    if data.get("format") != EXPORT_FORMAT:
        raise StoreError(f"cannot import a run exported as format {data.get('format')!r}; "
                         f"this store reads format {EXPORT_FORMAT}")
    run = data["run"]
    run_id = run["id"]
    with store.transaction():
        old = store.db.execute("SELECT artifacts FROM runs WHERE id = ?", (run_id,)).fetchone()
        before = json.loads(old[0]) if old else {}
        artifacts = {**before, **run["artifacts"]}
        if before.get("sweeps") or run["artifacts"].get("sweeps"):  # rows of several sweeps: keep them all
            artifacts["sweeps"] = {**(before.get("sweeps") or {}), **(run["artifacts"].get("sweeps") or {})}
        for table in RESULT_TABLES:
            store.db.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
        store.db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        store.db.execute(
            "INSERT INTO runs (id, label, config, status, created, finished, versions, git_commit, error, "
            "artifacts, owner_pid, owner_host, owner_started) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, run["label"], json.dumps(run["config"]), run["status"], run["created"], run["finished"],
             json.dumps(run["versions"]), run["git_commit"], run["error"], json.dumps(artifacts, default=str),
             *((run.get("owner") or {}).get(k) for k in ("pid", "host", "started"))),
        )
        store.db.executemany(
            f"INSERT INTO samples {INSERT_SAMPLE}",
            [{**r, "run_id": run_id} for r in data["samples"]],
        )
        store.db.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?)",
                             [(run_id, *m) for m in data["metrics"]])
        if data.get("profile") is not None:
            store.db.execute("INSERT INTO profiles VALUES (?, ?)", (run_id, json.dumps(data["profile"])))
        store.db.executemany("INSERT INTO train_curves VALUES (?, ?, ?)",
                             [(run_id, step, json.dumps(logs)) for step, logs in data["curve"]])
        store.db.executemany("INSERT INTO divergence VALUES (?, ?, ?)",
                             [(run_id, bench, json.dumps(figures))
                              for bench, figures in (data.get("divergence") or {}).items()])
    return run_id
