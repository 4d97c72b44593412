"""``ste``: the straight-through default passes the gradient; the reference code's rounding blocks it."""

from __future__ import annotations

import pytest

from harness.base.errors import UserError
from harness.core.strategy import QuantContext
from harness.strategies.ste import STE, STEOptions, install, quantize_dequantize, target_layers, uninstall

ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")


@pytest.fixture(scope="module")
def batch(tiny_dir):
    from harness.base.model import load_tokenizer
    from harness.benchmarks.arith import generate

    tok = load_tokenizer(tiny_dir)
    problems = [p for p in generate("train") if p.level in ("3", "4", "5")][:16]
    enc = tok([p.problem + "\n" + p.solution for p in problems], return_tensors="pt", padding=True)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    return enc, labels


def q_proj_grad_norm(tiny_dir, batch, options: STEOptions | None) -> float:
    """Norm of the loss gradient on every q_proj weight, for one fixed batch."""
    import torch

    from harness.base.model import load_model

    model = load_model(tiny_dir, "cpu", dtype=torch.float32)
    model.train()
    if options is not None:
        install(model, options, 8)
    enc, labels = batch
    model(**enc, labels=labels).loss.backward()
    grads = [p.grad for name, p in model.named_parameters() if "q_proj" in name and p.grad is not None]
    assert grads, "no q_proj weight received a gradient tensor"
    return float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))


def test_reference_blocks_the_gradient_ste_passes_it(tiny_dir, batch):
    full = q_proj_grad_norm(tiny_dir, batch, None)
    ste = q_proj_grad_norm(tiny_dir, batch, STEOptions())
    reference = q_proj_grad_norm(tiny_dir, batch, STEOptions(variant="reference"))
    print(f"\nq_proj gradient norms: full precision {full:.4g}, ste (default) {ste:.4g}, reference {reference:.4g}")
    assert full > 0
    assert 0.5 < ste / full < 2.0, "the straight-through estimator must pass a full-precision-sized gradient"
    assert reference / full < 1e-3, "the reference code's torch.round passes (near) zero gradient"


def test_reference_variant_fixes_its_settings():
    opts = STE().make_options({"variant": "reference"})
    assert (opts.target, opts.layers, opts.estimator, opts.granularity) == ("outputs", "all", "round", "tensor")
    with pytest.raises(UserError, match="reference"):
        STE().make_options({"variant": "reference", "target": "weights"})
    text = STE().make_options({})
    assert (text.target, text.layers, text.estimator) == ("weights", "attention", "ste")
    mixed = STE().make_options({"estimator": "round", "layers": "all"})
    assert (mixed.target, mixed.layers, mixed.estimator) == ("weights", "all", "round")
    with pytest.raises(UserError, match="estimator"):
        STE().make_options({"estimator": "floor"})


def test_install_targets_and_uninstall_restores(tiny_dir, batch):
    import torch

    from harness.base.model import load_model

    model = load_model(tiny_dir, "cpu", dtype=torch.float32)
    names = target_layers(model, "attention")
    assert names and all(n.rsplit(".", 1)[-1] in ATTN for n in names)
    assert "lm_head" in target_layers(model, "all")

    enc, _ = batch
    layer = model.model.layers[0].self_attn.q_proj
    master = layer.weight.detach().clone()
    with torch.no_grad():
        plain = model(**enc).logits
    install(model, STEOptions(), 8)
    # the layer now computes with the int8 round trip of its weight, per output channel
    assert torch.equal(layer.weight, quantize_dequantize(master, 8, "channel"))
    assert len(torch.unique(torch.round(layer.weight / (master.abs().amax(1, keepdim=True) / 127.5)))) <= 256
    with torch.no_grad():
        fake = model(**enc).logits
    assert not torch.equal(fake, plain)
    uninstall(model)
    assert type(layer) is torch.nn.Linear and torch.equal(layer.weight, master)
    with torch.no_grad():
        assert torch.equal(model(**enc).logits, plain)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["text", "reference"])
def test_finalize_writes_integer_weights(tiny_dir, batch, tmp_path, variant):
    import torch
    from safetensors import safe_open

    from harness.base.model import load_model, load_tokenizer
    from harness.base.weights import bf16_bytes

    strategy = STE()
    ctx = QuantContext(spec=strategy.spec(8), options=strategy.make_options({"variant": variant}),
                       tokenizer=load_tokenizer(tiny_dir))
    model, peft = strategy.prepare(tiny_dir, ctx)
    assert peft is None
    enc, _ = batch
    with torch.no_grad():
        fake = model(**enc).logits
    report = strategy.finalize(model, tmp_path, ctx)
    assert report.weight_bytes < bf16_bytes(load_model(tiny_dir, "cpu"))
    assert report.extra["activations_fake_quantized_in_training_only"] == (variant == "reference")

    # integer layers are stored packed (compressed-tensors), with their scales
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        packed = {k.removesuffix(".weight_packed") for k in f.keys() if k.endswith(".weight_packed")}
    if variant == "text":
        assert packed and all(k.rsplit(".", 1)[-1] in ATTN for k in packed)
        assert len(packed) == 4 * len(model.model.layers)
    else:
        assert "lm_head" in packed and any(k.endswith("mlp.down_proj") for k in packed)

    reloaded = strategy.load(tmp_path, "cpu")
    with torch.no_grad():
        real = reloaded(**enc).logits
    if variant == "text":
        # the integer weights are the ones the fake quantization trained with (up to bf16 storage)
        assert (real - fake).abs().mean() < 0.05 * fake.abs().mean()
