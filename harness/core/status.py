"""The states a stored run and a sweep cell can be in.

String-valued enums: the store keeps the text (old stores need no migration)
and JSON output prints it, while code compares members, so a misspelt state
is an AttributeError at import rather than a silent mismatch.
"""

from __future__ import annotations

from enum import Enum


class RunStatus(str, Enum):
    """A stored run's status."""

    RUNNING = "running"  #: started; its owner process may still be at work
    COMPLETE = "complete"  #: evaluated and profiled
    FAILED = "failed"  #: stopped by an error (the error is stored with it)
    INTERRUPTED = "interrupted"  #: stopped by a signal, or its owner died while it ran
    PROFILED = "profiled"  #: profiled by ``harness profile`` but never evaluated

    def __str__(self) -> str:
        return self.value


class CellState(str, Enum):
    """Where a sweep cell stands."""

    PENDING = "pending"  #: not run yet (or interrupted: it resumes on the next sweep)
    RUNNING = "running"
    DONE = "done"  #: run by this sweep
    STORED = "stored"  #: found complete in the store, not run again
    FAILED = "failed"
    DUPLICATE = "duplicate"  #: the same run id as an earlier cell

    def __str__(self) -> str:
        return self.value
