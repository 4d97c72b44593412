"""``local``: the cells on this machine, each in a fresh process by default; one at a time unless told."""

from __future__ import annotations

import os
import queue
import signal
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness import hookimpl
from harness.base.errors import UserError
from harness.base.signals import Terminated, die_with_parent, stop_like_ctrl_c
from harness.core.executor import DoneCallback, Executor, Job, Run
from harness.sweeps.sweep import execute_job

INTERRUPTED = "__interrupted__"


@dataclass
class LocalOptions:
    isolate: bool = field(default=True, metadata={
        "help": "run each cell in a fresh process (its memory and timings are its own); false: in this process"})
    workers: int = field(default=1, metadata={
        "help": "cells run at once, each in its own process (needs isolate); cells that share cores share "
                "their timings, so compare latency only between cells of one setting"})


class _Stop:
    """What the parallel workers watch: set when the driver is interrupted, with the signal to pass on.

    A Ctrl-C from the terminal reaches every cell's process already (one process group), so the
    workers only wait for them; a SIGTERM reached the driver alone, so they forward it.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.forward: int | None = None

    def set(self, forward: int | None) -> None:
        self.forward = forward
        self.event.set()


def _cell_process(job: Job, conn) -> None:
    """Body of the process that runs one cell (``isolate=true``).

    It stops as its parent would: SIGTERM raises the Ctrl-C path here too, and
    a parent that dies without a word (SIGKILL) sends it SIGTERM, so the cell
    marks its run interrupted and frees its artifact lock instead of running
    on alone.
    """
    import multiprocessing

    die_with_parent(signal.SIGTERM)
    stop_like_ctrl_c()
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # it died before the request above took hold
        conn.close()
        return
    try:
        conn.send(execute_job(job))
    except KeyboardInterrupt:
        try:
            conn.send(INTERRUPTED)
        except OSError:  # the parent is gone (the SIGKILL case): the store already says interrupted
            pass
    finally:
        conn.close()


class LocalRun(Run):
    """Runs the cells one after another on this machine.

    With ``isolate`` (the default) each cell runs in a fresh process, so its
    peak memory and timings are its own, not those of the cells before it
    (a process's resident memory never shrinks back after a training run),
    and a cell that crashes the interpreter fails alone. Without it, cells
    run in this process (faster to start; what tests that patch the
    pipeline need).
    """

    def __init__(self, console: Any = None, isolate: bool = True, workers: int = 1):
        self.console = console
        self.isolate = isolate
        self.workers = workers

    @property
    def pauses_display(self) -> bool:
        """A child process writes to the terminal: the driver's live bar must stop meanwhile."""
        return self.isolate

    def run(self, jobs: list[Job], on_start: Callable[[Job], None], on_done: DoneCallback) -> None:
        if self.isolate and self.workers > 1 and len(jobs) > 1:
            self._in_parallel(jobs, on_start, on_done)
            return
        for job in jobs:
            on_start(job)
            result, error = self._in_process(job) if self.isolate else execute_job(job, self.console)
            on_done(job, result, error)

    def _in_parallel(self, jobs: list[Job], on_start: Callable[[Job], None], on_done: DoneCallback) -> None:
        """Up to ``workers`` cells at once, each in a fresh process watched by a thread of its own.

        The callbacks run in this (the calling) thread only: they update the report, the live bar and
        the store, whose SQLite connection belongs to this thread. An interrupt stops every cell: no new
        one starts, the running ones mark their runs interrupted (their artifact locks die with them),
        then the interrupt goes on to the caller.
        """
        pending, stop, finished = deque(jobs), _Stop(), queue.Queue()
        running: dict[int, threading.Thread] = {}
        interrupted = False

        def watch(job: Job) -> None:
            try:
                result, error = self._in_process(job, stop)
            except KeyboardInterrupt:
                finished.put((job, None, None, True))
            except BaseException as exc:  # noqa: BLE001 - a watcher must always report back
                finished.put((job, None, f"{type(exc).__name__}: {exc}", False))
            else:
                finished.put((job, result, error, False))

        try:
            while pending or running:
                while pending and len(running) < self.workers and not stop.event.is_set():
                    job = pending.popleft()
                    on_start(job)
                    running[job.index] = threading.Thread(target=watch, args=(job,), daemon=True,
                                                          name=f"harness-cell-{job.index}")
                    running[job.index].start()
                if not running:
                    break
                try:
                    job, result, error, was_interrupted = finished.get(timeout=0.5)
                except queue.Empty:
                    continue
                running.pop(job.index).join()
                if was_interrupted:
                    interrupted = True
                    stop.set(stop.forward)
                    continue
                on_done(job, result, error)
        except KeyboardInterrupt as exc:
            stop.set(exc.signum if isinstance(exc, Terminated) else None)
            for thread in running.values():
                thread.join()
            raise
        if interrupted:
            raise KeyboardInterrupt

    def _in_process(self, job: Job, stop: _Stop | None = None) -> tuple[dict | None, str | None]:
        import multiprocessing

        from harness.base.threads import for_children

        for_children()  # the cell imports torch afresh: the same thread choice as this process
        ctx = multiprocessing.get_context("spawn")
        receiver, sender = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_cell_process, args=(job, sender), name=f"harness-cell-{job.index}")
        proc.start()
        sender.close()
        try:
            message = None
            while proc.is_alive() or receiver.poll():
                if receiver.poll(0.5):
                    message = receiver.recv()
                    break
                if stop is not None and stop.event.is_set():
                    raise Terminated(stop.forward) if stop.forward is not None else KeyboardInterrupt
            proc.join()
        except KeyboardInterrupt as exc:
            # a Ctrl-C from the terminal reaches the child too; a SIGTERM reached this process alone
            if isinstance(exc, Terminated) and proc.is_alive():
                os.kill(proc.pid, exc.signum)
            proc.join(timeout=15)  # the child marks its run interrupted
            if proc.is_alive():
                proc.terminate()
                proc.join()
            raise
        finally:
            receiver.close()
        if message == INTERRUPTED:
            raise KeyboardInterrupt
        if message is None:
            return None, f"the cell's process died (exit code {proc.exitcode}) before reporting a result"
        return message


class LocalExecutor(Executor):
    name = "local"
    description = ("this machine, one cell after another (each in a fresh process unless isolate=false; "
                   "workers=N runs N at once)")
    options_class = LocalOptions

    def check(self, options: LocalOptions) -> None:
        super().check(options)
        if options.workers < 1:
            raise UserError(f"local executor: workers must be at least 1, got {options.workers}")
        if options.workers > 1 and not options.isolate:
            raise UserError(f"local executor: workers={options.workers} needs isolate=true (cells that share "
                            "one process cannot run at once)")

    def start(self, options: LocalOptions, console: Any = None) -> LocalRun:
        return LocalRun(console=console, isolate=options.isolate, workers=options.workers)


@hookimpl
def register_executors(register):
    register(LocalExecutor())
