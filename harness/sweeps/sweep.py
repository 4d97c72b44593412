"""Sweeps: many runs from one TOML file, each cell one call of :func:`run_cell`.

A sweep file names its cells three ways, combined: ``[defaults]`` (fields of
every cell), ``[grid]`` (lists whose cartesian product gives cells) and
``[[cell]]`` (explicit rows, for tables such as the seed study's Table 1 that
are not a full grid). Per-plugin options live in ``[trainer_opts.NAME]`` and
``[strategy_opts.NAME]`` and reach only the cells that use that plugin, so a
``grpo`` option never lands on a cell without a trainer.

A ``[faithful]`` table holds overrides that turn each cell into the reference
code's exact settings (``--faithful``). Every cell is planned in both forms, so
a run knows the id of its *twin* (the same row in the other form) and the
leaderboard can pair a corrected row with its faithful one. That pairing is
recorded beside the run (``artifacts["sweep"]``), not in the run's hash: two
sweeps that name the same configuration share one run.

Every cell is planned (checked) before anything runs, and one bad value in
any cell refuses the whole sweep in one line per bad cell; a cell that fails
while it runs is listed with its error at the end while the others go on.
Cells already complete in the store are skipped, so re-running a sweep runs
only what is missing. :func:`run_cell` takes and returns plain data, so an
executor (:mod:`harness.core.executor`: this machine, a Ray cluster) can ship it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from harness.base.errors import UserError
from harness.base.signals import exit_status
from harness.core.executor import Job, Run, as_outcome
from harness.core.graph import run_graph
from harness.core.status import CellState
from harness.runs.opening import opened_run
from harness.sweeps.cells import Cell

# -- running -------------------------------------------------------------------------------------


def run_cell(
    config: dict, store_path: str | None, cache_dir: str | None, console=None, shard: tuple[int, int] | None = None,
) -> dict:
    """Run one cell: plain data in (``RunConfig.to_dict()``), plain data out (the run's result).

    The whole pipeline of one run (train, quantize, evaluate, profile, store)
    behind one picklable call, so any executor can ship it to a worker.
    ``shard=(index, count)`` evaluates only that shard's problems (see
    :func:`shard_of`) under the run's own id; its metrics cover the shard
    alone, and whoever merges the shards' samples recomputes them.
    """
    with opened_run(config, store_path, cache_dir, console) as run:
        if shard is not None:
            run.plan.problems = {name: shard_of(problems, *shard) for name, problems in run.plan.problems.items()}
        return run.runner.run(run.plan)


def execute_job(job: Job, console: Any = None) -> tuple[dict | None, str | None]:
    """Run one job, turning a failure into its error text: (result, None) or (None, error)."""
    return as_outcome(lambda: run_cell(job.config, job.store_path, job.cache_dir, console=console, shard=job.shard))


def shard_of(problems: list, index: int, count: int) -> list:
    """Problems ``i`` with ``i % count == index``, in their order: every shard gets easy and hard
    ones alike (benchmarks are often sorted by level), and the shards together are the whole list."""
    if not 0 <= index < count:
        raise UserError(f"shard index must be in 0..{count - 1}, got {index}")
    return problems[index::count]


def build_stage(config: dict, cache_dir: str | None, stage: str, console=None) -> str | None:
    """Build one cell's artifact stage ``stage`` (and those before it) into the artifact cache; its key.

    What several cells share (an RL checkpoint, a quantized model that shards
    of one cell evaluate) is built once, by this, before they run; they then
    find it in the cache. The stages run through the Runner as in
    :func:`run_cell`, against a throw-away store: only the artifact is kept.
    """
    with opened_run(config, ":memory:", cache_dir, console) as run:
        graph = run_graph(run.plan)
        names = [s.name for s in graph.artifacts]
        if stage not in names:
            raise UserError(f"this cell has no {stage!r} stage to build; its artifact stages: {', '.join(names)}")
        run.runner.materialize(run.plan, run.plan.config.run_id, until=stage)
        return graph.key(stage)


@dataclass
class SweepReport:
    name: str
    cells: list[Cell]
    seconds: float = 0.0
    interrupted: bool = False
    exit_code_if_interrupted: int = 130  # 128 + the signal: 130 for Ctrl-C, 143 for SIGTERM

    def count(self, state: str) -> int:
        return sum(c.state == state for c in self.cells)

    @property
    def failed(self) -> list[Cell]:
        return [c for c in self.cells if c.state == CellState.FAILED]

    def to_dict(self) -> dict:
        return {
            "sweep": self.name, "seconds": round(self.seconds, 3), "interrupted": self.interrupted,
            "counts": {s.value: self.count(s) for s in (CellState.DONE, CellState.STORED, CellState.FAILED,
                                                        CellState.DUPLICATE, CellState.PENDING)},
            "cells": [c.to_dict() for c in self.cells],
        }


def run_sweep(name: str, cells: list[Cell], store, cache_dir: str | None, runner: Run, console=None) -> SweepReport:
    """Run the pending cells, skipping stored ones; a KeyboardInterrupt stops it cleanly.

    The driver alone writes the sweep's tags into the store; each cell's run
    is stored by :func:`run_cell` (the Runner), whose artifacts are published
    atomically and whose samples are committed batch by batch, so an
    interrupted cell resumes on the next run and nothing is half-written.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = console or Console(stderr=True)
    report = SweepReport(name, cells)
    by_index = {c.index: c for c in cells}
    for cell in cells:
        if cell.state == "stored":
            store.tag_sweep(cell.run_id, cell.tags)
    pending = [c for c in cells if c.state == "pending"]
    jobs = [Job(c.index, c.label, c.config.to_dict(), str(store.path), cache_dir) for c in pending]
    start = time.perf_counter()
    columns = (TextColumn("[bold]sweep[/bold] {task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        settled = sum(c.state in (CellState.STORED, CellState.FAILED, CellState.DUPLICATE) for c in cells)
        task = progress.add_task(name, total=len(cells), completed=settled, status=_status(report))
        started: dict[int, float] = {}

        pause = runner.pauses_display
        live = [True]

        def resume() -> None:
            if not live[0]:
                progress.start()
                live[0] = True

        def on_start(job: Job) -> None:
            started[job.index] = time.perf_counter()
            by_index[job.index].state = CellState.RUNNING
            progress.update(task, description=f"{name}: {job.label}", status=_status(report))
            if pause:  # leave the bar printed once, give the terminal to the cell's process
                progress.refresh()
                progress.stop()
                live[0] = False

        def on_done(job: Job, result: dict | None, error: str | None) -> None:
            resume()
            cell = by_index[job.index]
            cell.seconds = time.perf_counter() - started.get(job.index, start)
            if error is None:
                cell.state = CellState.DONE
                # the id the run was stored under: a cell planned here for a cluster ("auto" device)
                # may have resolved to another compute class where it ran
                cell.run_id = (result or {}).get("run_id") or cell.run_id
                store.tag_sweep(cell.run_id, cell.tags)
            else:
                cell.state, cell.error = CellState.FAILED, error
                console.print(f"[red]cell {cell.index + 1} failed[/red] ", end="", highlight=False)
                console.print(f"({cell.label}): {error}", markup=False, highlight=False)
            progress.update(task, advance=1, status=_status(report))

        try:
            runner.run(jobs, on_start, on_done)
        except KeyboardInterrupt as exc:
            resume()
            report.interrupted = True
            report.exit_code_if_interrupted = exit_status(exc)
            for cell in cells:
                if cell.state == CellState.RUNNING:
                    cell.state, cell.error = CellState.PENDING, "interrupted"
        finally:
            report.seconds = time.perf_counter() - start
            progress.update(task, description=name, status=_status(report))
    return report


def _status(report: SweepReport) -> str:
    running = report.count(CellState.RUNNING)
    return (f"[green]{report.count('done')} run[/green] · {report.count('stored')} stored · "
            + (f"[yellow]{running} running[/yellow] · " if running else "")
            + f"[red]{report.count('failed')} failed[/red]")
