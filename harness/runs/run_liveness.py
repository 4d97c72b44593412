"""What a stored run's status means when its process is gone: the rule the store applies to every run it reads.

A run is stored as ``running`` with its owner (pid, host, start time) when it starts. A process killed with
SIGKILL, or a machine that lost power, never writes its end, so a ``running`` run whose owner no longer exists
reads as ``interrupted``, with the reason; the stored row is left as it is (rerunning resumes it).
"""

from __future__ import annotations

from harness.base.run_owner import owner_alive
from harness.core.status import RunStatus


def as_seen(run: dict) -> dict:
    """``run`` (a decoded row of the runs table, its owner columns folded into ``owner``) with the status a reader
    should see: ``interrupted`` when it is stored as running and its owner is known to be dead."""
    owner = run.get("owner") or {}
    if run["status"] == RunStatus.RUNNING and owner and \
            owner_alive(owner.get("pid"), owner.get("host"), owner.get("started")) is False:
        run = {**run, "status": RunStatus.INTERRUPTED.value,
               "error": run.get("error") or f"its process (pid {owner['pid']} on {owner['host']}) ended without "
                                            "finishing it"}
    return run
