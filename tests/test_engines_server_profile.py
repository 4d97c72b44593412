"""The served profile against the stand-in server (``tests/fake_openai_server.py``): one decode figure, progress in
every phase, a budget for the concurrent phase, and the cores the engine computed on.

The stand-in streams tokens at a cadence the test sets (``FAKE_TOKEN_S``; ``FAKE_CONCURRENT_TOKEN_S`` while several
streams run, a server slow under load), so the figures have known values.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent
FAKE_PYTHON = HERE / "fake_vllm" / "python"


def profile(tmp_path, *args, env=None, timeout=240) -> tuple[dict, str, float]:
    """``harness profile --engine vllm`` on the stand-in: (the profile, stderr, seconds it took)."""
    cmd = [sys.executable, "-m", "harness.cli", "profile", "--engine", "vllm", "--vllm-python", str(FAKE_PYTHON),
           "--device", "cpu", "--json", "--store", str(tmp_path / "r.db"), "--cache-dir", str(tmp_path / "cache"),
           *args]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HARNESS_FAKE_INTERPRETER": sys.executable, **(env or {})})
    took = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)["profile"], done.stderr, took


def test_batch_one_decode_rate_and_inter_token_latency_agree_at_a_known_cadence(tmp_path):
    """Tokens every 50 ms: 20 tokens/s, 50 ms apart, and 1000 / ITL equals the decode rate (same arrivals), even
    from a server that takes 0.5 s to end a response after its last token (usage, detokenization)."""
    prof, _, _ = profile(tmp_path, "--gen-length", "12", "--requests", "3", "--batch-size", "2",
                         env={"FAKE_TOKEN_S": "0.05", "FAKE_TAIL_S": "0.5"})
    decode, itl = prof["bs1_decode_tokens_per_s"], prof["bs1_itl_p50_ms"]
    assert decode == pytest.approx(20, rel=0.2), prof
    assert itl == pytest.approx(50, rel=0.2), prof
    # one figure, not two measurements: 1000 / decode rate is the mean gap, inside the run's spread of gaps
    # (a rate timed to the response's end would put it near 95 ms here)
    assert 0.9 * itl <= 1000 / decode <= 1.1 * prof["bs1_itl_p95_ms"], prof
    assert prof["batch_rounds"] == 2 and prof["batch_gen_tokens"] == 12 and prof["batch_cut"] is None


def test_every_phase_prints_progress_and_the_budget_cuts_the_concurrent_phase(tmp_path):
    """A server that takes 2 s to become healthy and is slow under load (0.4 s per token with two streams): a
    progress line in the start, batch-1 and concurrent phases, and a 4 s budget that cuts the concurrent phase
    (2 rounds x 24 tokens would take ~30 s) and says so in the profile."""
    env = {"HARNESS_PROGRESS_INTERVAL": "0.5", "FAKE_HEALTHY_AFTER_S": "2", "FAKE_TOKEN_S": "0.01",
           "FAKE_CONCURRENT_TOKEN_S": "0.4", "HARNESS_PROFILE_BATCH_BUDGET_S": "4"}
    prof, err, took = profile(tmp_path, "--gen-length", "24", "--requests", "2", "--batch-size", "2", env=env)
    assert "waiting for the server to become healthy" in err, err
    assert "profile batch size 1:" in err and "profile 2 concurrent requests:" in err, err
    assert prof["batch_budget_s"] == 4
    assert prof["batch_cut"] and "budget 4 s" in prof["batch_cut"], prof
    assert prof["batch_rounds"] == 1 and prof["batch_gen_tokens"] < 24, prof
    assert prof["batch_itl_p50_ms"] == pytest.approx(400, rel=0.25), prof  # still measured, on what ran
    assert took < 30, f"the profile took {took:.0f} s"  # start ~3 s, batch-1 ~1 s, the budget 4 s, imports


def test_the_profile_names_the_cores_the_server_computes_on(tmp_path):
    """The stand-in is one process: its threads' affinity is every core the harness may use."""
    from harness.engines.server import id_list

    prof, _, _ = profile(tmp_path, "--gen-length", "4", "--requests", "1", "--batch-size", "2")
    assert prof["engine_cpu_binding"] == id_list(os.sched_getaffinity(0))
    assert prof["engine_threads"] is None  # no vLLM binding report in the stand-in's log


def test_vllm_binds_its_worker_to_every_core_unless_the_user_binds(monkeypatch):
    from harness.base.threads import usable_core_ids as harness_cores
    from harness.engines.server import id_list
    from harness.engines.vllm import BIND_VAR, RESERVED_VAR, VLLMEngine, cpu_binding

    monkeypatch.delenv(BIND_VAR, raising=False)
    monkeypatch.delenv(RESERVED_VAR, raising=False)
    monkeypatch.delenv("HARNESS_THREADS", raising=False)
    assert id_list([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8" and id_list([3]) == "3"
    assert set(harness_cores()) <= os.sched_getaffinity(0)
    every = str(len(harness_cores()))
    assert cpu_binding({}) == {BIND_VAR: id_list(harness_cores()), "OMP_NUM_THREADS": every, "MKL_NUM_THREADS": every}
    # the harness's own thread choice in the environment (its CLI sets it, 1 on a busy machine) never shrinks the
    # server's threads: MKL_NUM_THREADS=1 alone would run every GEMM of vLLM's worker on one core
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    assert VLLMEngine().environment(sys.executable, "cpu")["OMP_NUM_THREADS"] == every
    assert VLLMEngine().environment(sys.executable, "cpu")["MKL_NUM_THREADS"] == every
    assert VLLMEngine().environment(sys.executable, "cpu")[BIND_VAR] == id_list(harness_cores())
    assert BIND_VAR not in VLLMEngine().environment(sys.executable, "cuda:0")
    # an explicit --threads N (the CLI writes HARNESS_THREADS only then) binds the server to N of the cores
    one = cpu_binding({"HARNESS_THREADS": "1"})
    assert one == {BIND_VAR: id_list(harness_cores()[:1]), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    assert cpu_binding({"HARNESS_THREADS": "999"}) == cpu_binding({})
    # the user's binding wins, whichever of vLLM's two variables they set
    assert cpu_binding({BIND_VAR: "auto"}) == {} and cpu_binding({RESERVED_VAR: "1"}) == {}
    monkeypatch.setenv(BIND_VAR, "auto")
    assert VLLMEngine().environment(sys.executable, "cpu")[BIND_VAR] == "auto"


def test_prompt_logprobs_become_token_scores():
    """vLLM's answer lists the top k by rank and the prompt's own token beside them when it ranks lower."""
    from harness.engines.openai import EngineError
    from harness.engines.vllm import prompt_scores

    entries = [None, {"5": {"logprob": -0.1, "rank": 1}},
               {"7": {"logprob": -0.5, "rank": 1}, "8": {"logprob": -1.0, "rank": 2},
                "9": {"logprob": -4.0, "rank": 9}},
               {"4": {"logprob": -0.2, "rank": 1}, "3": {"logprob": -2.0, "rank": 2}}]
    scores = prompt_scores(entries, 2, [9, 3], k=2)
    assert scores.targets == [9, 3] and scores.target_logprobs == [-4.0, -2.0]
    assert scores.top == [{7: -0.5, 8: -1.0}, {4: -0.2, 3: -2.0}]
    with pytest.raises(EngineError, match="prompt_logprobs"):
        prompt_scores(None, 2, [9, 3], k=2)
