"""Activation and KV-cache quantization: it runs at evaluation time, and reloads as the model that was quantized.

Each scheme is quantized once (module-scoped), on the tiny-arith model, and
compared three ways: in memory, reloaded by the strategy's ``load`` (what
evaluation runs), and against its neighbour scheme with the same weights.
The quantizing tests are marked slow: calibration on a loaded 2-core machine
takes 10-50 s a scheme (about a minute of CPU for the module).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.base.errors import UserError
from harness.cli import cli
from harness.core.strategy import QuantContext

#: name -> (strategy, bits, act bits, KV bits, options); RTN weights so that neighbours share their weights
SCHEMES = {
    "W4A16": ("quarot", 4, 16, 16, {"rotations": "none", "weights": "rtn"}),
    "W4A4": ("quarot", 4, 4, 16, {"rotations": "none", "weights": "rtn"}),
    "W4A16KV4": ("quarot", 4, 16, 4, {"rotations": "none", "weights": "rtn"}),
    "W8A8KV8 smoothquant": ("smoothquant", 8, 8, 8, {"weights": "rtn"}),
    "W4A4KV4 rotated": ("quarot", 4, 4, 4, {"rotations": "R1,R2,R4", "weights": "rtn"}),
}


@pytest.fixture(scope="module")
def tokenizer(tiny_dir):
    from harness.base.model import load_tokenizer

    return load_tokenizer(tiny_dir)


@pytest.fixture(scope="module")
def calibration():
    from harness.benchmarks.arith import generate

    problems = generate("train")
    return [p.problem + "\n" + (p.solution or p.answer) for p in problems[:: max(1, len(problems) // 4)][:4]]


@pytest.fixture(scope="module")
def probe(tokenizer):
    from harness.benchmarks.arith import generate

    return [p.problem for p in generate("test")[:6]]


@pytest.fixture(scope="module")
def quantized(tiny_dir, tokenizer, calibration, probe, tmp_path_factory):
    """``quantized(name)`` -> dict(in_memory=logits, reloaded=logits, dir=Path, model=reloaded model)."""
    from harness.core.plugin_manager import get_registry
    from harness.toolkit.compress import probe_logits, save_compressed

    done: dict[str, dict] = {}

    def make(name: str) -> dict:
        if name not in done:
            strategy_name, bits, act, kv, opts = SCHEMES[name]
            strategy = get_registry().strategies.get(strategy_name)
            ctx = QuantContext(spec=strategy.spec(bits, act, kv), options=strategy.make_options(opts),
                               tokenizer=tokenizer, calibration=calibration)
            model, _, _ = strategy.build(tiny_dir, ctx)
            out = tmp_path_factory.mktemp(name.replace(" ", "_"))
            save_compressed(model, tokenizer, out)
            model.float()  # evaluation computes in fp32 on CPU
            reloaded = strategy.load(out, "cpu")
            done[name] = {
                "in_memory": probe_logits(model, tokenizer, probe),
                "reloaded": probe_logits(reloaded, tokenizer, probe),
                "dir": out,
                "model": reloaded,
            }
        return done[name]

    return make


def _scales(model) -> dict:
    return {k: v for k, v in model.state_dict().items() if k.endswith("weight_scale")}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SCHEMES))
def test_reload_gives_the_in_memory_logits(quantized, name):
    got = quantized(name)
    assert (got["reloaded"] - got["in_memory"]).abs().max().item() == 0.0


@pytest.mark.slow
def test_w4a4_runs_quantized_activations(quantized):
    """Same weights, 4-bit activations: other logits, in memory and reloaded."""
    a16, a4 = quantized("W4A16"), quantized("W4A4")
    s16, s4 = _scales(a16["model"]), _scales(a4["model"])
    assert s16 and s16.keys() == s4.keys() and all((s16[k] == s4[k]).all() for k in s16)
    assert (a4["reloaded"] - a16["reloaded"]).abs().mean().item() > 1e-2
    assert (a4["in_memory"] - a16["in_memory"]).abs().mean().item() > 1e-2


@pytest.mark.slow
def test_kv4_runs_a_quantized_cache(quantized):
    """Same weights, 4-bit KV cache: other logits, and the stored scales are the cache's."""
    plain, kv4 = quantized("W4A16"), quantized("W4A16KV4")
    s, k = _scales(plain["model"]), _scales(kv4["model"])
    assert all((s[n] == k[n]).all() for n in s)
    kv_scales = [n for n in kv4["model"].state_dict() if n.endswith(("k_scale", "v_scale"))]
    assert kv_scales, "no KV-cache scales in the reloaded KV4 model"
    assert (kv4["reloaded"] - plain["reloaded"]).abs().mean().item() > 1e-2


