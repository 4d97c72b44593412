"""Who runs a run: the process recorded with it, so a run whose process died reads as interrupted.

pid, host and start time together name one process even after the system
reuses its pid; on another host nothing can be told, and the stored status stands.
"""

from __future__ import annotations

import os
import socket


def this_process() -> tuple[int, str, float | None]:
    """pid, host and start time: together they name a process even after its pid is reused."""
    import psutil

    try:
        started = psutil.Process().create_time()
    except psutil.Error:
        started = None
    return os.getpid(), socket.gethostname(), started


def owner_alive(pid: int | None, host: str | None, started: float | None) -> bool | None:
    """Whether the process that owns a run still runs; None when this machine cannot tell (another host)."""
    import psutil

    if pid is None or host != socket.gethostname():
        return None
    try:
        proc = psutil.Process(pid)
        created = proc.create_time()
        if proc.status() == psutil.STATUS_ZOMBIE:  # killed, not yet reaped by its parent
            return False
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return None
    return started is None or abs(created - started) < 1.0  # a different start time: the pid was reused
