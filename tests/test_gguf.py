"""GGUF and llama.cpp (issue 32): the ``gguf`` strategy and the ``llamacpp`` engine.

Without a llama.cpp environment (``HARNESS_LLAMACPP_PYTHON`` or ``.venv-llamacpp``, which
``scripts/setup_llamacpp_env.sh`` builds and CI's ``.ci/run`` builds) only the refusals, the format and the
converter seam are tested; with one, the embedded tokenizers' ids through the converted vocabulary, greedy
agreement with hf per type, the CLI run with its profile, and a kill of the harness mid-evaluation.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.base.errors import UserError
from harness.cli import cli
from harness.compat import llamacpp as converter_seam
from harness.core.config import Sampling
from harness.core.plugin_manager import get_registry
from harness.core.strategy import QuantContext, QuantSpec
from harness.strategies.gguf import GGUF, GGUFFile, GGUFOptions
from harness.tiny import embedded_tokenizer, weights_dir
from harness.toolkit import llamacpp

N_PROBLEMS = 100
#: identical greedy texts against hf per type, the bar each is held to (F32 and Q8_0: the issue's 95%)
AGREEMENT = {"F32": 0.95, "Q8_0": 0.95}


@pytest.fixture(scope="module")
def llamacpp_python() -> str:
    reason = llamacpp.environment_reason()
    if reason:
        pytest.skip(f"no llama.cpp environment: {reason}")
    return llamacpp.ENVIRONMENT.find(None)


# -- without llama.cpp ------------------------------------------------------------------------------------------
def test_types_and_bits():
    assert llamacpp.gguf_type("q4_k_m").name == "Q4_K_M"
    with pytest.raises(UserError, match="unknown GGUF type 'Q9_Z'; choose one of F32, F16, Q8_0"):
        llamacpp.gguf_type("Q9_Z")
    gguf = GGUF()
    assert gguf.kind(QuantSpec(4), GGUFOptions()).name == "Q4_K_M"
    assert gguf.kind(QuantSpec(2), GGUFOptions()).name == "Q2_K"
    assert gguf.kind(QuantSpec(4), GGUFOptions(type="Q4_0")).name == "Q4_0"
    with pytest.raises(UserError, match="GGUF type Q8_0 is 8-bit but the run asks for --bits 4; pass --bits 8"):
        gguf.kind(QuantSpec(4), GGUFOptions(type="Q8_0"))


def test_engines_refuse_what_they_cannot_run(monkeypatch):
    """hf cannot run a GGUF file (transformers would time a dequantized model), llamacpp runs nothing else: one
    line each, naming the engines that can."""
    monkeypatch.setattr(GGUF, "unavailable_reason", lambda self: None)
    hf = CliRunner().invoke(cli, ["run", "--strategy", "gguf", "--engine", "hf", "--limit", "2"])
    assert hf.exit_code == 2 and hf.output.count("\n") == 1
    assert "engine 'hf' cannot run 'gguf' artifacts" in hf.output and "engines that can: llamacpp" in hf.output
    gptq = CliRunner().invoke(cli, ["run", "--strategy", "gptq", "--bits", "4", "--engine", "llamacpp",
                                    "--limit", "2"])
    assert gptq.exit_code == 2 and gptq.output.count("\n") == 1
    assert "engine 'llamacpp' cannot run 'compressed-tensors' artifacts" in gptq.output
    assert "engines that can: hf" in gptq.output and "llamacpp" not in gptq.output.split("engines that can:")[1]
    wrong = CliRunner().invoke(cli, ["run", "--strategy", "gguf", "--strategy-opt", "type=Q8_0", "--engine",
                                     "llamacpp", "--limit", "2"])
    assert wrong.exit_code == 2 and "pass --bits 8" in wrong.output


def test_the_format_claims_a_folder_with_a_gguf_file(tmp_path):
    from harness.core.formats import artifact_format

    for name in ("config.json", "tokenizer.json"):
        (tmp_path / name).write_bytes((weights_dir() / name).read_bytes())
    assert artifact_format(tmp_path) == "transformers"
    (tmp_path / "model-Q4_K_M.gguf").write_bytes(b"GGUF")
    assert artifact_format(tmp_path) == GGUFFile.name and llamacpp.gguf_file(tmp_path).name == "model-Q4_K_M.gguf"


def test_embedded_tokenizers_are_told_by_their_content(tmp_path):
    assert embedded_tokenizer(weights_dir("tiny-arith")) == "tiny-arith"
    assert embedded_tokenizer(weights_dir("tiny-reason")) in ("tiny-reason", "tiny-arith")
    assert embedded_tokenizer(tmp_path) is None


def test_the_converter_seam_checks_the_release(tmp_path):
    with pytest.raises(UserError, match="records no version"):
        converter_seam.converter_version(tmp_path)
    (tmp_path / converter_seam.VERSION_FILE).write_text("0.3.36\n")
    assert converter_seam.converter_version(tmp_path) == "0.3.36"
    (tmp_path / converter_seam.VERSION_FILE).write_text("0.5.0\n")
    with pytest.raises(UserError, match="llama-cpp-python 0.5.0 is not a version the harness knows"):
        converter_seam.converter_version(tmp_path)


def test_the_importance_matrix_option_calibrates_and_is_refused_where_ignored():
    gguf = GGUF()
    assert not gguf.calibrates_with(GGUFOptions()) and gguf.calibrates_with(GGUFOptions(imatrix=True))
    assert gguf.artifact_format_for(QuantSpec(4), GGUFOptions(imatrix=True)) == "gguf"
    with pytest.raises(UserError, match="GGUF type Q8_0 ignores an importance matrix"):
        gguf.artifact_format_for(QuantSpec(8), GGUFOptions(imatrix=True))
    with pytest.raises(UserError, match="num_samples and max_length must be at least 1, got 0"):
        GGUFOptions(imatrix=True, num_samples=0)


def test_calibration_takes_part_in_the_artifact_key_only_with_the_importance_matrix(llamacpp_python):
    """Without the matrix a GGUF file is a function of the weights (every seed is one file); with it, the
    calibration texts' seed, data and prompt are part of the key, as for GPTQ."""
    from harness.core.config import RunConfig
    from harness.core.graph import run_graph
    from harness.runs.planning import plan as plan_run

    def quantize_key(seed: int, *opts: tuple[str, str]) -> str:
        config = RunConfig(strategy="gguf", bits=4, engine="llamacpp", seed=seed, strategy_opts=opts, device="cpu")
        return run_graph(plan_run(config, get_registry())).key("quantize")

    assert quantize_key(0) == quantize_key(1)
    assert quantize_key(0, ("imatrix", "true")) != quantize_key(1, ("imatrix", "true"))


