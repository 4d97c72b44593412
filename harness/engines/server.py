"""A server child process that never outlives the harness: start, wait until healthy, always stop.

Three ways a harness can end, three guards:

- normally, on an error or on Ctrl-C: :class:`ServerProcess` is a context
  manager whose exit stops the server's whole process tree (SIGTERM, then
  SIGKILL after a grace period), and an ``atexit`` hook catches what a
  context manager cannot;
- SIGTERM or SIGKILL of the harness alone: the server runs under a small
  guard process (:mod:`harness.engines.guard`) that the kernel signals when
  the harness dies (``PR_SET_PDEATHSIG``) and that is a child subreaper, so
  it finds and stops every descendant, even those orphaned by the server's
  own death (vLLM's engine core does not watch its parent);
- kill of the harness's process group (Ctrl-C in a terminal, ``kill -- -PGID``):
  the server stays in the harness's process group, so the same signal reaches it.

Requests never outlive a stop either: the client's connections are tracked
(:func:`tracking_backend`), so a stop shuts them and every thread waiting on
an answer returns at once, whether we started the server or not.

The port is chosen free on the loopback interface just before start; the
server binds it with SO_REUSEADDR, so a stopped server leaves it reusable.
"""

from __future__ import annotations

import atexit
import collections
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.base.errors import UserError
from harness.base.progress import interval

#: seconds a server may take to become healthy unless HARNESS_ENGINE_START_TIMEOUT says otherwise
#: (vLLM's CPU build: ~25 s for tiny-arith on 2 quiet cores, minutes when they are shared)
DEFAULT_START_TIMEOUT = 600.0
STOP_GRACE_S = 10.0
#: seconds a server gets to exit when the harness itself is stopped (Ctrl-C, SIGTERM), before it is killed
INTERRUPT_GRACE_S = 2.0
LOG_TAIL_LINES = 20

_LIVE: set[ServerProcess] = set()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Streamed:
    """A streamed completion as it arrives: when it was sent, each chunk's arrival, the tokens it reported, and
    whether it ended (a cancelled one keeps what arrived)."""

    start: float = 0.0
    times: list[float] = field(default_factory=list)
    tokens: int = 0
    done: bool = False


def id_list(ids) -> str:
    """``[0, 1, 2, 5]`` as ``0-2,5``: the core-list form vLLM's and the kernel's CPU lists use."""
    ids = sorted(set(ids))
    runs: list[list[int]] = []
    for i in ids:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(collections.deque(f, maxlen=lines)).rstrip()
    except OSError:
        return "(no log)"


class ServerProcess:
    """``with ServerProcess(cmd, env, log, health) as s: s.url``: a healthy server, stopped on exit."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        name: str,
        log_path: Path,
        health: Callable[[], bool],
        env: dict[str, str] | None = None,
        timeout_s: float | None = None,
        say: Callable[[str], None] = lambda s: None,
        progress_every_s: float | None = None,
    ):
        self.command = list(command)
        self.name = name
        self.log_path = Path(log_path)
        self.health = health
        self.env = env
        self.timeout_s = timeout_s if timeout_s is not None else float(
            os.environ.get("HARNESS_ENGINE_START_TIMEOUT", DEFAULT_START_TIMEOUT))
        self.say = say
        # a line at least every 10 s while it starts (sooner when HARNESS_PROGRESS_INTERVAL says so)
        self.progress_every_s = progress_every_s if progress_every_s is not None else min(10.0, interval())
        self.proc: subprocess.Popen | None = None
        self.started_s: float | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> ServerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        t0 = time.perf_counter()
        guard = [sys.executable, "-I", str(Path(__file__).with_name("guard.py")), "--"]
        env = {**(self.env if self.env is not None else os.environ), "HARNESS_GUARD_PARENT": str(os.getpid())}
        try:
            self.proc = subprocess.Popen(
                guard + self.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            )
        except OSError as exc:
            raise UserError(f"{self.name}: cannot start {self.command[0]!r}: {exc}") from None
        finally:
            log.close()
        _LIVE.add(self)
        try:
            self._wait_healthy(t0)
        except BaseException as exc:
            self.stop(INTERRUPT_GRACE_S if isinstance(exc, KeyboardInterrupt) else None)
            raise
        self.started_s = time.perf_counter() - t0
        return self

    def _wait_healthy(self, t0: float) -> None:
        last_note = t0
        while True:
            if self.proc.poll() is not None:
                raise UserError(
                    f"{self.name} exited with status {self.proc.returncode} before it became healthy; "
                    f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"
                )
            if self.health():
                return
            now = time.perf_counter()
            if now - t0 > self.timeout_s:
                raise UserError(
                    f"{self.name} did not become healthy within {self.timeout_s:.0f} s "
                    f"(HARNESS_ENGINE_START_TIMEOUT); stopped it; last lines of {self.log_path}:\n"
                    f"{log_tail(self.log_path)}"
                )
            if now - last_note >= self.progress_every_s:
                self.say(f"{self.name}: waiting for the server to become healthy ({now - t0:.0f} s)")
                last_note = now
            time.sleep(0.5)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tree(self, guard: bool = False) -> list:
        """The server and every process under it (psutil.Process objects); the guard too if asked."""
        import psutil

        if self.proc is None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return ([root] if guard else []) + root.children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def rss_bytes(self) -> int:
        """Resident memory of the whole process tree (vLLM's API server plus its engine core)."""
        import psutil

        total = 0
        for p in self.tree():
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def stop(self, grace_s: float | None = None) -> None:
        """SIGTERM to the tree, SIGKILL after a grace period (``grace_s``: a shorter one than the guard's, when
        the harness itself is being stopped); reaps the children. Safe to call twice."""
        import psutil

        if self.proc is None:
            return
        procs = self.tree(guard=True)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the guard stops the tree: SIGTERM, then SIGKILL
        try:
            self.proc.wait(timeout=STOP_GRACE_S + 5 if grace_s is None else grace_s)
        except subprocess.TimeoutExpired:
            pass
        _, alive = psutil.wait_procs(procs, timeout=1 if grace_s is None else 0.1)
        for p in alive:  # what the guard could not stop
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=STOP_GRACE_S)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        _LIVE.discard(self)

    def __enter__(self) -> ServerProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def tracking_backend():
    """httpcore's network backend, keeping every socket it opens so that its ``cancel()`` can shut them
    (what :meth:`harness.engines.openai.CompletionsClient.cancel` does).

    A thread blocked reading a response (a long completion, a slow stream) is woken only by a shutdown of
    its socket: closing the socket or the client from another thread leaves it blocked until the server
    answers, and the interpreter's exit waits for it."""
    import httpcore

    class Tracking(httpcore.SyncBackend):
        def __init__(self) -> None:
            self.sockets: weakref.WeakSet = weakref.WeakSet()
            self.lock = threading.Lock()
            self.cancelled = False

        def connect_tcp(self, *args: Any, **kwargs: Any):
            stream = super().connect_tcp(*args, **kwargs)
            sock = stream.get_extra_info("socket")
            with self.lock:
                self.sockets.add(sock)
                if self.cancelled:
                    _shut(sock)
            return stream

        def cancel(self) -> None:
            with self.lock:
                self.cancelled = True
                socks = list(self.sockets)
            for sock in socks:
                _shut(sock)

    return Tracking()


def _shut(sock) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # closed already
        pass


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        server.stop()
