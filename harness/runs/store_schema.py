"""The result store's schema: an append-only list of named migrations.

Each migration runs inside the store's ``BEGIN IMMEDIATE`` transaction
(:meth:`harness.runs.store.Store._check_and_migrate`), so it must not commit:
use :func:`execute_script`, never ``executescript``.
"""

from __future__ import annotations

import sqlite3


def execute_script(db: sqlite3.Connection, script: str) -> None:
    """Run ``script`` statement by statement inside the caller's transaction.

    ``executescript`` would commit first, releasing the lock that keeps a second
    process from migrating the same new store at the same time.
    """
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""
    if statement.strip():
        db.execute(statement)


def _m001_initial(db: sqlite3.Connection) -> None:
    execute_script(
        db,
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


def _m002_run_owner(db: sqlite3.Connection) -> None:
    """The process that runs a run, so that one whose process died shows as interrupted, not running."""
    for column in ("owner_pid INTEGER", "owner_host TEXT", "owner_started REAL"):
        db.execute(f"ALTER TABLE runs ADD COLUMN {column}")


def _m003_divergence(db: sqlite3.Connection) -> None:
    """How far each run's model moved from its full-precision reference's, per benchmark."""
    db.execute("""CREATE TABLE divergence (run_id TEXT NOT NULL, benchmark TEXT NOT NULL, figures TEXT NOT NULL,
                  PRIMARY KEY (run_id, benchmark))""")


#: append-only: never edit or reorder a migration that has shipped
MIGRATIONS = [
    ("m001_initial", _m001_initial),
    ("m002_run_owner", _m002_run_owner),
    ("m003_divergence", _m003_divergence),
]
