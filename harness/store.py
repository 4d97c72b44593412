"""The result store: one SQLite file, the single source of truth for results.

Runs, metrics, per-sample generations, profiles and training curves. WAL mode
so a reader (``harness runs``, the leaderboard) never blocks a writer, and
samples are committed as each batch finishes so a killed run loses nothing.
Schema changes are an append-only list of named migrations.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from harness.errors import StoreError


def _m001_initial(db: sqlite3.Connection) -> None:
    db.executescript(
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            label TEXT NOT NULL,
            config TEXT NOT NULL,
            status TEXT NOT NULL,
            created REAL NOT NULL,
            finished REAL,
            versions TEXT NOT NULL,
            git_commit TEXT,
            error TEXT,
            artifacts TEXT NOT NULL DEFAULT '{}'
        );
        CREATE TABLE metrics (
            run_id TEXT NOT NULL REFERENCES runs(id),
            benchmark TEXT NOT NULL,
            metric TEXT NOT NULL,
            value REAL,
            lo REAL,
            hi REAL,
            PRIMARY KEY (run_id, benchmark, metric)
        );
        CREATE TABLE samples (
            run_id TEXT NOT NULL REFERENCES runs(id),
            benchmark TEXT NOT NULL,
            problem_id TEXT NOT NULL,
            sample INTEGER NOT NULL,
            level TEXT,
            prompt TEXT NOT NULL,
            completion TEXT NOT NULL,
            predicted TEXT,
            reference TEXT NOT NULL,
            correct INTEGER NOT NULL,
            formatted INTEGER NOT NULL,
            reward REAL NOT NULL,
            n_tokens INTEGER NOT NULL,
            PRIMARY KEY (run_id, benchmark, problem_id, sample)
        );
        CREATE TABLE profiles (
            run_id TEXT PRIMARY KEY REFERENCES runs(id),
            profile TEXT NOT NULL
        );
        CREATE TABLE train_curves (
            run_id TEXT NOT NULL,
            step INTEGER NOT NULL,
            logs TEXT NOT NULL,
            PRIMARY KEY (run_id, step)
        );
        """
    )


#: append-only: never edit or reorder a migration that has shipped
MIGRATIONS = [("m001_initial", _m001_initial)]


def default_store_path() -> Path:
    from harness.cache import default_root

    return Path(os.environ.get("HARNESS_STORE") or default_root() / "results.db")


