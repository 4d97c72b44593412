"""What Ray runs on its workers for a sweep: shared stages and cells, each through the local code path.

A task builds a stage with :func:`harness.sweeps.sweep.build_stage` or runs a cell
with :func:`harness.sweeps.sweep.execute_job` against a store of its own, and
returns plain data (the run, exported): a retried task resumes from its store.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

from harness.core.executor import Job, as_outcome
from harness.runs.store import Store
from harness.runs.transfer import export_run
from harness.sweeps.sweep import build_stage, execute_job

#: test hook: a folder where each run task writes ``<unit>.<pid>.<ns>.pid`` as it starts (one file per attempt)
PID_DIR_ENV = "HARNESS_RAY_PID_DIR"


def _write_pid(unit_name: str) -> None:
    folder = os.environ.get(PID_DIR_ENV)
    if folder:
        Path(folder, f"{unit_name}.{os.getpid()}.{time.time_ns()}.pid").write_text(str(os.getpid()))


def stage_task(config: dict, cache_dir: str, stage: str, *deps: tuple) -> tuple[str | None, str | None]:
    """Ray task body: build a shared stage; (key, None) or (None, error text)."""
    from rich.console import Console

    failed = _failed_dependency(deps)
    if failed:
        return None, failed
    # a failure is reported with the cells that needed the stage
    return as_outcome(lambda: build_stage(config, cache_dir, stage, console=Console(file=io.StringIO())),
                      f"{stage} stage")


def run_task(job: Job, unit_name: str, *deps: tuple) -> tuple[dict | None, str | None]:
    """Ray task body: run a cell (or a shard) through ``execute_job``; (exported run, None) or (None, error)."""
    from rich.console import Console

    failed = _failed_dependency(deps)
    if failed:
        return None, failed
    _write_pid(unit_name)
    result, error = execute_job(job, console=Console(file=io.StringIO()))
    if error is not None:
        return None, error
    store = Store(job.store_path)
    try:
        return export_run(store, result["run_id"]), None
    finally:
        store.close()


def _failed_dependency(deps: tuple) -> str | None:
    for _key, error in deps:
        if error is not None:
            return error
    return None
