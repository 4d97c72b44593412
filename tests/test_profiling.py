"""Profiling: KV-cache arithmetic, per-phase meters, and ``harness profile`` end to end."""

from __future__ import annotations

import json
import mmap
import os
import time

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.toolkit.profile_keys import PROFILE_KEYS
from harness.toolkit.profiling import (
    LatencySettings,
    _percentile,
    kv_bytes_per_token,
    latency_inputs,
    watch,
)

#: the model profiled here and in tests/perf (any local path or hub id works)
MODEL = os.environ.get("HARNESS_PERF_MODEL", "tiny-arith")
QUICK = ["--model", MODEL, "--gen-length", "4", "--batch-size", "4", "--requests", "2", "--json"]


def profile_json(*args: str) -> dict:
    result = CliRunner().invoke(cli, ["profile", *args, *QUICK], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# -- arithmetic ----------------------------------------------------------------------


def test_kv_bytes_per_token_matches_hand_count_for_tiny_config():
    from transformers import Qwen3Config

    # tiny-arith's shape: 4 layers, 4 query heads, 2 KV heads of 64 dims
    cfg = Qwen3Config(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
                      num_key_value_heads=2, head_dim=64, vocab_size=100)
    # layers x (K and V) x KV heads x head dim x bytes
    assert kv_bytes_per_token(cfg, 16) == 4 * 2 * 2 * 64 * 2 == 2048
    assert kv_bytes_per_token(cfg, 8) == 1024
    assert kv_bytes_per_token(cfg, 4) == 512


def test_kv_bytes_without_gqa_or_head_dim_fields():
    from types import SimpleNamespace

    # an older config: no num_key_value_heads, no head_dim (hidden / heads)
    cfg = SimpleNamespace(num_hidden_layers=12, num_attention_heads=12, hidden_size=768)
    assert kv_bytes_per_token(cfg, 16) == 12 * 2 * 12 * 64 * 2


def test_percentile_matches_numpy():
    import numpy as np

    xs = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0]
    for q in (0, 50, 95, 100):
        assert _percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)))


def test_latency_inputs_crop_and_tile_to_one_length():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<eos>", "a", "b", "c", "d", "e"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<eos>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")
    ids = latency_inputs(tokenizer, ["a b c d e", "b c"], rows=3, length=4)
    assert ids.tolist() == [[2, 3, 4, 5], [2, 3, 2, 3], [2, 3, 4, 5]]  # crop keeps the end; short ones tile
    assert latency_inputs(tokenizer, ["a b c", "a b c d e", "a"], rows=1, length=None).shape == (1, 3)  # median


def test_latency_settings_reject_bad_values():
    with pytest.raises(ValueError, match="gen_length"):
        LatencySettings(gen_length=0)
    with pytest.raises(ValueError, match="requests"):
        LatencySettings(requests_bs1=0)


def _resident(mib: int, hold_s: float = 0.0) -> None:
    """Make ``mib`` MiB resident, then give them back to the kernel.

    A fresh anonymous mapping, not a bytearray: after a few hundred tests
    the allocator may hand out heap pages that are resident already, and the
    process's RSS would not move at all.
    """
    block = mmap.mmap(-1, mib * 2**20)
    for offset in range(0, len(block), mmap.PAGESIZE):
        block[offset] = 1  # touch every page
    time.sleep(hold_s)
    block.close()


def _hold_64_mib() -> None:
    _resident(64, hold_s=0.1)  # longer than the fallback sampler's 10 ms tick


@pytest.mark.parametrize("meter", ["high-water mark", "sampler"])
def test_watch_times_forward_and_sees_a_memory_peak(meter, monkeypatch):
    import torch

    import harness.base.memory

    if meter == "sampler":  # where the kernel keeps its mark, or has none to reset
        monkeypatch.setattr(harness.base.memory, "_reset_hwm", lambda: False)
    model = torch.nn.Linear(64, 64)
    with watch() as baseline:
        pass
    with watch(model) as w:
        for _ in range(5):
            model(torch.randn(8, 64))
        _hold_64_mib()
    assert w.stats.forward_calls == 5
    assert 0 < w.stats.forward_s <= w.stats.wall_s
    assert 0 < w.stats.forward_share <= 1
    assert w.stats.peak_rss_bytes >= baseline.stats.peak_rss_bytes + 48 * 2**20
    assert w.stats.peak_gpu_bytes is None  # CPU
    assert model._forward_hooks == {} and model._forward_pre_hooks == {}  # hooks removed


def test_a_phase_does_not_inherit_an_earlier_phases_peak():
    import harness.base.memory

    with watch() as big:
        _resident(192)
    with watch() as small:
        pass
    assert big.stats.peak_rss_bytes >= small.stats.peak_rss_bytes + 160 * 2**20
    assert harness.base.memory.peak_rss_bytes() >= big.stats.peak_rss_bytes  # the process's peak keeps it


# -- the command -----------------------------------------------------------------------


