"""Post-training strategies bnb, awq and gptq on the tiny model.

What issue 4 asks of them: each writes a model directory into the folder it is
given and nothing else; 4-bit weights take at most 0.35 of the bf16 bytes and
8-bit fewer than bf16; the AWQ and GPTQ checkpoints reload in plain
transformers to the model that was quantized (same logits, same greedy
outputs); bad bits and bad group sizes are one clear error.
"""

from __future__ import annotations

import json
import random
import shutil

import pytest

from harness.base.errors import UserError
from harness.base.options import options_help
from harness.core.strategy import FULL, QuantContext

#: small calibration so each quantization takes seconds, not minutes, on 2 cores
FAST = {"num_samples": "16", "max_length": "128"}


@pytest.fixture(scope="module")
def registry():
    from harness.core.plugin_manager import build_registry, make_manager

    pm, failures = make_manager()
    return build_registry(pm, failures)


@pytest.fixture(scope="module")
def tokenizer(tiny_dir):
    from harness.base.model import load_tokenizer

    return load_tokenizer(tiny_dir)


@pytest.fixture(scope="module")
def calibration(registry, tokenizer) -> list[str]:
    """Prompt + solution from arith's train split, as the pipeline builds them."""
    from harness.core.prompts import get_template

    items = registry.benchmarks.get("arith").load("train")
    template = get_template("boxed")
    chosen = random.Random("calib-0").sample(items, 32)
    return [template.render(p.problem, tokenizer) + (p.solution or p.answer) for p in chosen]


@pytest.fixture(scope="module")
def prompts(registry, tokenizer) -> list[str]:
    from harness.core.prompts import get_template

    template = get_template("boxed")
    return [template.render(p.problem, tokenizer) for p in registry.benchmarks.get("arith").load("test")[:6]]


def context(registry, name, bits, tokenizer, calibration, kv_bits=FULL, **opts):
    strategy = registry.strategies.get(name)
    spec = strategy.spec(bits, kv_bits=kv_bits)
    return strategy, QuantContext(
        spec=spec, options=strategy.make_options(opts), tokenizer=tokenizer, calibration=list(calibration)
    )


def logits(model, tokenizer, texts):
    import torch

    batch = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**batch).logits.float()


def greedy(model, tokenizer, texts, n=24):
    import torch

    batch = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=n, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)


