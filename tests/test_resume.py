"""A run killed half-way (kill -9) resumes: stored samples are kept and never generated again."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest


def _count(db_path) -> int:
    try:
        with sqlite3.connect(db_path, timeout=5) as db:
            return db.execute("SELECT count(*) FROM samples").fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0


@pytest.mark.slow
def test_kill_9_then_resume_stores_every_sample_once(tmp_path):
    store = tmp_path / "results.db"
    cmd = [sys.executable, "-m", "harness.cli.__main__", "run", "--limit", "60", "--batch-size", "2",
           "--store", str(store), "--json"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while _count(store) < 10:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline, "the run stored nothing in time"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(store) as db:
        before = dict(db.execute("SELECT problem_id, completion FROM samples").fetchall())
        status = db.execute("SELECT status FROM runs").fetchone()[0]
    assert 10 <= len(before) < 60, "the kill must land half-way"
    assert status == "running"  # killed: never marked complete

    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    assert f"resuming, {len(before)} of 60 samples already stored" in second.stderr
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT problem_id, sample, completion FROM samples").fetchall()
        status = db.execute("SELECT status FROM runs").fetchone()[0]
    assert len(rows) == 60 and len({(r[0], r[1]) for r in rows}) == 60
    after = {r[0]: r[2] for r in rows}
    assert all(after[pid] == text for pid, text in before.items())
    assert status == "complete"
