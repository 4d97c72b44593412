"""Runs a server command and takes its whole process tree down when the harness dies (stdlib only).

``python -I guard.py -- COMMAND...``. vLLM's API server starts an engine-core
process that does not watch its parent: when the harness is SIGKILLed, a
PR_SET_PDEATHSIG on the API server alone leaves the engine core running. So
the guard sits between the harness and the server: it asks the kernel for
SIGTERM when the harness dies (PR_SET_PDEATHSIG), becomes a child subreaper
(PR_SET_CHILD_SUBREAPER), so every orphaned descendant of the server is
re-parented to it rather than to init, and on SIGTERM, SIGINT or SIGHUP it
sends SIGTERM, then SIGKILL, to every descendant it has. Everything stays in
the harness's process group, so a kill of that group reaches all of them.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
GRACE_S = 10.0


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc: parent ids), children first."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def stop_tree(grace_s: float = GRACE_S) -> None:
    """SIGTERM to every descendant, SIGKILL to whatever is left after ``grace_s``; reap them all."""
    me = os.getpid()
    _signal_all(descendants(me), signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and descendants(me):
        _reap()
        time.sleep(0.1)
    for _ in range(3):
        left = descendants(me)
        if not left:
            break
        _signal_all(left, signal.SIGKILL)
        time.sleep(0.2)
        _reap()


def _reap() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def main() -> int:
    command = sys.argv[sys.argv.index("--") + 1:]
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1)
    parent = int(os.environ.get("HARNESS_GUARD_PARENT", os.getppid()))

    def on_signal(signum, frame):
        stop_tree()
        os._exit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    if os.getppid() != parent:  # the harness died before the handler was in place
        return 1
    server = subprocess.Popen(command)
    code = server.wait()
    stop_tree(grace_s=2.0)  # the server exited by itself: nothing it started may stay behind
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
