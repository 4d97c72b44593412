"""``local``: the cells one after another on this machine, each in a fresh process by default."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness import hookimpl
from harness.base.signals import Terminated, die_with_parent, stop_like_ctrl_c
from harness.core.executor import DoneCallback, Executor, Job, Run
from harness.sweeps.sweep import execute_job

INTERRUPTED = "__interrupted__"


@dataclass
class LocalOptions:
    isolate: bool = field(default=True, metadata={
        "help": "run each cell in a fresh process (its memory and timings are its own); false: in this process"})


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

    def __init__(self, console: Any = None, isolate: bool = True):
        self.console = console
        self.isolate = isolate

    @property
    def pauses_display(self) -> bool:
        """A child process writes to the terminal: the driver's live bar must stop meanwhile."""
        return self.isolate

    def run(self, jobs: list[Job], on_start: Callable[[Job], None], on_done: DoneCallback) -> None:
        for job in jobs:
            on_start(job)
            result, error = self._in_process(job) if self.isolate else execute_job(job, self.console)
            on_done(job, result, error)

    def _in_process(self, job: Job) -> tuple[dict | None, str | None]:
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
    description = "this machine, one cell after another (each in a fresh process unless isolate=false)"
    options_class = LocalOptions

    def start(self, options: LocalOptions, console: Any = None) -> LocalRun:
        return LocalRun(console=console, isolate=options.isolate)


@hookimpl
def register_executors(register):
    register(LocalExecutor())