def reload_bf16(out_dir):
    """The checkpoint in plain transformers, in the dtype the in-memory model computes in."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(out_dir), dtype=torch.bfloat16).eval()


# -- registration, options, bad input (fast) -----------------------------------------------


def test_strategies_registered_through_entry_points(registry):
    for name in ("bnb", "awq", "gptq"):
        assert registry.strategies.owners[name] == name  # the entry point of that name registered it
        strategy = registry.strategies.get(name)
        assert strategy.unavailable_reason() is None
        assert all(f["help"] for f in options_help(strategy.options_class))
    assert registry.strategies.get("bnb").bits == (4, 8)
    assert set(registry.strategies.get("gptq").bits) == {2, 3, 4, 8}
    assert set(registry.strategies.get("awq").bits) == {3, 4, 8}
    assert registry.strategies.get("gptq").needs_calibration and registry.strategies.get("awq").needs_calibration


def test_bnb_3bit_is_a_user_error_listing_the_supported_bits(registry):
    with pytest.raises(UserError, match=r"'bnb' does not support bits 3; supported: 4, 8"):
        registry.strategies.get("bnb").spec(3)


def test_kv_bits_outside_the_declared_ones_are_refused(registry):
    with pytest.raises(UserError, match=r"'gptq' does not support KV-cache bits 3; supported: 16, 8, 4"):
        registry.strategies.get("gptq").spec(4, kv_bits=3)
    with pytest.raises(UserError, match=r"'bnb' does not support KV-cache bits 8"):
        registry.strategies.get("bnb").spec(4, kv_bits=8)


@pytest.mark.parametrize("name", ["gptq", "awq"])
def test_group_size_not_dividing_a_layer_names_the_layer_and_writes_nothing(
    registry, tiny_dir, tokenizer, calibration, tmp_path, name
):
    strategy, ctx = context(registry, name, 4, tokenizer, calibration, group_size="100")
    out = tmp_path / "out"
    with pytest.raises(UserError) as err:
        strategy.quantize(tiny_dir, out, ctx)
    message = str(err.value)
    assert f"strategy {name!r}" in message and "group_size 100" in message
    assert "model.layers.0.self_attn.q_proj has 256 input features" in message
    assert not out.exists() and not any(tmp_path.iterdir())


def test_options_are_checked(registry):
    with pytest.raises(UserError, match="variant 'reference' runs the seed study's W4A16_ASYM"):
        registry.strategies.get("awq").make_options({"variant": "reference", "group_size": "64"})
    with pytest.raises(UserError, match=r"n_grid must be >= 3 \(duo_scaling=True\), got 2"):
        registry.strategies.get("awq").make_options({"n_grid": "2"})
    with pytest.raises(UserError, match="dampening must be in"):
        registry.strategies.get("gptq").make_options({"dampening": "2"})
    with pytest.raises(UserError, match="quant_type='int3' is not allowed; choose one of nf4, fp4"):
        registry.strategies.get("bnb").make_options({"quant_type": "int3"})


def test_awq_cpu_guard_is_scoped_to_the_call():
    """The pin_memory guard is a no-op patch only inside the block, and restores the original."""
    import torch
    from llmcompressor.pipelines.cache import IntermediatesCache

    from harness.compat.llmcompressor import cpu_pin_memory_guard

    original = IntermediatesCache.__dict__["pin_memory"]
    with cpu_pin_memory_guard():
        patched = IntermediatesCache.__dict__["pin_memory"]
        assert (patched is original) == torch.accelerator.is_available()
    assert IntermediatesCache.__dict__["pin_memory"] is original


def test_calibration_is_required(registry, tiny_dir, tokenizer, tmp_path):
    strategy, ctx = context(registry, "gptq", 4, tokenizer, [])
    with pytest.raises(UserError, match="needs calibration data"):
        strategy.quantize(tiny_dir, tmp_path / "out", ctx)


# -- quantization end to end (slow) --------------------------------------------------------------


def check_reload(strategy, ctx, tiny_dir, tokenizer, prompts, tmp_path, reload=reload_bf16):
    """Quantize in memory, save the way ``quantize`` does, reload; the reloaded model must be the same model."""
    from harness.base.weights import stored_weight_bytes

    model, report = strategy.compress(tiny_dir, ctx)
    out = tmp_path / "out"
    # saved before any forward, as quantize() does: bitsandbytes on CPU repacks 4-bit weights
    # at the first forward, and a save after that writes a different (worse) model
    if strategy.name == "bnb":
        model.save_pretrained(out)
    else:
        from harness.toolkit.compress import save_compressed

        save_compressed(model, tokenizer, out)
    in_memory = logits(model, tokenizer, prompts)
    reloaded = reload(out)
    assert reloaded is not model
    assert (logits(reloaded, tokenizer, prompts) - in_memory).abs().max().item() == 0.0
    assert greedy(reloaded, tokenizer, prompts) == greedy(model, tokenizer, prompts)
    return model, out, stored_weight_bytes(out), report


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gptq", "awq"])
def test_4bit_checkpoint_reloads_in_plain_transformers_as_the_quantized_model(
    registry, name, tiny_dir, tokenizer, calibration, prompts, tmp_path
):
    opts = dict(FAST, n_grid="4") if name == "awq" else FAST
    strategy, ctx = context(registry, name, 4, tokenizer, calibration, **opts)
    model, out, weight_bytes, report = check_reload(strategy, ctx, tiny_dir, tokenizer, prompts, tmp_path)
    config = json.loads((out / "config.json").read_text())["quantization_config"]
    assert config["quant_method"] == "compressed-tensors" and config["format"] == "pack-quantized"
    assert weight_bytes <= 0.35 * report.fp_bytes
    assert report.extra["calibration_samples"] == 16 and report.seconds > 0
    assert report.versions["llmcompressor"] != "not installed"
    # The pipeline evaluates in fp32 on CPU (strategy.load): the stored integers and scales are
    # dequantized in fp32. It must be exactly that checkpoint read by plain transformers and cast to
    # fp32 before any forward. (Not the in-memory model after a bf16 forward: that decompresses in
    # bf16, rounding every dequantized weight, and its logits sit ~0.05 away, which can flip a
    # greedy token; bf16 against bf16 is exact, asserted above.)
    import torch

    evaluated, plain = strategy.load(out, "cpu"), reload_bf16(out).to(torch.float32)
    assert (logits(evaluated, tokenizer, prompts) - logits(plain, tokenizer, prompts)).abs().max().item() == 0.0
    assert greedy(evaluated, tokenizer, prompts) == greedy(plain, tokenizer, prompts)


@pytest.mark.slow
def test_quantize_writes_only_into_out_dir_and_reports_bytes(registry, tiny_dir, tokenizer, calibration, tmp_path):
    from harness.base.weights import stored_weight_bytes

    strategy, ctx = context(registry, "gptq", 8, tokenizer, calibration, **FAST)
    out = tmp_path / "cache" / "tmp-entry"
    out.mkdir(parents=True)
    report = strategy.quantize(tiny_dir, out, ctx)
    assert [p.name for p in tmp_path.iterdir()] == ["cache"] and [p.name for p in out.parent.iterdir()] == ["tmp-entry"]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    assert report.weight_bytes == stored_weight_bytes(out)
    assert 0.35 * report.fp_bytes < report.weight_bytes < report.fp_bytes
    assert report.extra["scheme"] == "W8A16 int sym group128"


@pytest.mark.slow
def test_awq_8bit_is_real_8bit_and_the_reference_variant_runs_the_4bit_recipe(
    registry, tiny_dir, tokenizer, calibration, tmp_path
):
    fast = dict(FAST, n_grid="3")
    sizes = {}
    for variant in ("standard", "reference"):
        strategy, ctx = context(registry, "awq", 8, tokenizer, calibration, variant=variant, **fast)
        report = strategy.quantize(tiny_dir, tmp_path / variant, ctx)
        sizes[variant] = report.weight_bytes
        assert report.extra["bits_asked"] == 8
    assert report.extra["scheme"] == "W4A16_ASYM" and report.extra["variant"] == "reference"
    assert 0.35 * report.fp_bytes < sizes["standard"] < report.fp_bytes
    assert sizes["reference"] <= 0.35 * report.fp_bytes  # the study's "8-bit" row is a 4-bit model
    args = json.loads((tmp_path / "standard" / "config.json").read_text())["quantization_config"]
    weights = args["config_groups"]["group_0"]["weights"]
    assert (weights["num_bits"], weights["symmetric"], weights["group_size"]) == (8, False, 128)


@pytest.mark.slow
@pytest.mark.parametrize("bits", [8, 4])
def test_bnb_saves_and_reloads_the_quantized_model(registry, bits, tiny_dir, tokenizer, prompts, tmp_path):
    import torch

    from harness.base.model import load_model

    strategy, ctx = context(registry, "bnb", bits, tokenizer, [])
    reload = lambda out: load_model(out, "cpu", dtype=torch.bfloat16, device_map="cpu")  # noqa: E731
    _, out, weight_bytes, report = check_reload(strategy, ctx, tiny_dir, tokenizer, prompts, tmp_path, reload)
    layer = type(strategy.load(out, "cpu").model.layers[0].mlp.down_proj).__name__
    assert layer == ("Linear8bitLt" if bits == 8 else "Linear4bit")
    assert weight_bytes < report.fp_bytes
    if bits == 4:
        assert weight_bytes <= 0.35 * report.fp_bytes
        assert report.extra == {"format": "bitsandbytes", "quant_type": "nf4", "double_quant": True,
                                "compute_dtype": "float32"}


@pytest.mark.slow
def test_kv4_is_applied_after_reload(registry, tiny_dir, tokenizer, calibration, prompts, tmp_path):
    """W4 + KV4: the reload equals the in-memory model, and differs from the same weights without KV quantization."""
    strategy, ctx = context(registry, "gptq", 4, tokenizer, calibration, kv_bits=4, **FAST)
    _, out, _, report = check_reload(strategy, ctx, tiny_dir, tokenizer, prompts, tmp_path)
    assert report.extra["scheme"].endswith("+ KV4")
    config = json.loads((out / "config.json").read_text())
    assert config["quantization_config"]["kv_cache_scheme"]["num_bits"] == 4
    plain = tmp_path / "without-kv"
    shutil.copytree(out, plain)
    config["quantization_config"]["kv_cache_scheme"] = None
    (plain / "config.json").write_text(json.dumps(config))
    diff = (logits(reload_bf16(out), tokenizer, prompts) - logits(reload_bf16(plain), tokenizer, prompts)).abs()
    assert diff.max().item() > 0
