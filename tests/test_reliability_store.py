"""The result store under concurrency, across schema versions, and with runs whose process died."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import subprocess
import sys
import time

import pytest

from harness.base.errors import StoreError
from harness.runs import store as store_module
from harness.runs.store import Store
from harness.runs.store_schema import MIGRATIONS

PROCESSES = 4
ROUNDS = 10


def _open_and_start(db: str, barrier, results, index: int) -> None:
    barrier.wait()  # every process opens the new store at the same moment
    try:
        store = Store(db)
        store.start_run(f"run{index}", f"label {index}", {}, {}, None)
        store.close()
        results.put("ok")
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which asserts on it
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_creating_one_new_store_together_all_succeed(tmp_path):
    ctx = multiprocessing.get_context("fork")
    failures = []
    for round_ in range(ROUNDS):
        db = str(tmp_path / f"race{round_}.db")
        barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
        procs = [ctx.Process(target=_open_and_start, args=(db, barrier, results, i)) for i in range(PROCESSES)]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        failures += [o for o in outcomes if o != "ok"]
        assert {r["id"] for r in Store(db).list_runs()} == {f"run{i}" for i in range(PROCESSES)}
    assert not failures, f"{len(failures)} of {ROUNDS * PROCESSES} opens failed: {sorted(set(failures))}"


def test_a_locked_store_is_reported_as_locked_not_as_a_foreign_file(tmp_path, monkeypatch):
    db = tmp_path / "new.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process in the middle of creating it
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.5)
    with pytest.raises(StoreError) as err:
        Store(db)
    assert "locked" in str(err.value) and "not a harness result store" not in str(err.value)
    holder.execute("ROLLBACK")
    holder.close()
    assert Store(db).list_runs() == []  # once free, it opens


def test_a_garbage_file_is_still_not_a_store(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a harness result store"):
        Store(bad)


def _old_store(path) -> None:
    """A store exactly as the previous version wrote it: the first migration only, one run running."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied REAL)")
    MIGRATIONS[0][1](db)
    db.execute("INSERT INTO _migrations VALUES ('m001_initial', 1.0)")
    db.execute("INSERT INTO runs (id, label, config, status, created, versions) VALUES "
               "('old1', 'old run', '{}', 'running', 1.0, '{}')")
    db.execute("INSERT INTO runs (id, label, config, status, created, versions) VALUES "
               "('old2', 'old done', '{}', 'complete', 2.0, '{}')")
    db.commit()
    db.close()


def test_a_store_of_the_previous_version_migrates_and_keeps_its_runs(tmp_path):
    path = tmp_path / "old.db"
    _old_store(path)
    store = Store(path)
    applied = {r[0] for r in store.db.execute("SELECT name FROM _migrations")}
    assert applied == {name for name, _ in MIGRATIONS}
    old = store.get_run("old1")
    assert old["owner"] is None and old["status"] == "running"  # no owner recorded: cannot tell, unchanged
    assert store.get_run("old2")["status"] == "complete"
    store.start_run("new", "new run", {}, {}, None)
    assert store.get_run("new")["owner"]["pid"] > 0 and store.get_run("new")["status"] == "running"
    store.close()
    assert Store(path).get_run("old2")["label"] == "old done"  # reopening migrates nothing twice


def test_a_run_whose_process_died_reads_as_interrupted(tmp_path):
    path = tmp_path / "r.db"
    code = (f"from harness.runs.store import Store; s = Store({str(path)!r}); "
            "s.start_run('dead', 'killed run', {}, {}, None); import os; os._exit(9)")
    subprocess.run([sys.executable, "-c", code], check=False, timeout=60)
    store = Store(path)
    run = store.get_run("dead")
    assert run["status"] == "interrupted" and "ended without finishing" in run["error"]
    store.start_run("alive", "this process", {}, {}, None)
    assert store.get_run("alive")["status"] == "running"
    stored = store.db.execute("SELECT status FROM runs WHERE id = 'dead'").fetchone()[0]
    assert stored == "running"  # reading never writes


def test_runs_and_show_print_a_dead_run_as_interrupted(tmp_path):
    from click.testing import CliRunner

    from harness.cli import cli

    path = tmp_path / "r.db"
    code = (f"from harness.runs.store import Store; s = Store({str(path)!r}); "
            "s.start_run('deadbeef', 'killed run', {}, {}, None); import os; os._exit(9)")
    subprocess.run([sys.executable, "-c", code], check=False, timeout=60)
    listed = CliRunner().invoke(cli, ["runs", "--store", str(path), "--json"])
    assert listed.exit_code == 0 and json.loads(listed.output)[0]["status"] == "interrupted"
    shown = CliRunner().invoke(cli, ["show", "deadbeef", "--store", str(path), "--json"])
    assert shown.exit_code == 0 and json.loads(shown.output)["status"] == "interrupted"


def test_a_profile_without_throughput_is_never_stored(tmp_path, capsys):
    from harness.runs.profile_keeping import keep_profile

    store = Store(tmp_path / "r.db")
    store.start_run("r", "l", {}, {}, None)
    assert not keep_profile(store, "r", {"weight_bytes": 10, "eval_tokens_per_s": None, "bs1_decode_tokens_per_s": 0})
    assert store.profile("r") is None and "measured no throughput" in capsys.readouterr().err
    assert keep_profile(store, "r", {"eval_tokens_per_s": 900.0, "bs1_decode_tokens_per_s": 50.0})
    # a resumed run that had nothing left to generate keeps the evaluation figures measured before
    store.set_profile("r", {"eval_tokens_per_s": None, "bs1_decode_tokens_per_s": 60.0})
    assert store.profile("r") == {"eval_tokens_per_s": 900.0, "bs1_decode_tokens_per_s": 60.0}


def test_discard_results_forgets_samples_metrics_and_profile(tmp_path):
    store = Store(tmp_path / "r.db")
    store.start_run("r", "l", {}, {}, None)
    store.add_samples("r", "arith", [{"problem_id": "p", "sample": 0, "level": "1", "prompt": "q", "completion": "c",
                                      "predicted": "1", "reference": "1", "correct": 1, "formatted": 1,
                                      "reward": 1.1, "n_tokens": 3}])
    store.set_metrics("r", "arith", {"accuracy": (1.0, None, None)})
    store.set_profile("r", {"eval_tokens_per_s": 5.0})
    store.discard_results("r")
    assert (store.samples("r"), store.metrics("r"), store.profile("r")) == ([], {}, None)
    assert store.get_run("r") is not None  # the run itself stays


def test_an_uncreatable_store_folder_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    start = time.perf_counter()
    with pytest.raises(StoreError, match="cannot create the folder"):
        Store(blocker / "sub" / "r.db")
    assert time.perf_counter() - start < 5