def test_mean_squared_inputs_by_hand():
    import torch
    from torch import nn

    from harness.toolkit.activation_stats import mean_squared_inputs

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 3)
            self.up = nn.Linear(3, 4, bias=False)
            self.down = nn.Linear(4, 2, bias=False)

        def forward(self, input_ids):
            return self.down(torch.relu(self.up(self.embed(input_ids))))

    class Tok:
        def __call__(self, text, return_tensors, truncation, max_length):
            return {"input_ids": torch.tensor([[int(c) for c in text][:max_length]])}

    torch.manual_seed(0)
    model = Two()
    stats, tokens = mean_squared_inputs(model, Tok(), ["123", "45", ""], max_length=8)
    assert tokens == 5 and set(stats) == {"up.weight", "down.weight"}
    with torch.no_grad():
        x = model.embed(torch.tensor([1, 2, 3, 4, 5]))
        h = torch.relu(model.up(x))
    assert stats["up.weight"] == pytest.approx((x * x).mean(0).numpy(), rel=1e-5)
    assert stats["down.weight"] == pytest.approx((h * h).mean(0).numpy(), rel=1e-5)
    # truncation counts the tokens the model saw
    assert mean_squared_inputs(model, Tok(), ["123456"], max_length=2)[1] == 2


# -- with llama.cpp ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def converted(llamacpp_python, tmp_path_factory):
    """``converted(model, type) -> folder``: the ``gguf`` strategy's artifact, made once per (model, type)."""
    from harness.base.model import load_tokenizer

    made: dict[tuple[str, str], Path] = {}

    def make(model: str, kind: str) -> Path:
        if (model, kind) not in made:
            out = tmp_path_factory.mktemp(f"{model}-{kind}")
            spec = QuantSpec(llamacpp.gguf_type(kind).bits)
            report = GGUF().quantize(weights_dir(model), out, QuantContext(
                spec=spec, options=GGUFOptions(type=kind), tokenizer=load_tokenizer(weights_dir(model))))
            assert report.weight_bytes == llamacpp.gguf_file(out).stat().st_size
            assert report.extra["gguf_type"] == kind and report.extra["gguf_pre_tokenizer"] == "qwen2"
            made[(model, kind)] = out
        return made[(model, kind)]

    return make


