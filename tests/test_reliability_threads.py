"""Issue 16 item 8: a thread default that cannot oversubscribe (the timing is in tests/perf/test_perf_threads.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.base import threads
from harness.base.threads import cgroup_cpu_limit, choose, default_choice, usable_cores


def _cgroup(tmp_path: Path, proc_line: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    proc = tmp_path / "proc-cgroup"
    proc.write_text(proc_line + "\n")
    return root, proc


def test_cgroup_v2_quota_is_read_and_the_tightest_level_counts(tmp_path):
    root, proc = _cgroup(tmp_path, "0::/jobs/agent", {
        "jobs/cpu.max": "150000 100000\n",  # the parent allows 1.5 CPUs
        "jobs/agent/cpu.max": "max 100000\n",
    })
    assert cgroup_cpu_limit(root, proc) == 1.5
    root, proc = _cgroup(tmp_path / "b", "0::/", {"cpu.max": "max 100000\n"})
    assert cgroup_cpu_limit(root, proc) is None


def test_cgroup_v1_quota_is_read(tmp_path):
    root, proc = _cgroup(tmp_path, "4:cpu,cpuacct:/docker/abc", {
        "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "300000\n",
        "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
    })
    assert cgroup_cpu_limit(root, proc) == 3.0
    root, proc = _cgroup(tmp_path / "u", "4:cpu,cpuacct:/", {
        "cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
    })
    assert cgroup_cpu_limit(root, proc) is None


def test_usable_cores_is_affinity_capped_by_the_quota(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: 2.5)
    assert usable_cores() == 3
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: None)
    assert usable_cores() == 8


def test_the_default_is_usable_cores_and_adaptive(monkeypatch):
    for var in ("HARNESS_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", threads.ADAPTIVE_VAR):
        monkeypatch.delenv(var, raising=False)
    choice = choose()
    assert choice == default_choice()
    assert choice.threads == usable_cores() and choice.adaptive and choice.wait_policy is None
    assert choose(3).threads == 3 and not choose(3).adaptive  # --threads decides, and fixes it
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    assert choose().wait_policy == "PASSIVE"  # a policy the user set is kept
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert choose().threads == 5 and choose().source == "OMP_NUM_THREADS" and not choose().adaptive
    # the default's own OMP_NUM_THREADS, inherited by a child process, stays the adaptive default
    monkeypatch.setenv(threads.ADAPTIVE_VAR, "1")
    assert choose().adaptive and choose().threads == usable_cores()


@pytest.fixture
def clean_env(monkeypatch):
    """The CLI writes its choice to os.environ (for the processes it starts); undo that after."""
    for var in ("HARNESS_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", threads.ADAPTIVE_VAR):
        monkeypatch.delenv(var, raising=False)
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_the_cli_applies_the_default_for_itself_and_its_children(clean_env):
    from harness.cli import cli

    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    assert os.environ[threads.ADAPTIVE_VAR] == "1" and "OMP_WAIT_POLICY" not in os.environ
    assert os.environ["OMP_NUM_THREADS"] == str(usable_cores())
    result = CliRunner().invoke(cli, ["--threads", "1", "plugins", "--json"])
    assert result.exit_code == 0 and os.environ["OMP_NUM_THREADS"] == os.environ["HARNESS_THREADS"] == "1"
    assert os.environ[threads.ADAPTIVE_VAR] == "0"


def test_process_starters_hand_the_choice_down_without_overriding_it(clean_env, monkeypatch):
    threads.for_children()
    assert os.environ[threads.ADAPTIVE_VAR] == "1" and os.environ["OMP_NUM_THREADS"] == str(usable_cores())
    monkeypatch.setenv("HARNESS_THREADS", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads.for_children()
    assert os.environ["OMP_NUM_THREADS"] == "1"


def test_the_adaptive_count_gives_way_to_other_processes_and_a_fixed_one_never_moves(clean_env, monkeypatch):
    import torch

    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setenv(threads.ADAPTIVE_VAR, "1")
    monkeypatch.setattr(threads, "others_running", lambda: 0)
    assert threads.adapt() == 2 and torch.get_num_threads() == 2
    monkeypatch.setattr(threads, "others_running", lambda: 1)
    assert threads.adapt() == 1 and torch.get_num_threads() == 1
    monkeypatch.setattr(threads, "others_running", lambda: 5)
    assert threads.adapt() == 1  # never below one
    monkeypatch.setenv(threads.ADAPTIVE_VAR, "0")
    torch.set_num_threads(2)
    assert threads.adapt() is None and torch.get_num_threads() == 2


def test_other_processes_are_counted_and_this_ones_threads_are_not():
    """A CPU-burning child is one runnable task of another process; this process is not load."""
    import multiprocessing
    import time

    quiet = threads.others_running()
    burner = multiprocessing.get_context("spawn").Process(target=_spin, args=(3.0,), daemon=True)
    burner.start()
    try:
        time.sleep(1.0)
        busy = max(threads.others_running() for _ in range(5))
    finally:
        burner.terminate()
        burner.join()
    assert busy >= 1 and busy >= quiet


def _spin(seconds: float) -> None:
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_profiles_record_the_wait_policy(clean_env):
    from harness.toolkit.profile_keys import PROFILE_KEYS

    threads.configure(2)
    figures = threads.in_effect()
    assert figures == {"cpu_threads": 2, "omp_wait_policy": "unset (OpenMP's default: spin, then sleep)"}
    assert {"cpu_threads", "omp_wait_policy"} <= set(PROFILE_KEYS)
