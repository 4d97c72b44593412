"""The floating-point formats (``fp8``, ``nvfp4``, ``mxfp4``): bad bits and engines refused in one line before
anything starts, checkpoints recognised as the format their plan named, bytes as stored, FP4 evaluated in bf16.

The quantizing tests use the data-free presets (FP8_DYNAMIC about 1 s of quantization, MXFP4A16 about 3 s on
tiny-arith) and are marked slow: with the save and the reload check they took 20-50 s on the loaded 2-core machine.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from harness.base.errors import UserError
from harness.cli import cli
from harness.core.plugin_manager import get_registry
from harness.core.strategy import QuantContext
from harness.engines.vllm import FLOAT_FORMATS, VLLMEngine, cpu_float_reason

FAKE_VLLM = str(__import__("pathlib").Path(__file__).parent / "fake_vllm" / "python")


def run(*args: str):
    return CliRunner().invoke(cli, ["run", *args], catch_exceptions=False)


def one_line_refusal(result, *words: str) -> str:
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "\n" not in line and "Traceback" not in line, line
    for word in words:
        assert word in line, line
    return line


def test_plugins_lists_the_formats_as_strategies():
    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0
    assert {"fp8", "nvfp4", "mxfp4"} <= set(get_registry().strategies.names())
    assert "nvfp4" in result.output and "mxfp4" in result.output and "fp8" in result.output


@pytest.mark.parametrize("args, words", [
    (("--strategy", "nvfp4", "--bits", "8"), ("'nvfp4'", "bits 8", "supported: 4")),
    (("--strategy", "mxfp4", "--bits", "2"), ("'mxfp4'", "bits 2", "supported: 4")),
    (("--strategy", "fp8", "--bits", "4"), ("'fp8'", "bits 4", "supported: 8")),
    (("--strategy", "fp8", "--act-bits", "4"), ("activation bits 4", "supported: 16, 8")),
    (("--strategy", "nvfp4", "--bits", "4", "--act-bits", "8"), ("activation bits 8", "supported: 16, 4")),
    (("--strategy", "fp8", "--act-bits", "8", "--kv-bits", "8"), ("KV-cache bits 8", "--kv-cache-dtype fp8")),
    (("--strategy", "fp8", "--strategy-opt", "granularity=row"), ("granularity",)),
])
def test_bad_bits_and_options_are_one_line_exit_2(args, words, tmp_path):
    store = tmp_path / "r.db"
    one_line_refusal(run(*args, "--limit", "1", "--store", str(store)), *words)
    assert not store.exists()


@pytest.mark.parametrize("args, fmt", [
    (("--strategy", "nvfp4", "--bits", "4"), "compressed-tensors-nvfp4"),
    (("--strategy", "mxfp4", "--bits", "4", "--act-bits", "4"), "compressed-tensors-mxfp4"),
    (("--strategy", "fp8", "--act-bits", "8", "--strategy-opt", "granularity=tensor"), "compressed-tensors-fp8-static"),
    (("--strategy", "fp8"), "compressed-tensors-fp8-a16"),
])
def test_vllm_on_cpu_refuses_what_its_cpu_build_cannot_run_before_anything_starts(args, fmt, tmp_path):
    store, cache = tmp_path / "r.db", tmp_path / "cache"
    line = one_line_refusal(run(*args, "--engine", "vllm", "--vllm-python", FAKE_VLLM, "--device", "cpu",
                                "--limit", "1", "--store", str(store), "--cache-dir", str(cache)),
                            f"cannot run {fmt!r}", "engines that can: hf")
    assert "on CPU" in line
    assert not store.exists() and not (cache / "artifacts").exists()


def test_fp8_block_needs_amx_on_vllm_cpu_and_every_float_format_runs_on_a_gpu():
    assert cpu_float_reason("compressed-tensors-fp8-block", flags={"avx2", "avx512f"}) is not None
    assert cpu_float_reason("compressed-tensors-fp8-block", flags={"avx512f", "amx_tile"}) is None
    assert cpu_float_reason("compressed-tensors-fp8") is None  # FP8_DYNAMIC: measured to run on the CPU build
    engine = VLLMEngine()
    for fmt in FLOAT_FORMATS:
        assert engine.accepts(fmt)
    registry = get_registry()
    with pytest.raises(UserError, match="NVFP4 kernel"):
        engine.check("compressed-tensors-nvfp4", "cpu", others=list(registry.engines), known_formats=registry.formats)
    assert all(registry.engines.get("hf").accepts(fmt) for fmt in FLOAT_FORMATS)


@pytest.fixture(scope="module")
def calibration():
    from harness.benchmarks.arith import generate

    return [p.problem + "\n" + (p.solution or p.answer) for p in generate("train")[:4]]


def quantize(name: str, tiny_dir, tmp_path, calibration, act_bits: int = 16, **opts):
    from harness.base.model import load_tokenizer

    strategy = get_registry().strategies.get(name)
    spec = strategy.spec(None, act_bits)
    options = strategy.make_options({k: str(v) for k, v in opts.items()})
    ctx = QuantContext(spec=spec, options=options, tokenizer=load_tokenizer(tiny_dir), calibration=calibration)
    out = tmp_path / name
    report = strategy.quantize(tiny_dir, out, ctx)
    return strategy, spec, options, out, report


@pytest.mark.slow
def test_fp8_dynamic_stores_about_half_of_bf16_and_reads_back_as_its_planned_format(tiny_dir, tmp_path, calibration):
    from harness.base.weights import stored_weight_bytes
    from harness.core.formats import artifact_format, quantization_config

    strategy, spec, options, out, report = quantize("fp8", tiny_dir, tmp_path, calibration, act_bits=8)
    assert report.weight_bytes == stored_weight_bytes(out)
    assert report.weight_bytes <= 0.55 * report.fp_bytes
    assert report.extra["scheme"] == "FP8_DYNAMIC" and report.extra["reload_max_logit_diff"] <= 1e-3
    assert "eval_dtype" not in report.extra  # FP8 evaluates in float32 like every other CPU row
    assert artifact_format(out) == strategy.artifact_format_for(spec, options) == "compressed-tensors-fp8"
    group = next(iter(quantization_config(out)["config_groups"].values()))
    assert group["weights"]["type"] == "float" and group["input_activations"]["dynamic"] is True


@pytest.mark.slow
def test_mxfp4_is_stored_under_a_third_of_bf16_and_evaluated_in_bf16_with_the_reason(tiny_dir, tmp_path,
                                                                                      calibration):
    import torch

    from harness.core.formats import artifact_format

    strategy, spec, options, out, report = quantize("mxfp4", tiny_dir, tmp_path, calibration)
    assert report.weight_bytes < report.fp_bytes / 3  # E2M1 nibbles plus one E8M0 scale per 32
    assert report.extra["scheme"] == "MXFP4A16"
    assert report.extra["eval_dtype"] == "bfloat16" and "same dtype" in report.extra["eval_dtype_reason"]
    assert artifact_format(out) == strategy.artifact_format_for(spec, options) == "compressed-tensors-mxfp4"
    model = strategy.load(out, "cpu")
    assert next(model.parameters()).dtype == torch.bfloat16