def test_the_importance_matrix_reaches_every_linear_tensor_and_changes_the_file(llamacpp_python, converted, tmp_path):
    """Calibrated on 16 arith texts, every linear layer of tiny-arith gets its matrix under the file's own tensor
    names, the Q4_K_M file keeps its size and layout, and its quantized blocks differ from the plain file's."""
    from harness.base.model import load_tokenizer

    tok = load_tokenizer(weights_dir())
    problems = get_registry().benchmarks.get("arith").load("train")[:16]
    texts = [p.problem + " " + (p.solution or p.answer) for p in problems]
    report = GGUF().quantize(weights_dir(), tmp_path, QuantContext(
        spec=QuantSpec(4), options=GGUFOptions(imatrix=True, num_samples=16), tokenizer=tok, calibration=texts))
    matrix = report.extra["gguf_imatrix"]
    linear = sum(1 for name, _ in _linear_layers())
    assert matrix["texts"] == 16 and matrix["tokens"] > 16 and matrix["tensors"] == linear
    plain = llamacpp.gguf_file(converted("tiny-arith", "Q4_K_M")).read_bytes()
    weighted = llamacpp.gguf_file(tmp_path).read_bytes()
    assert len(weighted) == len(plain) and weighted != plain


def test_a_gguf_runs_reference_is_the_f32_file_on_the_same_engine(llamacpp_python):
    from harness.core.config import RunConfig
    from harness.runs.planning import plan as plan_run

    q4 = plan_run(RunConfig(strategy="gguf", bits=4, engine="llamacpp", device="cpu", divergence=True),
                  get_registry())
    assert q4.reference is not None and (q4.reference.strategy, q4.reference.bits) == ("gguf", 32)
    assert q4.reference.engine == "llamacpp" and q4.reference.strategy_opts == ()
    # an importance-matrix run of seed 2 (its calibration texts are seeded) shares seed 0's F32 reference: the
    # F32 file takes no calibration and greedy decoding no seed
    weighted = plan_run(RunConfig(strategy="gguf", bits=4, engine="llamacpp", device="cpu", divergence=True, seed=2,
                                  strategy_opts=(("imatrix", "true"),)), get_registry())
    assert weighted.reference.run_id == q4.reference.run_id and weighted.reference.seed == 0
    f32 = plan_run(RunConfig(strategy="gguf", bits=32, engine="llamacpp", device="cpu", divergence=True),
                   get_registry())
    assert f32.reference is None
    assert plan_run(RunConfig(strategy="gguf", bits=4, engine="llamacpp", device="cpu", divergence=False),
                    get_registry()).reference is None


