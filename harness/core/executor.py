"""The executor interface: where a sweep's cells run (this machine, a Ray cluster, ...).

Executors are plugins, registered through the ``register_executors`` hook like
strategies and trainers, each with its own options dataclass
(``--executor-opt KEY=VALUE``), so the CLI knows no executor by name. An
executor gets :class:`Job` objects (plain, picklable data) and hands back each
cell's result or error through a callback; how a cell runs is always
:func:`harness.sweeps.sweep.execute_job`, so every executor runs exactly what a local run does.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.base.errors import UserError


@dataclass
class Job:
    """What an executor gets for one cell (plain data, picklable)."""

    index: int
    label: str
    config: dict
    store_path: str | None
    cache_dir: str | None
    #: (index, count): evaluate only that shard of the problems (see :func:`harness.sweeps.sweep.shard_of`); None: all
    shard: tuple[int, int] | None = None


#: on_done(job, result or None, error text or None)
DoneCallback = Callable[[Job, "dict | None", "str | None"], None]


class Run:
    """One sweep's execution on an executor: built by :meth:`Executor.start`, driven by the sweep."""

    #: True when cells write to the terminal themselves (a child process): the sweep's live bar pauses
    pauses_display: bool = False

    def run(self, jobs: list[Job], on_start: Callable[[Job], None], on_done: DoneCallback) -> None:
        """Run ``jobs``; call ``on_start`` as each starts and ``on_done`` as each ends. A
        KeyboardInterrupt stops it (finished cells are stored; the rest resume on the next sweep)."""
        raise NotImplementedError


@dataclass
class NoOptions:
    """An executor without options."""


class Executor:
    """Base class of executor plugins."""

    name: str = ""
    description: str = ""
    #: dataclass of options; defaults and help text beside each field
    options_class: type = NoOptions
    #: True when cells run on this machine, so the driver checks devices (a GPU a cell needs) here;
    #: False when they run elsewhere and are checked there (a cluster's own devices)
    runs_here: bool = True

    def unavailable_reason(self) -> str | None:
        """Why this executor cannot run here (a library missing), or None."""
        return None

    def make_options(self, opts: dict[str, Any]) -> Any:
        from harness.base.options import build_options

        return build_options(self.options_class, opts, owner=f"executor {self.name!r}")

    def check(self, options: Any) -> None:
        """Refuse, before anything is planned, what cannot work (a cluster that does not answer)."""
        reason = self.unavailable_reason()
        if reason:
            raise UserError(f"executor {self.name!r} is unavailable: {reason}")

    def auto_device(self, options: Any) -> str | None:
        """What ``device = auto`` is where this executor runs cells, or None for this machine's own.

        A run's id holds the device class it computes in (bf16 on CUDA is another experiment than fp32 on a
        CPU), so cells that run elsewhere must be planned with the device they will get there: else the
        driver's ids (the stored check, twins, the report) are not the ids its workers store.
        """
        return None

    def start(self, options: Any, console: Any = None) -> Run:
        raise NotImplementedError


def as_outcome(call: Callable[[], Any], what: str = "") -> tuple[Any, str | None]:
    """``(call(), None)``, or ``(None, error text)`` when it fails: what executors hand back for a cell.

    A user error is its one-line message; anything else also prints its
    traceback on stderr, since it is a bug. One failing cell must not stop
    the sweep, so nothing is re-raised (KeyboardInterrupt is not caught).
    """
    prefix = f"{what}: " if what else ""
    try:
        return call(), None
    except UserError as exc:
        return None, f"{prefix}{exc}"
    except Exception as exc:  # noqa: BLE001 - see the docstring
        print(traceback.format_exc(), file=sys.stderr)
        return None, f"{prefix}{type(exc).__name__}: {exc}"
