"""How many CPU threads torch uses: one choice for every process, and a default that follows the load.

torch's own default (one OpenMP thread per core, spinning while it waits for work) is the fastest
setting on an idle machine and a trap on a shared one: a thread whose core another process holds
keeps every parallel region waiting, and evaluating the tiny model went from 0.2 s to 1-27 s with
one CPU-burning job beside it on two cores (tests/perf/test_perf_threads.py measures it). Measured
here, no fixed setting is near the best in both cases: two threads with ``OMP_WAIT_POLICY=PASSIVE``
were 2.2x slower than spinning when quiet (waking a sleeping thread for each small op), one thread
1.3x slower when quiet. So the default is adaptive:

- threads: the cores this process may really use (its CPU affinity, lowered to a cgroup CPU quota
  when one is set: a container's ``--cpus 2`` on a 64-core host means 2, not 64), less the cores
  other processes are running on right now, at least one: :func:`adapt` sets it before each
  generation batch and each training step, so a job that starts beside a run takes a thread away
  at the next batch instead of stalling it;
- OpenMP's own wait policy (spin briefly, then sleep), which is the fastest when the threads have
  their cores.

``--threads N`` / ``HARNESS_THREADS`` (or an ``OMP_NUM_THREADS`` of the user's) fix the count and
turn adapting off; an ``OMP_WAIT_POLICY`` in the environment is kept. The choice goes through the
environment, before torch is imported, so every process the harness starts (isolated sweep cells,
fresh evaluation processes, Ray workers on this machine) inherits it; profiles record it
(``cpu_threads``, ``omp_wait_policy``)."""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

#: the variables a count is written to (torch reads the first two when it is imported)
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: set to 1 while the count is the harness's own default, so :func:`adapt` may change it
ADAPTIVE_VAR = "HARNESS_THREADS_ADAPTIVE"


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    #: OMP_WAIT_POLICY to set, or None: OpenMP's own (spin briefly, then sleep)
    wait_policy: str | None
    #: "--threads" or the variable it came from (asked for), or "usable cores" (the default)
    source: str
    #: the default: the count follows the machine's load (:func:`adapt`)
    adaptive: bool = False

    def environment(self) -> dict[str, str]:
        """The variables a process needs to run with this choice."""
        env = {var: str(self.threads) for var in THREAD_VARS}
        if not self.adaptive:
            env["HARNESS_THREADS"] = str(self.threads)
        env[ADAPTIVE_VAR] = "1" if self.adaptive else "0"
        if self.wait_policy:
            env["OMP_WAIT_POLICY"] = self.wait_policy
        return env


def cgroup_cpu_limit(
    root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")
) -> float | None:
    """CPUs this process's cgroup may use per period (``quota / period``), or None when unlimited.

    cgroup v2 (``cpu.max``) and v1 (``cpu.cfs_quota_us``); the tightest limit on the path up to
    the root counts, as the kernel enforces each level."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    limits: list[float] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: one unified hierarchy
            candidates = [(root / path.lstrip("/"), "v2")]
        elif "cpu" in controllers.split(","):
            candidates = [(root / name / path.lstrip("/"), "v1") for name in ("cpu,cpuacct", "cpu", "cpuacct,cpu")]
        else:
            continue
        for folder, version in candidates:
            for level in [folder, *folder.parents]:
                if level == root.parent or not str(level).startswith(str(root)):
                    break
                limit = _limit_at(level, version)
                if limit is not None:
                    limits.append(limit)
    return min(limits) if limits else None


def _limit_at(folder: Path, version: str) -> float | None:
    try:
        if version == "v2":
            quota, _, period = (folder / "cpu.max").read_text().strip().partition(" ")
            return None if quota == "max" else int(quota) / int(period or 100_000)
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        return None if quota <= 0 else quota / int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None


def usable_cores() -> int:
    """Cores this process may run on: its affinity, capped by a cgroup CPU quota (rounded up)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit is not None:
        cores = min(cores, max(1, math.ceil(limit)))
    return max(1, cores)


def usable_core_ids() -> list[int]:
    """The cores the harness may compute on: its CPU affinity, cut to a cgroup CPU quota (a container's
    ``--cpus 2`` on a 64-core host means two cores, not 64 threads fighting over two). What a server engine
    binds its compute threads to."""
    try:
        cores = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = list(range(os.cpu_count() or 1))
    return cores[: usable_cores()]


