"""How many CPU threads torch uses, and how its OpenMP threads wait: one choice for every process.

torch's own default (one OpenMP thread per core, spinning while it waits for work) is fast on
an idle machine and a trap on a shared one: a thread that spins on a core another process
needs keeps the whole parallel region waiting, and evaluating the tiny model went from about
1 s to 25-60 s with one other job on two cores (tests/perf/test_perf_threads.py measures it).
The default here cannot oversubscribe that way:

- threads: the cores this process may really use (its CPU affinity, lowered to a cgroup CPU
  quota when one is set: a container's ``--cpus 2`` on a 64-core host means 2, not 64);
- ``OMP_WAIT_POLICY=PASSIVE``: an OpenMP thread with no work sleeps instead of spinning, so a
  busy core slows the run in proportion instead of stalling every parallel region.

``--threads N`` / ``HARNESS_THREADS`` still choose the count; an ``OMP_WAIT_POLICY`` already in
the environment is kept. The choice goes through the environment, before torch is imported,
so every process the harness starts (isolated sweep cells, fresh evaluation processes, Ray
workers on this machine) inherits it; profiles record it (``cpu_threads``, ``omp_wait_policy``).
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

#: the variables the choice is written to (torch reads the first two when it is imported)
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "HARNESS_THREADS")
WAIT_POLICY = "PASSIVE"


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    wait_policy: str
    #: "--threads" (asked for), or "usable cores" (the default)
    source: str

    def environment(self) -> dict[str, str]:
        """The variables a process needs to run with this choice."""
        return {**{var: str(self.threads) for var in THREAD_VARS}, "OMP_WAIT_POLICY": self.wait_policy}


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
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


def default_choice() -> ThreadChoice:
    """The built-in default, whatever the environment says."""
    return ThreadChoice(usable_cores(), WAIT_POLICY, "usable cores")


def choose(threads: int | None = None) -> ThreadChoice:
    """``threads`` when given, else a count already in the environment (``HARNESS_THREADS``, then
    ``OMP_NUM_THREADS``), else the default; an ``OMP_WAIT_POLICY`` already set is kept."""
    policy = os.environ.get("OMP_WAIT_POLICY") or WAIT_POLICY
    if threads is not None:
        return ThreadChoice(threads, policy, "--threads")
    for var in ("HARNESS_THREADS", "OMP_NUM_THREADS"):
        raw = os.environ.get(var, "")
        if raw.isdigit() and int(raw) > 0:
            return ThreadChoice(int(raw), policy, var)
    return ThreadChoice(default_choice().threads, policy, default_choice().source)


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