def test_llamacpp_scores_the_f32_file_as_transformers_scores_the_model(llamacpp_python, converted, tmp_path):
    """Teacher-forced through llama.cpp's own forward pass, the F32 GGUF gives transformers' log-probabilities
    position by position (no shift: the continuation's first token is scored from the prompt's last) and the
    same top tokens; empty continuations give empty scores in their place. Measured: at most 0.004 apart (a
    token at -6.5), from llama.cpp's float16 KV cache and its own summation order."""
    from harness.core.engine import EngineSettings
    from harness.engines.hf import HFEngine
    from harness.engines.llamacpp import SCORE_TOP_K, LlamaCppEngine

    pairs = [("What is 12 + 7?", " 12 + 7 = 19. \\boxed{19}"), ("Start at 3.", ""),
             ("Compute 3 * (4 - 1).", " 4 - 1 = 3, 3 * 3 = 9")]
    hf_settings = EngineSettings(device="cpu", strategy=get_registry().strategies.get("none"))
    with HFEngine().start(weights_dir(), hf_settings) as hf:
        exact = list(hf.score(pairs))
    settings = EngineSettings(device="cpu", python=llamacpp_python, extra={"log_dir": str(tmp_path)})
    with LlamaCppEngine().start(converted("tiny-arith", "F32"), settings) as session:
        assert session.score_top_k == SCORE_TOP_K
        got = list(session.score(pairs))
    assert [g.targets for g in got] == [e.targets for e in exact] and got[1].targets == []
    for ours, theirs in ((got[0], exact[0]), (got[2], exact[2])):
        assert ours.target_logprobs == pytest.approx(theirs.target_logprobs, abs=1e-2)
        gaps = [abs(a - b) for a, b in zip(ours.target_logprobs, theirs.target_logprobs)]
        assert sum(gaps) / len(gaps) < 2e-3
        for position, top in enumerate(ours.top):
            assert len(top) == SCORE_TOP_K
            best = int(theirs.full[position].argmax())
            assert max(top, key=top.get) == best
            assert top[best] == pytest.approx(float(theirs.full[position][best]), abs=1e-2)


def _linear_layers():
    from torch import nn

    from harness.base.model import load_model

    model = load_model(weights_dir(), "cpu")
    # tied embeddings: the output layer is the token embedding, a lookup llama.cpp stores once as token_embd
    tied = getattr(model.config, "tie_word_embeddings", False)
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and not (tied and n == "lm_head")]


#: strings whose ids must match: digits, operators, spaces, newlines, the chat markers, non-ASCII
TEXTS = ["What is 12 + 7?", "Compute 3 * (4 - 1). Answer: \\boxed{9}", "  leading spaces\n\nand lines",
         "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", "1234567890 - 0.5 = x", "naïve café ∑ 😀"]