@pytest.mark.slow
def test_rotation_reload_needs_the_online_rotations(quantized, tokenizer, probe, calibration):
    """transformers alone drops R4's matrices and gives a wrong model; verify_reload refuses it."""
    import torch

    from harness.base.model import load_model
    from harness.compat.compressed_tensors import attach_online_transforms
    from harness.toolkit.compress import probe_logits, verify_reload

    got = quantized("W4A4KV4 rotated")
    plain = probe_logits(load_model(got["dir"], "cpu"), tokenizer, probe)
    assert (plain - got["in_memory"]).abs().mean().item() > 0.1

    model = load_model(got["dir"], "cpu")  # rebuilt as QuaRot.load does: the model that was quantized
    assert attach_online_transforms(model, got["dir"]) > 0
    with pytest.raises(UserError, match="reloads as a different model"):
        verify_reload(model, tokenizer, got["dir"], load_model, calibration, "quarot")
    assert torch.equal(probe_logits(model, tokenizer, probe), got["reloaded"])


def test_quarot_options_name_the_bad_value():
    from harness.core.plugin_manager import get_registry

    strategy = get_registry().strategies.get("quarot")
    with pytest.raises(UserError, match="R3"):
        strategy.make_options({"rotations": "R1,R3"})
    with pytest.raises(UserError, match="smoothing_strength"):
        get_registry().strategies.get("smoothquant").make_options({"smoothing_strength": "1.5"})


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--strategy", "rtn", "--kv-bits", "3"], "strategy 'rtn' does not support KV-cache bits 3; supported: 16"),
        (["--strategy", "quarot", "--kv-bits", "3"], "does not support KV-cache bits 3; supported: 16, 8, 4"),
        (["--strategy", "bnb", "--act-bits", "4"], "strategy 'bnb' does not support activation bits 4; supported: 16"),
        (["--strategy", "smoothquant", "--act-bits", "4"], "does not support activation bits 4; supported: 8"),
        (["--strategy", "smoothquant", "--bits", "4"], "does not support bits 4; supported: 8"),
    ],
)
def test_bad_bits_are_one_line_exit_2_nothing_cached(args, expected, tmp_path):
    from harness.core.plugin_manager import get_registry

    if args[1] not in get_registry().strategies:
        pytest.skip(f"strategy {args[1]!r} is not installed")
    store, cache = tmp_path / "r.db", tmp_path / "cache"
    result = CliRunner().invoke(
        cli, ["run", *args, "--limit", "1", "--store", str(store), "--cache-dir", str(cache)], catch_exceptions=False
    )
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not cache.exists() or not any(cache.rglob("*"))
    if store.exists():
        assert sqlite3.connect(store).execute("select count(*) from runs").fetchone()[0] == 0


@pytest.mark.slow
def test_run_w4a4kv4_rotated_end_to_end(tmp_path):
    """`harness run` quantizes, reloads (checked) and evaluates W4A4KV4, and profiles a 4-bit cache."""
    import json

    from transformers import AutoConfig

    from harness.base.model import resolve_model
    from harness.toolkit.profiling import kv_bytes_per_token

    result = CliRunner().invoke(cli, [
        "run", "--strategy", "quarot", "--bits", "4", "--act-bits", "4", "--kv-bits", "4",
        "--strategy-opt", "weights=rtn", "--strategy-opt", "num_samples=8", "--limit", "4", "--json",
        "--store", str(tmp_path / "r.db"), "--cache-dir", str(tmp_path / "cache"),
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    run = json.loads(result.output[result.output.index("{"):])
    assert "W4A4KV4" in run["label"]
    assert run["artifacts"]["quant"]["extra"]["reload_max_logit_diff"] == 0.0
    config = AutoConfig.from_pretrained(resolve_model("tiny-arith").source)
    assert run["profile"]["kv_bytes_per_token"] == kv_bytes_per_token(config, 4) == kv_bytes_per_token(config, 16) / 4
    assert Path(tmp_path / "cache").exists()


@pytest.mark.slow
@pytest.mark.parametrize("center, changes", [(False, False), (True, True)])
def test_rotations_alone_keep_the_model_unless_embeddings_are_centered(tiny_dir, tokenizer, probe, center, changes):
    """Hadamard rotations are an identity on the unquantized model; SpinQuant's centering is not (RMSNorm)."""
    import torch

    from harness.base.model import load_model
    from harness.strategies.quarot import spinquant_modifier
    from harness.toolkit.compress import probe_logits, run_oneshot

    before = probe_logits(load_model(tiny_dir, "cpu"), tokenizer, probe)
    model = load_model(tiny_dir, "cpu")
    run_oneshot(model, [spinquant_modifier(center, rotations=["R1", "R2", "R4"], transform_type="hadamard",
                                           transform_block_size=256, precision=torch.float32)])
    diff = (probe_logits(model, tokenizer, probe) - before).abs().max().item()
    assert (diff > 0.05) if changes else (diff < 1e-3), diff
