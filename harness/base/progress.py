"""Progress for long stages (training, quantization, evaluation), built in one place.

On a terminal it is a rich progress bar. Anywhere else (a CI log, ``nohup``, a pipe) a bar
prints nothing until the end, so a user cannot tell a slow run from a hung one: there the
same calls print one plain line per task at a steady interval (stage, done/total, elapsed,
rate, time left), from a background thread, so a line comes even while one step takes long.

``HARNESS_PROGRESS_INTERVAL`` (seconds, default 15) sets the interval of the plain lines.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

#: seconds between two plain progress lines when stderr is not a terminal
DEFAULT_INTERVAL = 15.0


def interval() -> float:
    raw = os.environ.get("HARNESS_PROGRESS_INTERVAL", "")
    try:
        return max(0.05, float(raw)) if raw else DEFAULT_INTERVAL
    except ValueError:
        return DEFAULT_INTERVAL


def stage_progress(stage: str, console=None, unit: str = ""):
    """A progress display for ``stage`` with rich's Progress API (``add_task``, ``update``,
    ``advance``, ``start``/``stop`` or ``with``, ``console``): live on a terminal, periodic
    plain lines otherwise. ``unit`` names what is counted in the plain line ("steps")."""
    from rich.console import Console

    console = console or Console(stderr=True)  # stdout may carry --json output
    if console.is_terminal or console.is_jupyter:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        return Progress(
            TextColumn(f"[bold]{stage}[/bold] {{task.description}}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
        )
    return PlainProgress(stage, console, interval(), unit)


def heartbeat(stage: str, description: str = "", console=None):
    """A stage with no count to report (one library call that quantizes a model): on a terminal a
    pulsing bar, elsewhere ``stage description: running, 45 s elapsed`` at the steady interval."""
    display = stage_progress(stage, console)
    display.add_task(description, total=None)
    return display


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float
    start: float = field(default_factory=time.monotonic)
    start_completed: float = 0.0
    finished_line: bool = False


class PlainProgress:
    """rich's Progress calls, printed as a plain line per task every ``every`` seconds."""

    def __init__(self, stage: str, console, every: float, unit: str = "") -> None:
        self.stage, self.console, self.every, self.unit = stage, console, every, unit
        self.tasks: dict[int, _Task] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- rich's API ---------------------------------------------------------------------
    def add_task(self, description: str, total: float | None = 100.0, completed: float = 0, **_: Any) -> int:
        with self._lock:
            task_id = len(self.tasks)
            self.tasks[task_id] = _Task(description, total, completed, start_completed=completed)
        return task_id

    def update(self, task_id: int, *, total: float | None = None, completed: float | None = None,
               advance: float | None = None, description: str | None = None, **_: Any) -> None:
        with self._lock:
            task = self.tasks[task_id]
            if total is not None:
                task.total = total
            if completed is not None:
                task.completed = completed
            if advance is not None:
                task.completed += advance
            if description is not None:
                task.description = description

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def refresh(self) -> None:
        pass

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._tick, name=f"progress-{self.stage}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._print_all(final=True)

    def __enter__(self) -> PlainProgress:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the lines ------------------------------------------------------------------------
    def _tick(self) -> None:
        while not self._stop.wait(self.every):
            self._print_all(final=False)

    def _print_all(self, final: bool) -> None:
        with self._lock:
            lines = [self.line(task) for task in self.tasks.values() if not task.finished_line]
            if final:
                for task in self.tasks.values():
                    task.finished_line = True
        for text in lines:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def line(self, task: _Task) -> str:
        """``evaluate arith: 128/500 (26%), 41 s elapsed, 3.1 per s, about 2 min left``."""
        elapsed = time.monotonic() - task.start
        head = f"{self.stage} {task.description}".rstrip()
        if task.total is None:
            return f"{head}: running, {_duration(elapsed)} elapsed"
        unit = f" {self.unit}" if self.unit else ""
        done, total = int(task.completed), int(task.total)
        text = (
            f"{head}: {done}/{total}{unit} ({100 * task.completed / task.total:.0f}%)" if task.total
            else f"{head}: {done}{unit}"
        )
        text += f", {_duration(elapsed)} elapsed"
        rate = (task.completed - task.start_completed) / elapsed if elapsed > 0 else 0.0
        if rate > 0:
            text += f", {rate:.3g}{unit} per s"
            if task.total and task.completed < task.total:
                text += f", about {_duration((task.total - task.completed) / rate)} left"
        return text


def _duration(seconds: float) -> str:
    """``42 s``, ``2 min 15 s``, ``1 h 05 min``: whole seconds, so two lines never read the same."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
