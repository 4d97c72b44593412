"""The result store: one SQLite file, the single source of truth for results.

Runs, metrics, per-sample generations, profiles and training curves. WAL mode
so a reader (``harness runs``, the leaderboard) never blocks a writer, and
samples are committed as each batch finishes so a killed run loses nothing.
Schema changes are an append-only list of named migrations.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from harness.base.errors import StoreError
from harness.base.run_owner import this_process
from harness.core.status import RunStatus
from harness.runs.run_liveness import as_seen
from harness.runs.store_schema import MIGRATIONS

#: seconds a process waits for another one that holds the store's write lock (creating, migrating, writing)
BUSY_TIMEOUT_S = 30.0


def default_store_path() -> Path:
    from harness.runs.cache import default_root

    return Path(os.environ.get("HARNESS_STORE") or default_root() / "results.db")


class Store:
    def __init__(self, path: Path | str | None = None, read_only: bool = False):
        self.path = Path(path) if path else default_store_path()
        if read_only:  # a reader's view (the leaderboard): nothing created, migrated or written
            self._open_read_only()
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of the result store {self.path}: "
                             f"{exc.strerror or exc}; choose another --store") from None
        try:
            self.db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)
            self.db.row_factory = sqlite3.Row
            self._open(time.monotonic() + BUSY_TIMEOUT_S)
        except sqlite3.DatabaseError as exc:
            if _is_busy(exc):
                raise StoreError(f"{self.path} stayed locked by another process for {BUSY_TIMEOUT_S:.0f} s "
                                 f"({exc}); try again when it has finished") from None
            if "unable to open" in str(exc):
                raise StoreError(f"cannot open the result store {self.path} ({exc}); choose another --store") from None
            raise StoreError(f"{self.path} is not a harness result store ({exc})") from None

    def _open(self, deadline: float) -> None:
        """Check and migrate, retrying while another process holds the lock (it may be creating the store)."""
        delay = 0.02
        while True:
            try:
                self._check_and_migrate()
                return
            except sqlite3.OperationalError as exc:
                if self.db.in_transaction:
                    self.db.rollback()
                if not _is_busy(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 0.5)

    def _open_read_only(self) -> None:
        """Open an existing store with SQLite's ``mode=ro``: no write can happen through it.

        No migration runs (it would write), so a store an older harness wrote is read as it is.
        """
        if not self.path.is_file():
            raise StoreError(f"no result store at {self.path}; run `harness run` or `harness sweep` first, "
                             "or pass --store")
        try:
            self.db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
            self.db.row_factory = sqlite3.Row
            tables = self._tables()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a harness result store ({exc})") from None
        if "_migrations" not in tables or "runs" not in tables:
            raise StoreError(f"{self.path} is not a harness result store (tables: {', '.join(sorted(tables))})")

    def _tables(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    def _check_and_migrate(self) -> None:
        """Refuse a foreign database; apply the missing migrations under one write lock.

        The check and the migrations run in one ``BEGIN IMMEDIATE`` transaction:
        two processes that open a new store together cannot both create it, and
        neither sees it half-created. A store that is up to date takes no lock.
        """
        tables = self._tables()
        if "_migrations" in tables:
            done = {r[0] for r in self.db.execute("SELECT name FROM _migrations")}
            if all(name in done for name, _ in MIGRATIONS):
                return
        self.db.execute("PRAGMA journal_mode=WAL")  # outside a transaction; persists in the file
        with self.transaction():
            tables = self._tables()
            if tables and "_migrations" not in tables:
                raise StoreError(
                    f"{self.path} is an SQLite database but not a harness result store "
                    f"(tables: {', '.join(sorted(tables))}); choose another --store"
                )
            self.db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied REAL)")
            done = {r[0] for r in self.db.execute("SELECT name FROM _migrations")}
            for name, fn in MIGRATIONS:
                if name not in done:
                    fn(self.db)
                    self.db.execute("INSERT INTO _migrations VALUES (?, ?)", (name, time.time()))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """A transaction that takes the write lock at once, so what it reads no other writer changes."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.rollback()
            raise
        self.db.commit()

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
        """Mark the run running and owned by this process (a dead owner shows it as ``interrupted``)."""
        pid, host, started = this_process()
        with self.db:
            self.db.execute(
                """INSERT INTO runs (id, label, config, status, created, versions, git_commit,
                                     owner_pid, owner_host, owner_started)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(id) DO UPDATE SET status=excluded.status, error=NULL,
                       versions=excluded.versions, git_commit=excluded.git_commit,
                       owner_pid=excluded.owner_pid, owner_host=excluded.owner_host,
                       owner_started=excluded.owner_started""",
                (run_id, label, json.dumps(config), RunStatus.RUNNING.value, time.time(), json.dumps(versions),
                 git_commit, pid, host, started),
            )

    def discard_results(self, run_id: str) -> None:
        """Forget a run's samples, metrics, profile and curve (``--force``: evaluate again from nothing)."""
        with self.db:
            for table in RESULT_TABLES:
                self.db.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))

    def finish_run(self, run_id: str, status: RunStatus = RunStatus.COMPLETE, error: str | None = None) -> None:
        with self.db:
            self.db.execute(
                "UPDATE runs SET status = ?, finished = ?, error = ? WHERE id = ?",
                (RunStatus(status).value, time.time(), error, run_id),
            )

    def add_artifacts(self, run_id: str, artifacts: dict) -> None:
        """Merge ``artifacts`` (quantization and training reports) into the run's record."""
        self._update_artifacts(run_id, lambda old: {**old, **artifacts})

    def _update_artifacts(self, run_id: str, update: Callable[[dict], dict]) -> None:
        """Read, change and write a run's artifacts in one transaction (no writer in between)."""
        with self.transaction():
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
                f"INSERT OR IGNORE INTO samples {INSERT_SAMPLE}",
                [{"run_id": run_id, "benchmark": benchmark, **r} for r in rows],
            )

    def samples(self, run_id: str, benchmark: str | None = None, limit: int | None = None) -> list[dict]:
        """A run's samples in (benchmark, problem, sample) order; the first ``limit`` only when given."""
        q = "SELECT * FROM samples WHERE run_id = ?"
        args: tuple = (run_id,)
        if benchmark:
            q += " AND benchmark = ?"
            args += (benchmark,)
        q += " ORDER BY benchmark, problem_id, sample"
        if limit is not None:
            q += " LIMIT ?"
            args += (max(0, limit),)
        return [dict(r) for r in self.db.execute(q, args)]

    def problem_scores(self, run_id: str) -> dict[str, dict[str, tuple[float, float]]]:
        """benchmark -> problem id -> (mean correct, mean reward) over the problem's samples.

        The unit the statistics resample (:mod:`harness.base.metrics`), computed by
        SQLite so that a reader never loads every completion to get it.
        """
        out: dict[str, dict[str, tuple[float, float]]] = {}
        for bench, pid, acc, reward in self.db.execute(
            """SELECT benchmark, problem_id, AVG(correct), AVG(reward) FROM samples
               WHERE run_id = ? GROUP BY benchmark, problem_id ORDER BY benchmark, problem_id""", (run_id,)):
            out.setdefault(bench, {})[pid] = (float(acc), float(reward))
        return out

    # -- metrics, profiles, curves --------------------------------------------------------
    def set_metrics(
        self, run_id: str, benchmark: str, metrics: dict[str, tuple[float, float | None, float | None]]
    ) -> None:
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
        """Store a run's profile. Evaluation figures the new profile lacks (a resumed run that had nothing left to
        generate measured none) keep the values stored before. Whether a profile is worth storing at all is the
        caller's rule (:func:`harness.runs.profile_keeping.keep_profile`)."""
        with self.transaction():
            row = self.db.execute("SELECT profile FROM profiles WHERE run_id = ?", (run_id,)).fetchone()
            old = json.loads(row[0]) if row else {}
            kept = {k: v for k, v in old.items() if k.startswith("eval_") and v is not None and profile.get(k) is None}
            self.db.execute("INSERT OR REPLACE INTO profiles VALUES (?, ?)", (run_id, json.dumps({**profile, **kept})))

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

    # -- divergence from the reference ------------------------------------------------------
    def set_divergence(self, run_id: str, benchmark: str, figures: dict) -> None:
        """Store how far the run's model moved from its reference's on one benchmark (one JSON object)."""
        with self.transaction():
            self.db.execute("INSERT OR REPLACE INTO divergence VALUES (?, ?, ?)",
                            (run_id, benchmark, json.dumps(figures)))

    def divergence(self, run_id: str) -> dict[str, dict]:
        """Benchmark -> the stored divergence figures of ``run_id`` (empty: none measured)."""
        rows = self.db.execute("SELECT benchmark, figures FROM divergence WHERE run_id = ? ORDER BY benchmark",
                               (run_id,))
        return {bench: json.loads(figures) for bench, figures in rows}


#: the tables that hold a run's results (``--force`` empties them; moving a run copies them)
RESULT_TABLES = ("samples", "metrics", "profiles", "train_curves", "divergence")

#: the columns of a stored sample, in the order the table declares them
SAMPLE_COLUMNS = ("run_id", "benchmark", "problem_id", "sample", "level", "prompt", "completion", "predicted",
                  "reference", "correct", "formatted", "reward", "n_tokens")
#: the column list and named placeholders every sample insert uses
INSERT_SAMPLE = f"({', '.join(SAMPLE_COLUMNS)}) VALUES ({', '.join(':' + c for c in SAMPLE_COLUMNS)})"

def _is_busy(exc: sqlite3.DatabaseError) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


def _run_dict(row: sqlite3.Row) -> dict:
    """A stored run, decoded, as a reader should see it (:func:`~harness.runs.run_liveness.as_seen`)."""
    d = dict(row)
    for key in ("config", "versions", "artifacts"):
        d[key] = json.loads(d[key]) if d.get(key) else {}
    owner = (d.pop("owner_pid", None), d.pop("owner_host", None), d.pop("owner_started", None))
    d["owner"] = {"pid": owner[0], "host": owner[1], "started": owner[2]} if owner[0] is not None else None
    return as_seen(d)