def test_profile_none_prints_and_stores_every_figure(tmp_path):
    out = profile_json("--strategy", "none", "--store", str(tmp_path / "r.db"))
    prof = out["profile"]
    cpu_only = {k for k in PROFILE_KEYS if "gpu" in k}
    eval_only = {k for k in PROFILE_KEYS if k.startswith("eval_")}
    from harness.toolkit.profile_keys import SERVER_KEYS

    unquantized = {"quant_method"}  # None: the checkpoint has no quantization config
    missing = {k for k in PROFILE_KEYS if prof.get(k) is None} - cpu_only - eval_only - set(SERVER_KEYS) - unquantized
    assert not missing, f"figures missing from the profile: {missing}"
    assert prof["device"] == "cpu" and prof["peak_gpu_bytes"] is None
    assert prof["latency_gen_tokens"] == 4 and prof["batch_size"] == 4
    assert prof["kv_bits"] == 16 and prof["kv_cache_tokens"] == 4 * (prof["latency_prompt_tokens"] + 4)
    assert prof["kv_cache_bytes"] == prof["kv_bytes_per_token"] * prof["kv_cache_tokens"]
    assert prof["kv_runtime_bytes_per_token"] == 2 * prof["kv_bytes_per_token"]  # fp32 on CPU vs the bf16 reference
    assert prof["bs1_ttft_ms"] <= prof["bs1_latency_p50_ms"] <= prof["bs1_latency_p95_ms"]
    assert prof["bs1_decode_tokens_per_s"] > 0 and prof["batch_decode_tokens_per_s"] > 0
    assert prof["weight_bytes"] < prof["in_memory_bytes"]  # bf16 stored, fp32 in memory

    shown = CliRunner().invoke(cli, ["show", out["run_id"], "--store", str(tmp_path / "r.db"), "--json"])
    data = json.loads(shown.output)
    assert data["status"] == "profiled"
    assert data["profile"]["bs1_ttft_ms"] == prof["bs1_ttft_ms"]


def test_profile_says_how_far_each_latency_phase_got(tmp_path):
    """A profile at the evaluation batch size takes minutes on a large model: each phase prints its rounds
    (warm-up included) like evaluation prints its problems, on stderr so --json stays parseable."""
    args = ["profile", "--strategy", "none", *QUICK, "--store", str(tmp_path / "r.db")]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    json.loads(result.stdout)
    lines = [line for line in result.stderr.splitlines() if line.startswith("profile batch size")]
    warmup = LatencySettings().warmup
    assert f"profile batch size 1: {warmup + 2}/{warmup + 2} rounds (100%)" in lines[0], lines
    assert f"profile batch size 4: {warmup + 2}/{warmup + 2} rounds (100%)" in lines[1], lines


def test_profile_table_output(tmp_path):
    args = ["profile", "--strategy", "none", *QUICK[:-1], "--store", str(tmp_path / "r.db")]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "bs1_ttft_ms" in result.stdout and "weight_bytes" in result.stdout


def test_profile_rejects_cuda_without_cuda(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is present")
    result = CliRunner().invoke(cli, ["profile", "--device", "cuda", *QUICK, "--store", str(tmp_path / "r.db")])
    assert result.exit_code == 2
    assert "CUDA is not available" in result.output
    assert not (tmp_path / "r.db").exists()  # refused before anything is written


def test_profile_auto_device_notes_the_cpu_fallback(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is present")
    result = CliRunner().invoke(cli, ["profile", "--strategy", "none", *QUICK, "--store", str(tmp_path / "r.db")])
    assert result.exit_code == 0
    assert "profiling on CPU" in result.stderr


def test_profile_rejects_bad_lengths():
    result = CliRunner().invoke(cli, ["profile", "--gen-length", "0"])
    assert result.exit_code == 2 and "--gen-length" in result.output


@pytest.mark.slow
def test_weight_bytes_4bit_below_8bit_below_full_precision(tmp_path):
    store = ["--store", str(tmp_path / "r.db")]
    wb = {
        name: profile_json(*args, *store)["profile"]["weight_bytes"]
        for name, args in (("none", ["--strategy", "none"]), ("rtn8", ["--strategy", "rtn", "--bits", "8"]),
                           ("rtn4", ["--strategy", "rtn", "--bits", "4"]))
    }
    assert wb["rtn4"] < wb["rtn8"] < wb["none"]


def test_run_stores_a_profile_with_the_loop_overhead():
    result = CliRunner().invoke(
        cli, ["run", "--model", MODEL, "--limit", "8", "--max-new-tokens", "16", "--batch-size", "8", "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    prof = json.loads(result.stdout)["profile"]
    assert 0 < prof["eval_forward_share"] <= 1
    assert prof["eval_forward_s"] <= prof["eval_wall_s"] + 1e-3
    assert prof["eval_peak_rss_bytes"] > 0 and prof["eval_problems_per_s"] > 0
    assert prof["kv_cache_tokens"] >= 8 * 16  # 8 sequences, each at least the 16-token budget
    assert prof["bs1_ttft_ms"] > 0 and prof["batch_size"] == 8

    # profiling the same configuration later keeps the run complete and its evaluation figures
    again = profile_json("--limit", "8", "--max-new-tokens", "16")
    assert again["run_id"] == json.loads(result.stdout)["run_id"]
    assert again["profile"]["eval_forward_share"] == prof["eval_forward_share"]
    shown = json.loads(CliRunner().invoke(cli, ["show", again["run_id"], "--json"]).output)
    assert shown["status"] == "complete" and shown["profile"]["latency_gen_tokens"] == 4
