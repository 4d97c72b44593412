"""Generation engines without vLLM: the interface, refusals, identity, and the server lifecycle.

Server behaviour (health timeout, a server that dies mid-evaluation, SIGKILL of the harness) is
tested against ``tests/fake_openai_server.py``, a stdlib stand-in started exactly as the vllm
engine starts vLLM (``tests/fake_vllm/python`` plays the vLLM environment's Python); the same
paths with the real vLLM are in ``test_engines_vllm.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import cli

HERE = Path(__file__).parent
FAKE_PYTHON = HERE / "fake_vllm" / "python"


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def fake_vllm(monkeypatch):
    """``--vllm-python`` for the fake server (run by this interpreter)."""
    monkeypatch.setenv("HARNESS_FAKE_INTERPRETER", sys.executable)
    return str(FAKE_PYTHON)


def fake_servers(marker: str) -> list:
    import psutil

    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "fake_openai_server.py" in cmd and marker in cmd:
            out.append(p)
    return out


# -- identity ---------------------------------------------------------------------------------------


def test_default_engine_keeps_run_ids_and_labels():
    """Ids computed by the code before engines existed (HEAD's config.py): unchanged for hf."""
    from harness.core.config import RunConfig

    assert RunConfig().run_id == "5d2816ab6c43b45c"
    assert RunConfig(strategy="gptq", bits=4, limit=50).run_id == "1632e3b59162fc4b"
    assert RunConfig(strategy="gptq", bits=4).label == "tiny-arith base gptq W4A16"
    vllm = RunConfig(strategy="gptq", bits=4, engine="vllm")
    assert vllm.run_id != RunConfig(strategy="gptq", bits=4).run_id
    assert vllm.label == "tiny-arith base gptq W4A16 (vllm)"
    # where the server is and which python starts it do not change a result; server options do
    assert RunConfig(engine="vllm", engine_url="http://x", engine_python="/p").run_id == RunConfig(engine="vllm").run_id
    assert RunConfig(engine="vllm", engine_opts=(("dtype", "bfloat16"),)).run_id != RunConfig(engine="vllm").run_id
    assert RunConfig.from_dict(vllm.to_dict()) == vllm


def test_engines_are_plugins_with_declared_formats():
    from harness.core import hookspecs
    from harness.core.plugin_manager import get_registry

    engines = get_registry().engines
    assert {"hf", "vllm", "openai"} <= set(engines.names())
    assert engines.owners["vllm"] == "vllm"
    assert "register_engines" in dir(hookspecs) and hookspecs.register_engines.__doc__
    assert engines.get("hf").accepts("bitsandbytes")
    assert not engines.get("vllm").accepts("bitsandbytes")
    assert engines.get("vllm").accepts("compressed-tensors-w8a8")


@pytest.mark.parametrize("strategy, bits, extra, fmt", [
    ("none", None, (), "transformers"),
    ("bnb", 4, (), "bitsandbytes"),
    ("gptq", 4, (), "compressed-tensors"),
    ("smoothquant", 8, ("--act-bits", "8"), "compressed-tensors-w8a8"),
    ("gptq", 4, ("--kv-bits", "4"), "compressed-tensors-int-kv"),
    ("quarot", 4, (), "compressed-tensors-transforms"),
    ("rtn", 4, ("--act-bits", "4"), "compressed-tensors-int4-activations"),
    ("rtn", 8, ("--act-bits", "8"), "compressed-tensors-w8a8-grouped"),
])
def test_strategies_declare_their_artifact_format(strategy, bits, extra, fmt):
    from harness.cli.options import build_config
    from harness.core.plugin_manager import get_registry

    registry = get_registry()
    s = registry.strategies.get(strategy)
    act = int(extra[1]) if extra and extra[0] == "--act-bits" else 16
    kv = int(extra[1]) if extra and extra[0] == "--kv-bits" else 16
    spec = s.spec(bits, act, kv)
    assert s.artifact_format_for(spec, s.make_options({})) == fmt
    assert build_config  # the CLI builds the same RunConfig fields


# -- refusals before anything starts ----------------------------------------------------------------


def test_unknown_engine_lists_the_names(tmp_path):
    result = invoke("run", "--engine", "vlm", "--store", str(tmp_path / "r.db"))
    assert result.exit_code == 2
    assert "unknown engine 'vlm'" in result.output and "Did you mean 'vllm'" in result.output
    assert "hf, llamacpp, openai, vllm" in result.output


@pytest.mark.parametrize("strategy, args, fmt", [
    ("bnb", ("--bits", "4"), "bitsandbytes"),
    ("quarot", ("--bits", "4"), "compressed-tensors-transforms"),
    ("gptq", ("--bits", "4", "--kv-bits", "4"), "compressed-tensors-int-kv"),
])
def test_vllm_refuses_formats_it_cannot_run_before_anything_starts(strategy, args, fmt, tmp_path, fake_vllm):
    store, cache = tmp_path / "r.db", tmp_path / "cache"
    result = invoke("run", "--engine", "vllm", "--vllm-python", fake_vllm, "--strategy", strategy, *args,
                    "--store", str(store), "--cache-dir", str(cache))
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert f"engine 'vllm' cannot run '{fmt}' artifacts" in lines[0] and "engines that can: hf" in lines[0]
    assert not store.exists() and not (cache / "artifacts").exists()


def test_no_vllm_environment_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_VLLM_PYTHON", str(tmp_path / "nowhere" / "python"))
    result = invoke("run", "--engine", "vllm", "--store", str(tmp_path / "r.db"))
    assert result.exit_code == 2
    assert "no vLLM environment found" in result.output
    assert str(tmp_path / "nowhere" / "python") in result.output and "HARNESS_VLLM_PYTHON=" in result.output
    assert ".venv-vllm" in result.output


def test_engine_url_that_does_not_answer(tmp_path):
    from harness.engines.server import free_port

    url = f"http://127.0.0.1:{free_port()}"
    result = invoke("run", "--engine", "openai", "--engine-url", url, "--store", str(tmp_path / "r.db"))
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert f"the server at {url} does not answer" in result.output
    assert not (tmp_path / "r.db").exists()


# -- the server lifecycle ---------------------------------------------------------------------------


def test_health_timeout_shows_the_log_and_stops_the_server(tmp_path, fake_vllm, monkeypatch):
    monkeypatch.setenv("FAKE_NEVER_HEALTHY", "1")
    monkeypatch.setenv("HARNESS_ENGINE_START_TIMEOUT", "4")
    cache = tmp_path / "cache"
    result = invoke("run", "--engine", "vllm", "--vllm-python", fake_vllm, "--limit", "2",
                    "--store", str(tmp_path / "r.db"), "--cache-dir", str(cache))
    assert result.exit_code == 2
    assert "did not become healthy within 4 s" in result.output
    assert "fake server on 127.0.0.1" in result.output  # the log's last lines
    time.sleep(0.5)
    assert fake_servers(str(cache)) == []


def run_harness(tmp_path, fake_vllm, *args, env=None, **popen):
    cmd = [sys.executable, "-m", "harness.cli", "run", "--engine", "vllm", "--vllm-python", fake_vllm,
           "--store", str(tmp_path / "r.db"), "--cache-dir", str(tmp_path / "cache"), *args]
    return subprocess.Popen(cmd, env={**os.environ, "HARNESS_FAKE_INTERPRETER": sys.executable, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def stored(tmp_path) -> int:
    import sqlite3

    if not (tmp_path / "r.db").exists():
        return 0
    with sqlite3.connect(tmp_path / "r.db") as db:
        try:
            return db.execute("select count(*) from samples").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def test_server_dying_mid_evaluation_keeps_samples_and_rerun_resumes(tmp_path, fake_vllm):
    proc = run_harness(tmp_path, fake_vllm, "--limit", "30", "--batch-size", "4", env={"FAKE_DIE_AFTER": "13"})
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 2, out
    assert "server died during the evaluation" in out and "run the same command to resume" in out
    kept = stored(tmp_path)
    assert 8 <= kept < 30, out
    proc = run_harness(tmp_path, fake_vllm, "--limit", "30", "--batch-size", "4", "--json")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert f"resuming, {kept} of 30 samples already stored" in out
    assert stored(tmp_path) == 30


@pytest.mark.parametrize("how", ["harness-only", "process-group"])
def test_killing_the_harness_leaves_no_server(tmp_path, fake_vllm, how):
    """SIGKILL of the harness alone (PR_SET_PDEATHSIG) and of its whole process group."""
    proc = run_harness(tmp_path, fake_vllm, "--limit", "80", "--batch-size", "2", env={"FAKE_DELAY_S": "0.3"},
                       start_new_session=True)
    marker = str(tmp_path / "cache")
    deadline = time.time() + 240
    while time.time() < deadline and not (fake_servers(marker) and stored(tmp_path) >= 2):
        time.sleep(0.5)
    servers = fake_servers(marker)
    assert servers, "the fake server never started"
    if how == "harness-only":
        proc.send_signal(signal.SIGKILL)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    import psutil

    _, alive = psutil.wait_procs(servers, timeout=10)
    assert alive == [], f"server left behind: {[p.pid for p in alive]}"
    kept = stored(tmp_path)
    assert 2 <= kept < 80
    rerun = run_harness(tmp_path, fake_vllm, "--limit", "80", "--batch-size", "64")
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out
    assert f"resuming, {kept} of 80 samples already stored" in out and stored(tmp_path) == 80


def test_openai_engine_evaluates_and_profiles_through_the_server(tmp_path, monkeypatch):
    """--engine openai against a running server: samples, metrics, and a profile from the server."""
    import json

    from harness.engines.server import ServerProcess, free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    from harness.engines.openai import CompletionsClient

    client = CompletionsClient(url)
    with ServerProcess([sys.executable, str(HERE / "fake_openai_server.py"), "--port", str(port)],
                       name="fake server", log_path=tmp_path / "fake.log", health=client.healthy):
        result = invoke("run", "--engine", "openai", "--engine-url", url, "--limit", "6", "--json",
                        "--store", str(tmp_path / "r.db"), "--cache-dir", str(tmp_path / "cache"))
    client.close()
    assert result.exit_code == 0, result.output
    data = json.loads(result.output[result.output.index("{"):])
    assert data["label"] == "tiny-arith base none bf16 (openai)"
    assert data["metrics"]["arith"]["samples"]["value"] == 6
    prof = data["profile"]
    assert prof["engine"] == "openai" and prof["engine_version"] == "fake-1"
    for key in ("bs1_ttft_p50_ms", "bs1_itl_p95_ms", "batch_ttft_p95_ms", "batch_tokens_per_s", "eval_tokens_per_s"):
        assert prof[key] and prof[key] > 0, key
    assert prof["kv_cache_capacity_tokens"] == 64 and prof["kv_cache_usage_peak"] == 0.25
    assert prof["latency_gen_tokens"] == 32
    from harness.toolkit.profile_keys import PROFILE_KEYS

    assert set(prof) <= set(PROFILE_KEYS), set(prof) - set(PROFILE_KEYS)  # every figure is documented


def test_a_request_dropped_on_a_kept_alive_connection_is_sent_again(tmp_path, monkeypatch):
    """A server that closes a reused connection as the request arrives (uvicorn's keep-alive race) costs a resend,
    not the run; a connection idle longer than the client's expiry is not reused at all."""
    import httpx

    from harness.engines import openai as openai_engine
    from harness.engines.server import ServerProcess, free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    client = openai_engine.CompletionsClient(url)
    monkeypatch.setenv("FAKE_DROP_REUSED", "1")
    with ServerProcess([sys.executable, str(HERE / "fake_openai_server.py"), "--port", str(port)],
                       name="fake server", log_path=tmp_path / "fake.log", health=client.healthy):
        first = client.complete("What is 2 + 3?", 16)
        second = client.complete("What is 4 + 5?", 16)  # goes out on the first one's kept-alive connection
        _, chunks, tokens = client.stream("What is 1 + 1?", 16)
        dropped = httpx.get(f"{url}/dropped").json()["dropped"]
        plain = httpx.Client(base_url=url)  # httpx's own 5 s expiry and no resend: the race this guards against
        plain.post("/v1/completions", json=client.body("What is 1 + 2?", 16, 0.0, 1.0, None))
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            plain.post("/v1/completions", json=client.body("What is 1 + 2?", 16, 0.0, 1.0, None))
        plain.close()
    client.close()
    assert "boxed{5}" in first.text and "boxed{9}" in second.text
    assert tokens == len(chunks) > 0
    assert dropped == 2  # the second completion and the stream were each dropped once, then answered
    assert openai_engine.KEEPALIVE_EXPIRY_S < 5.0  # below uvicorn's (vLLM's) keep-alive


def test_metrics_and_kernel_parsing():
    from harness.engines.serving_profile import (
        kernels_from_log,
        kv_metrics,
        parse_metrics,
    )

    text = ('# HELP x\nvllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.5\n'
            'vllm:cache_config_info{block_size="128",cache_dtype="fp8",kv_cache_memory_bytes="1073741824",'
            'kv_cache_size_tokens="262144"} 1.0\n')
    kv = kv_metrics(parse_metrics(text))
    assert kv == {"kv_cache_usage": 0.5, "kv_cache_capacity_bytes": 1073741824, "kv_cache_capacity_tokens": 262144,
                  "kv_cache_dtype": "fp8", "kv_block_size": 128}
    log = ("INFO [compressed_tensors_wNa16.py:138] Using CPUWNA16LinearKernel for CompressedTensorsWNA16\n"
           "INFO Selected CPUInt8ScaledMMLinearKernel for CompressedTensorsW8A8Int8\n")
    assert kernels_from_log(log) == ["CPUInt8ScaledMMLinearKernel", "CPUWNA16LinearKernel"]


# -- the hf engine ----------------------------------------------------------------------------------


def test_hf_engine_gives_the_same_samples_and_profile_keys_as_before(tmp_path):
    """Through the engine interface the pipeline stores exactly what transformers.generate gives."""
    from harness.base.model import load_tokenizer
    from harness.core.config import RunConfig, Sampling
    from harness.core.plugin_manager import get_registry
    from harness.core.prompts import get_template
    from harness.runs.cache import ArtifactCache
    from harness.runs.pipeline import Runner
    from harness.runs.planning import plan
    from harness.runs.store import Store
    from harness.toolkit.generation import generate

    the_plan = plan(RunConfig(limit=12, device="cpu", batch_size=5), get_registry())
    runner = Runner(Store(tmp_path / "r.db"), ArtifactCache(tmp_path / "cache"))
    result = runner.run(the_plan)
    model_dir, _ = runner.materialize(the_plan, the_plan.config.run_id)
    model, tok = the_plan.strategy.load(model_dir, "cpu"), load_tokenizer(model_dir)
    template = get_template("boxed")
    problems = the_plan.problems["arith"]
    direct = generate(model, tok, [template.render(p.problem, tok) for p in problems], Sampling(), batch_size=5)
    rows = {r["problem_id"]: r for r in runner.store.samples(the_plan.config.run_id, "arith")}
    assert [rows[p.id]["completion"] for p in problems] == [d[0].text for d in direct]
    assert [rows[p.id]["n_tokens"] for p in problems] == [d[0].n_tokens for d in direct]
    before = {"device", "weight_bytes", "fp_bytes", "in_memory_bytes", "peak_rss_bytes", "kv_bytes_per_token",
              "eval_tokens_per_s", "eval_forward_share", "bs1_ttft_ms", "bs1_decode_tokens_per_s",
              "bs1_latency_p50_ms", "batch_latency_p95_ms", "batch_decode_tokens_per_s", "cpu_threads"}
    prof = result["profile"]
    assert before <= set(prof) and prof["engine"] == "hf" and prof["kernels"] == ["Linear"]
    assert prof["quant_method"] is None
    from harness.toolkit.profile_keys import PROFILE_KEYS

    assert set(prof) <= set(PROFILE_KEYS), set(prof) - set(PROFILE_KEYS)


def test_a_run_that_trained_here_evaluates_in_a_fresh_process(tmp_path, monkeypatch):
    """The evaluation and profile of a process that trained run in a spawned one."""
    import harness.runs.evaluate as stage
    from harness.core.config import RunConfig
    from harness.core.plugin_manager import get_registry
    from harness.runs.cache import ArtifactCache
    from harness.runs.pipeline import Runner
    from harness.runs.planning import plan
    from harness.runs.provenance import git_commit, versions
    from harness.runs.store import Store

    the_plan = plan(RunConfig(limit=4, device="cpu"), get_registry())
    run_id = the_plan.config.run_id
    runner = Runner(Store(tmp_path / "r.db"), ArtifactCache(tmp_path / "cache"))
    model_dir, artifacts = runner.materialize(the_plan, run_id)
    runner.store.start_run(run_id, the_plan.config.label, the_plan.config.to_dict(), versions(the_plan), git_commit())
    here = []
    monkeypatch.setattr(stage, "evaluate_here", lambda *a, **k: here.append(a))  # only the child may evaluate
    stage.evaluate_and_profile(the_plan, model_dir, artifacts, runner.destination(run_id), fresh_process=True)
    assert here == []
    assert len(runner.store.samples(run_id, "arith")) == 4
    assert runner.store.profile(run_id)["engine"] == "hf"
