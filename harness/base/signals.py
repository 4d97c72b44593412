"""SIGTERM and SIGHUP end a run the way Ctrl-C does, and a child process never outlives its parent.

Python's default for SIGTERM is to die on the spot: no ``finally``, no
"interrupted" in the store, and an isolated sweep cell's process left running
on its own (holding its artifact lock) after its parent is gone. Schedulers
(Slurm, Kubernetes, systemd, ``timeout``) stop jobs with SIGTERM, so it gets
the Ctrl-C path: :class:`Terminated` is a ``KeyboardInterrupt``, and every
handler written for Ctrl-C (mark the run interrupted, keep what is stored,
stop a served engine) runs for it too.
"""

from __future__ import annotations

import signal
import sys
import threading

#: the signals that mean "stop, cleanly" (Ctrl-C's SIGINT already raises KeyboardInterrupt)
GRACEFUL = (signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM or SIGHUP; ``signum`` says which."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def exit_status(exc: KeyboardInterrupt) -> int:
    """The exit status of a process stopped by ``exc``: 128 + the signal (130 for Ctrl-C's SIGINT)."""
    return exc.exit_code if isinstance(exc, Terminated) else 128 + signal.SIGINT


def _raise(signum: int, frame: object) -> None:
    raise Terminated(signum)


def stop_like_ctrl_c() -> None:
    """Make SIGTERM and SIGHUP raise :class:`Terminated` in this process (main thread only).

    A signal the process was started with ignored stays ignored: ``nohup``
    ignores SIGHUP on purpose, and Python leaves an ignored SIGINT alone the
    same way.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in GRACEFUL:
        if signal.getsignal(sig) == signal.SIG_DFL:
            signal.signal(sig, _raise)


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux; a no-op elsewhere).

    SIGTERM for a process that should mark its work interrupted first (a
    sweep cell), SIGKILL for one with nothing to save (a server's child).
    """
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig))