class Store:
    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path else default_store_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=30)
            self.db.row_factory = sqlite3.Row
            self._check_and_migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a harness result store ({exc})") from None

    def _check_and_migrate(self) -> None:
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and "_migrations" not in tables:
            raise StoreError(
                f"{self.path} is an SQLite database but not a harness result store "
                f"(tables: {', '.join(sorted(tables))}); choose another --store"
            )
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied REAL)")
        done = {r[0] for r in self.db.execute("SELECT name FROM _migrations")}
        for name, fn in MIGRATIONS:
            if name not in done:
                with self.db:
                    fn(self.db)
                    self.db.execute("INSERT INTO _migrations VALUES (?, ?)", (name, time.time()))

    def close(self) -> None:
        self.db.close()

    # -- runs ------------------------------------------------------------------------
    def get_run(self, run_id: str) -> dict | None:
        row = self.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            matches = self.db.execute("SELECT * FROM runs WHERE id LIKE ?", (run_id + "%",)).fetchall()
            row = matches[0] if len(matches) == 1 else None
        return _run_dict(row) if row else None

    def start_run(self, run_id: str, label: str, config: dict, versions: dict, git_commit: str | None) -> None:
        with self.db:
            self.db.execute(
                """INSERT INTO runs (id, label, config, status, created, versions, git_commit)
                   VALUES (?, ?, ?, 'running', ?, ?, ?)
                   ON CONFLICT(id) DO UPDATE SET status='running', error=NULL,
                       versions=excluded.versions, git_commit=excluded.git_commit""",
                (run_id, label, json.dumps(config), time.time(), json.dumps(versions), git_commit),
            )

    def finish_run(self, run_id: str, status: str = "complete", error: str | None = None) -> None:
        with self.db:
            self.db.execute(
                "UPDATE runs SET status = ?, finished = ?, error = ? WHERE id = ?",
                (status, time.time(), error, run_id),
            )

    def add_artifacts(self, run_id: str, artifacts: dict) -> None:
        """Merge ``artifacts`` (quantization and training reports) into the run's record."""
        self._update_artifacts(run_id, lambda old: {**old, **artifacts})

    def _update_artifacts(self, run_id: str, update: Callable[[dict], dict]) -> None:
        """Read, change and write a run's artifacts in one transaction (no writer in between)."""
        with self.db:
            row = self.db.execute("SELECT artifacts FROM runs WHERE id = ?", (run_id,)).fetchone()
            new = update(json.loads(row[0]))
            self.db.execute("UPDATE runs SET artifacts = ? WHERE id = ?", (json.dumps(new, default=str), run_id))

    def tag_sweep(self, run_id: str, tags: dict) -> None:
        """Record that a sweep row is this run: ``artifacts["sweeps"][name]``, and ``["sweep"]`` = the latest.

        One run can be a row of several sweeps (two sweeps that name the same
        configuration share it); each keeps its own row name, order and twin,
        so a leaderboard of one sweep (``--sweep NAME``) shows that sweep's names.
        """
        self._update_artifacts(run_id, lambda old: {
            **old, "sweep": tags, "sweeps": {**(old.get("sweeps") or {}), str(tags.get("sweep")): tags},
        })

    def list_runs(self) -> list[dict]:
        return [_run_dict(r) for r in self.db.execute("SELECT * FROM runs ORDER BY created")]

    # -- samples -----------------------------------------------------------------------
    def done_samples(self, run_id: str, benchmark: str) -> set[tuple[str, int]]:
        rows = self.db.execute(
            "SELECT problem_id, sample FROM samples WHERE run_id = ? AND benchmark = ?", (run_id, benchmark)
        )
        return {(r[0], r[1]) for r in rows}

    def add_samples(self, run_id: str, benchmark: str, rows: Iterable[dict]) -> None:
        """Insert one batch of graded samples in one transaction (a batch is never half-stored)."""
        with self.db:
            self.db.executemany(
                """INSERT OR IGNORE INTO samples
                   (run_id, benchmark, problem_id, sample, level, prompt, completion, predicted,
                    reference, correct, formatted, reward, n_tokens)
                   VALUES (:run_id, :benchmark, :problem_id, :sample, :level, :prompt, :completion,
                           :predicted, :reference, :correct, :formatted, :reward, :n_tokens)""",
                [{"run_id": run_id, "benchmark": benchmark, **r} for r in rows],
            )

    def samples(self, run_id: str, benchmark: str | None = None) -> list[dict]:
        q = "SELECT * FROM samples WHERE run_id = ?"
        args: tuple = (run_id,)
        if benchmark:
            q += " AND benchmark = ?"
            args += (benchmark,)
        return [dict(r) for r in self.db.execute(q + " ORDER BY benchmark, problem_id, sample", args)]

    # -- metrics, profiles, curves --------------------------------------------------------
    def set_metrics(self, run_id: str, benchmark: str, metrics: dict[str, tuple[float, float | None, float | None]]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?, ?, ?)",
                [(run_id, benchmark, name, *vals) for name, vals in metrics.items()],
            )

    def metrics(self, run_id: str) -> dict[str, dict[str, dict]]:
        out: dict[str, dict[str, dict]] = {}
        for r in self.db.execute("SELECT * FROM metrics WHERE run_id = ? ORDER BY benchmark", (run_id,)):
            out.setdefault(r["benchmark"], {})[r["metric"]] = {"value": r["value"], "lo": r["lo"], "hi": r["hi"]}
        return out

    def set_profile(self, run_id: str, profile: dict) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO profiles VALUES (?, ?)", (run_id, json.dumps(profile)))

    def profile(self, run_id: str) -> dict | None:
        row = self.db.execute("SELECT profile FROM profiles WHERE run_id = ?", (run_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def add_curve(self, run_id: str, points: Iterable[tuple[int, dict]]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO train_curves VALUES (?, ?, ?)",
                [(run_id, step, json.dumps(logs)) for step, logs in points],
            )

    def curve(self, run_id: str) -> list[dict]:
        rows = self.db.execute("SELECT step, logs FROM train_curves WHERE run_id = ? ORDER BY step", (run_id,))
        return [{"step": s, **json.loads(logs)} for s, logs in rows]

    # -- moving a run between stores ------------------------------------------------------
    def export_run(self, run_id: str) -> dict:
        """Everything stored for one run, as plain data (JSON-able, picklable).

        A Ray worker runs a cell against a store of its own and returns this to
        the driver, which alone writes the sweep's store (:meth:`import_run`).
        """
        run = self.get_run(run_id)
        if run is None or run["id"] != run_id:
            raise StoreError(f"run {run_id!r} is not in {self.path}")
        metrics = [tuple(r) for r in self.db.execute(
            "SELECT benchmark, metric, value, lo, hi FROM metrics WHERE run_id = ? ORDER BY benchmark, metric",
            (run_id,))]
        curve = [(s, json.loads(logs)) for s, logs in self.db.execute(
            "SELECT step, logs FROM train_curves WHERE run_id = ? ORDER BY step", (run_id,))]
        return {"format": EXPORT_FORMAT, "run": run, "samples": self.samples(run_id), "metrics": metrics,
                "profile": self.profile(run_id), "curve": curve}

    def import_run(self, data: dict) -> str:
        """Store a run that :meth:`export_run` gave, replacing whatever this store held for its id.

        One transaction, so the run appears complete or not at all; importing the
        same run twice stores it once. Artifacts already recorded here (a sweep's
        tags) are kept under the imported ones.
        """
        if data.get("format") != EXPORT_FORMAT:
            raise StoreError(f"cannot import a run exported as format {data.get('format')!r}; "
                             f"this store reads format {EXPORT_FORMAT}")
        run = data["run"]
        run_id = run["id"]
        old = self.db.execute("SELECT artifacts FROM runs WHERE id = ?", (run_id,)).fetchone()
        before = json.loads(old[0]) if old else {}
        artifacts = {**before, **run["artifacts"]}
        if before.get("sweeps") or run["artifacts"].get("sweeps"):  # rows of several sweeps: keep them all
            artifacts["sweeps"] = {**(before.get("sweeps") or {}), **(run["artifacts"].get("sweeps") or {})}
        with self.db:
            for table, column in (("samples", "run_id"), ("metrics", "run_id"), ("profiles", "run_id"),
                                  ("train_curves", "run_id"), ("runs", "id")):
                self.db.execute(f"DELETE FROM {table} WHERE {column} = ?", (run_id,))
            self.db.execute(
                "INSERT INTO runs (id, label, config, status, created, finished, versions, git_commit, error, "
                "artifacts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, run["label"], json.dumps(run["config"]), run["status"], run["created"], run["finished"],
                 json.dumps(run["versions"]), run["git_commit"], run["error"], json.dumps(artifacts, default=str)),
            )
            self.db.executemany(
                """INSERT INTO samples (run_id, benchmark, problem_id, sample, level, prompt, completion, predicted,
                    reference, correct, formatted, reward, n_tokens)
                   VALUES (:run_id, :benchmark, :problem_id, :sample, :level, :prompt, :completion, :predicted,
                           :reference, :correct, :formatted, :reward, :n_tokens)""",
                [{**r, "run_id": run_id} for r in data["samples"]],
            )
            self.db.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?)",
                                [(run_id, *m) for m in data["metrics"]])
            if data.get("profile") is not None:
                self.db.execute("INSERT INTO profiles VALUES (?, ?)", (run_id, json.dumps(data["profile"])))
            self.db.executemany("INSERT INTO train_curves VALUES (?, ?, ?)",
                                [(run_id, step, json.dumps(logs)) for step, logs in data["curve"]])
        return run_id


#: version of :meth:`Store.export_run`'s layout (a driver and its workers must agree on it)
EXPORT_FORMAT = 1


def _run_dict(row: sqlite3.Row) -> dict:
    d = dict(row)
    for key in ("config", "versions", "artifacts"):
        d[key] = json.loads(d[key]) if d.get(key) else {}
    return d