@pytest.mark.parametrize("model", ["tiny-arith", "tiny-reason"])
def test_the_converted_vocabulary_splits_text_as_transformers_does(model, converted, llamacpp_python):
    from harness.base.model import load_tokenizer

    folder = converted(model, "Q8_0")
    code = ("import json, sys, llama_cpp\n"
            "m = llama_cpp.Llama(model_path=sys.argv[1], vocab_only=True, verbose=False)\n"
            "print(json.dumps([m.tokenize(t.encode(), add_bos=False, special=True) for t in json.loads(sys.argv[2])]))")
    done = subprocess.run([llamacpp_python, "-c", code, str(llamacpp.gguf_file(folder)), json.dumps(TEXTS)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    tok = load_tokenizer(weights_dir(model))
    assert json.loads(done.stdout) == [tok(t, add_special_tokens=False)["input_ids"] for t in TEXTS]


def _completions(session, prompts) -> list:
    return [c[0] for c in session.generate(prompts, Sampling(max_new_tokens=64), batch_size=8)]


@pytest.fixture(scope="module")
def reference():
    """hf's greedy completions of the first 100 arith test problems (tiny-arith in fp32), and the problems."""
    from harness.base.model import load_tokenizer
    from harness.core.engine import EngineSettings
    from harness.core.prompts import get_template
    from harness.engines.hf import HFEngine

    problems = get_registry().benchmarks.get("arith").load("test")[:N_PROBLEMS]
    tok = load_tokenizer(weights_dir())
    prompts = [get_template("boxed").render(p.problem, tok) for p in problems]
    settings = EngineSettings(device="cpu", strategy=get_registry().strategies.get("none"))
    with HFEngine().start(weights_dir(), settings) as hf:
        return problems, prompts, _completions(hf, prompts)


@pytest.mark.parametrize("kind", ["Q8_0"])
def test_greedy_outputs_agree_with_hf(kind, converted, reference, llamacpp_python, tmp_path):
    """Q8_0 at the issue's bar (95 of 100 identical, accuracy inside hf's interval; add "F32" or "Q4_K_M" to the
    parameters to check those). Measured 2026-12-07 (llama-cpp-python 0.3.36, AVX2): F32 100, Q8_0 99,
    Q4_K_M 84 of 100 identical, accuracy 26% each."""
    from harness.base.metrics import mean_ci
    from harness.core.engine import EngineSettings
    from harness.engines.llamacpp import LlamaCppEngine
    from harness.grading import grade_full, references

    problems, prompts, ref = reference
    settings = EngineSettings(device="cpu", python=llamacpp_python, extra={"log_dir": str(tmp_path)})
    with LlamaCppEngine().start(converted("tiny-arith", kind), settings) as session:
        got = _completions(session, prompts)
    same = sum(a.text == b.text for a, b in zip(ref, got))
    acc = {name: [float(grade_full(c.text, references(q)).correct) for c, q in zip(outs, problems)]
           for name, outs in (("hf", ref), ("llamacpp", got))}
    value, lo, hi = mean_ci(acc["hf"], seed=0)
    record = {"type": kind, "identical": same, "of": len(problems), "hf_accuracy": value, "hf_ci": [lo, hi],
              "llamacpp_accuracy": sum(acc["llamacpp"]) / len(problems)}
    print(record)
    if kind in AGREEMENT:
        assert same >= AGREEMENT[kind] * len(problems), record
        assert lo <= record["llamacpp_accuracy"] <= hi, record


def _server_processes(marker: str) -> list:
    import psutil

    return [p for p in psutil.process_iter(["cmdline"])
            if "llama_cpp.server" in " ".join(p.info["cmdline"] or []) and marker in " ".join(p.info["cmdline"] or [])]


def test_a_run_on_llamacpp_and_a_kill_that_leaves_no_server(llamacpp_python, tmp_path):
    """The issue's command prints accuracy, bytes and a profile the llama.cpp server measured, naming the type
    it loaded; killed mid-evaluation, the harness leaves no server, and the rerun resumes."""
    import psutil

    store, cache = tmp_path / "r.db", tmp_path / "cache"
    cmd = [sys.executable, "-m", "harness.cli", "run", "--strategy", "gguf", "--strategy-opt", "type=Q4_K_M",
           "--engine", "llamacpp", "--llamacpp-python", llamacpp_python, "--limit", "50", "--store", str(store),
           "--cache-dir", str(cache)]

    def stored() -> int:
        try:
            with sqlite3.connect(store) as db:
                return db.execute("select count(*) from samples").fetchone()[0]
        except sqlite3.OperationalError:
            return 0

    with open(tmp_path / "killed.log", "w") as out:
        proc = subprocess.Popen([*cmd, "--batch-size", "1"], stdout=out, stderr=subprocess.STDOUT, env=os.environ)
    try:
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None and stored() < 3:
            time.sleep(0.2)
        tree = _server_processes(str(cache))
        assert proc.poll() is None and tree, "the llama.cpp evaluation never started"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    _, alive = psutil.wait_procs(tree, timeout=30)
    assert alive == [], f"llama.cpp processes left behind: {[(p.pid, p.name()) for p in alive]}"
    kept = stored()
    assert 3 <= kept < 50
    rerun = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resuming, {kept} of 50 samples already stored" in rerun.stderr
    assert stored() == 50 and _server_processes(str(cache)) == []
    data = json.loads(rerun.stdout)
    prof = data["profile"]
    assert data["metrics"]["arith"]["accuracy"]["value"] > 0.05
    assert prof["engine"] == "llamacpp" and prof["engine_version"].startswith("llama-cpp-python 0.3")
    assert prof["quant_method"] == "gguf Q4_K_M" and prof["kernels"] == ["llama.cpp Q4_K - Medium"]
    gguf = next(Path(cache).rglob("*.gguf"))
    assert prof["weight_bytes"] == gguf.stat().st_size < 0.4 * prof["fp_bytes"]
    assert prof["server_rss_bytes"] > 10e6 and prof["bs1_decode_tokens_per_s"] > 0 and prof["bs1_ttft_ms"] > 0
    assert prof["compute_dtype"] == "float32"
