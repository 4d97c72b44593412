"""Executors are plugins: a third party's runs a sweep exactly as the built-ins do, options and all."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from click.testing import CliRunner

from harness import hookimpl
from harness.cli import cli
from harness.core.executor import Executor, Run
from harness.core.plugin_manager import build_registry, make_manager
from harness.sweeps.sweep import execute_job

SWEEP = """
name = "exec"
[[cell]]
row = "base"
strategy = "none"
"""


@dataclass
class QueueOptions:
    label: str = field(default="q", metadata={"help": "a tag the executor stamps on each job"})
    reverse: bool = field(default=False, metadata={"help": "run the jobs last to first"})


class QueueRun(Run):
    seen: list[tuple[str, int]] = []

    def __init__(self, options: QueueOptions):
        self.options = options

    def run(self, jobs, on_start, on_done):
        for job in reversed(jobs) if self.options.reverse else jobs:
            on_start(job)
            QueueRun.seen.append((self.options.label, job.index))
            on_done(job, *execute_job(job))


class QueueExecutor(Executor):
    name = "queue"
    description = "a third party's executor, defined in the test"
    options_class = QueueOptions

    def start(self, options, console=None):
        return QueueRun(options)


class QueuePlugin:
    @hookimpl
    def register_executors(self, register):
        register(QueueExecutor())


@pytest.fixture
def with_queue(install_plugin):
    install_plugin(QueuePlugin(), "third-party-queue")
    QueueRun.seen.clear()


def test_builtin_executors_are_registered_through_the_hook():
    pm, failures = make_manager()
    reg = build_registry(pm, failures)
    assert {"local", "ray"} <= set(reg.executors.names())
    assert reg.executors.owners["local"] == "local"
    assert reg.executors.get("ray").runs_here is False


def test_a_third_party_executor_runs_a_sweep_with_its_own_options(with_queue, tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SWEEP)
    result = CliRunner().invoke(cli, ["sweep", str(path), "--limit", "3", "--executor", "queue",
                                      "--executor-opt", "label=mine", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{"):])
    assert report["counts"]["done"] == 1
    assert QueueRun.seen == [("mine", 0)]


def test_unknown_executor_and_unknown_option_are_one_line_each(with_queue, tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SWEEP)
    unknown = CliRunner().invoke(cli, ["sweep", str(path), "--executor", "qeue"])
    assert unknown.exit_code == 2
    assert "unknown executor 'qeue'" in unknown.output and "Did you mean 'queue'" in unknown.output
    bad = CliRunner().invoke(cli, ["sweep", str(path), "--executor", "queue", "--executor-opt", "colour=red"])
    assert bad.exit_code == 2 and "colour" in bad.output and "label" in bad.output
    typed = CliRunner().invoke(cli, ["sweep", str(path), "--executor", "queue", "--executor-opt", "reverse=maybe"])
    assert typed.exit_code == 2 and "reverse" in typed.output
    assert QueueRun.seen == []


def test_local_workers_are_checked_before_anything_runs(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SWEEP)
    zero = CliRunner().invoke(cli, ["sweep", str(path), "--executor-opt", "workers=0"])
    assert zero.exit_code == 2 and "workers must be at least 1, got 0" in zero.output
    shared = CliRunner().invoke(cli, ["sweep", str(path), "--executor-opt", "workers=2",
                                      "--executor-opt", "isolate=false"])
    assert shared.exit_code == 2 and "workers=2 needs isolate=true" in shared.output


def _jobs(n: int):
    from harness.core.executor import Job

    return [Job(i, f"cell {i}", {}, "store.db", None) for i in range(n)]


def test_local_workers_run_cells_at_once_and_report_each(monkeypatch):
    """Three workers over five cells: at most three at once, at least two overlapping, each reported once, and
    the callbacks run in the calling thread only (they write to the store, whose SQLite connection is that
    thread's: a sweep once lost its tags to a callback run from a worker thread)."""
    import threading
    import time

    from harness.executors.local import LocalRun

    running, most, lock = [0], [0], threading.Lock()

    def fake_cell(self, job, stop=None):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        return {"run_id": f"r{job.index}"}, None

    monkeypatch.setattr(LocalRun, "_in_process", fake_cell)
    started, done = [], []

    caller = threading.current_thread()

    def on_start(job):
        assert threading.current_thread() is caller
        started.append(job.index)

    def on_done(job, result, error):
        assert threading.current_thread() is caller
        done.append((job.index, result["run_id"], error))

    LocalRun(isolate=True, workers=3).run(_jobs(5), on_start, on_done)
    assert sorted(started) == [0, 1, 2, 3, 4] and started[:3] == [0, 1, 2]
    assert sorted(done) == [(i, f"r{i}", None) for i in range(5)]
    assert 2 <= most[0] <= 3


def test_a_local_worker_whose_cell_raises_reports_an_error_and_the_others_go_on(monkeypatch):
    from harness.executors.local import LocalRun

    def fake_cell(self, job, stop=None):
        if job.index == 1:
            raise OSError("pipe closed")
        return {"run_id": f"r{job.index}"}, None

    monkeypatch.setattr(LocalRun, "_in_process", fake_cell)
    done = {}
    LocalRun(isolate=True, workers=2).run(_jobs(4), lambda job: None,
                                          lambda job, result, error: done.update({job.index: error}))
    assert done == {0: None, 1: "OSError: pipe closed", 2: None, 3: None}


def test_an_interrupted_local_worker_stops_the_others_and_starts_nothing_new(monkeypatch):
    import time

    from harness.executors.local import LocalRun

    def fake_cell(self, job, stop=None):
        if job.index == 0:
            time.sleep(0.1)
            raise KeyboardInterrupt
        while not stop.event.is_set():  # a long cell: ends when told to stop, as a real one is interrupted
            time.sleep(0.02)
        raise KeyboardInterrupt

    monkeypatch.setattr(LocalRun, "_in_process", fake_cell)
    started, done = [], []
    with pytest.raises(KeyboardInterrupt):
        LocalRun(isolate=True, workers=2).run(_jobs(4), lambda job: started.append(job.index),
                                              lambda job, result, error: done.append(job.index))
    assert started == [0, 1] and done == []


@pytest.mark.slow
def test_a_sweep_with_two_local_workers_stores_and_tags_every_cell(tmp_path):
    """Two real cells at once, each in its own process: both stored, and both tagged with the sweep's rows by
    the driver (whose store connection lives in its own thread)."""
    from harness.runs.store import Store

    path = tmp_path / "two.toml"
    path.write_text('name = "two"\n[[cell]]\nrow = "base"\n[[cell]]\nrow = "rtn 8-bit"\nstrategy = "rtn"\nbits = 8\n')
    store_path = tmp_path / "r.db"
    result = CliRunner().invoke(cli, ["sweep", str(path), "--limit", "2", "--executor-opt", "workers=2", "--json",
                                      "--store", str(store_path), "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{"):])
    assert report["counts"]["done"] == 2
    store = Store(store_path, read_only=True)
    try:
        tags = {run["id"]: (run.get("artifacts") or {}).get("sweeps", {}) for run in store.list_runs()}
    finally:
        store.close()
    assert len(tags) == 2 and all("two" in json.dumps(t) for t in tags.values()), tags