def server_cores(asked: str | None = None) -> list[int]:
    """The cores a server the harness starts computes on: every usable one, or the first N under an explicit
    ``--threads N`` (``asked``: the server environment's ``HARNESS_THREADS``, by default this process's; the
    default thread choice never sets it)."""
    cores = usable_core_ids()
    asked = os.environ.get("HARNESS_THREADS", "") if asked is None else asked
    if asked.isdigit() and 0 < int(asked) < len(cores):
        cores = cores[: int(asked)]
    return cores


def default_choice() -> ThreadChoice:
    """The built-in default, whatever the environment says."""
    return ThreadChoice(usable_cores(), None, "usable cores", adaptive=True)


def choose(threads: int | None = None) -> ThreadChoice:
    """``threads`` when given, else a count already in the environment (``HARNESS_THREADS``, then
    an ``OMP_NUM_THREADS`` that is not the default's own), else the default; an ``OMP_WAIT_POLICY``
    already set is kept."""
    policy = os.environ.get("OMP_WAIT_POLICY") or None
    if threads is not None:
        return ThreadChoice(threads, policy, "--threads")
    inherited_default = os.environ.get(ADAPTIVE_VAR) == "1"
    for var in ("HARNESS_THREADS",) + (() if inherited_default else ("OMP_NUM_THREADS",)):
        raw = os.environ.get(var, "")
        if raw.isdigit() and int(raw) > 0:
            return ThreadChoice(int(raw), policy, var)
    default = default_choice()
    return ThreadChoice(default.threads, policy, default.source, adaptive=True)


def configure(threads: int | None = None) -> ThreadChoice:
    """Apply the choice to this process (through the environment, and torch when it is already
    imported) so that every process it starts inherits it. The CLI calls it first thing."""
    choice = choose(threads)
    os.environ.update(choice.environment())
    torch = sys.modules.get("torch")
    if torch is not None:  # imported already (an embedding program, the tests): tell it directly
        torch.set_num_threads(choice.threads)
    return choice


def for_children() -> None:
    """Before starting a worker process: put the choice in the environment it inherits, where the
    CLI has not already (a program that embeds the harness). This process's torch is left alone."""
    for var, value in choose().environment().items():
        os.environ.setdefault(var, value)


def in_effect() -> dict[str, object]:
    """What this process's timings were taken with, for profiles: torch's thread count and the
    OpenMP wait policy (read by OpenMP when torch was imported)."""
    torch = sys.modules.get("torch")
    return {
        "cpu_threads": torch.get_num_threads() if torch is not None else None,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY") or "unset (OpenMP's default: spin, then sleep)",
    }


def _own_running() -> int:
    """This process's threads that are runnable right now."""
    count = 0
    try:
        for tid in os.listdir("/proc/self/task"):
            try:
                stat = Path(f"/proc/self/task/{tid}/stat").read_text()
            except OSError:
                continue
            if stat[stat.rindex(")") + 2] == "R":
                count += 1
    except OSError:
        return 1
    return max(1, count)


def _others_now() -> int:
    try:
        running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return 0
    return max(0, running - _own_running())


#: (when load from other processes was last confirmed, how much): a confirmation holds this long
_confirmed: list[float] = [float("-inf"), 0.0]
CONFIRM_FOR = 0.5
CONFIRM_SAMPLES, CONFIRM_GAP = 6, 0.005


def others_running() -> int:
    """Runnable tasks of other processes right now: ``/proc/loadavg``'s running count less this
    process's own (0 where ``/proc`` is not there).

    One read when nothing else runs. Load seen once is confirmed over 30 ms (the least of a few
    reads), because another process's OpenMP threads spin for milliseconds after their work ends
    and are no load; a confirmation holds for half a second, so a steady competitor costs one
    confirmation per half second, not per batch."""
    now = _others_now()
    if now == 0:
        return 0
    if time.monotonic() - _confirmed[0] < CONFIRM_FOR:
        return min(now, int(_confirmed[1]) or now)
    least = now
    for _ in range(CONFIRM_SAMPLES - 1):
        time.sleep(CONFIRM_GAP)
        least = min(least, _others_now())
        if least == 0:
            return 0
    _confirmed[:] = [time.monotonic(), float(least)]
    return least


def adapt() -> int | None:
    """Under the default choice, give torch the usable cores that no other process is running on
    right now (at least one); called before each generation batch and training step. An explicit
    ``--threads`` is never changed. Returns the count set, or None when the count is not adaptive."""
    if os.environ.get(ADAPTIVE_VAR) != "1":
        return None
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    cores = usable_cores()
    want = max(1, cores - others_running())
    if torch.get_num_threads() != want:
        torch.set_num_threads(want)
    return want
