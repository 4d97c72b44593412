"""Shared plumbing for strategies that quantize through llmcompressor.

RTN, GPTQ, AWQ and the finalize step of the in-training strategies all end in
the same place: a compressed-tensors checkpoint that plain transformers (and
vLLM on a GPU) load. This module builds weight schemes and runs ``oneshot``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.base.errors import UserError
from harness.core.strategy import FULL, Phase, QuantContext, QuantReport, Strategy

LIBRARIES = ("llmcompressor", "compressed-tensors", "transformers", "torch")


class CompressedStrategy(Strategy):
    """A post-training strategy whose :meth:`compress` quantizes in memory through llmcompressor.

    Saving is shared: the in-memory model is what the tests compare a reload
    with, so ``quantize`` must be nothing more than ``compress`` then save, and
    the weight bytes are counted from the stored checkpoint (a compressed
    checkpoint decompresses when it is loaded on a CPU).
    """

    phase = Phase.POST_TRAINING
    kv_bits = (FULL, 8, 4)
    needs_calibration = True
    libraries = LIBRARIES
    artifact_format = "compressed-tensors"

    def artifact_format_for(self, spec, options) -> str:
        return compressed_format(spec, getattr(options, "group_size", None))

    def compress(self, model_dir: Path, ctx: QuantContext) -> tuple[Any, QuantReport]:
        """The quantized model in memory (what :meth:`quantize` saves) and its report, less the stored bytes."""
        raise NotImplementedError

    def calibrated_model(self, model_dir: Path, ctx: QuantContext) -> tuple[list[str], Any, int]:
        """The calibration texts this run uses (``num_samples`` of them), the bf16 model and its bf16 bytes.

        Checked in this order so that missing calibration data or a bad group
        size fails before the model is quantized and nothing is written.
        """
        opts = ctx.options
        texts = ctx.calibration[: opts.num_samples]
        require_calibration(texts, self.name)
        model, fp = load_for_compression(model_dir, opts.group_size, self.name)
        return texts, model, fp

    def quantize(self, model_dir: Path, out_dir: Path, ctx: QuantContext) -> QuantReport:
        from harness.base.weights import stored_weight_bytes

        model, report = self.compress(model_dir, ctx)
        save_compressed(model, ctx.tokenizer, out_dir)
        report.weight_bytes = stored_weight_bytes(out_dir)
        return report


def compressed_format(spec, group_size: int | None = None) -> str:
    """The artifact format of a compressed-tensors checkpoint at ``spec``: an integer KV cache, 4-bit
    activations, weights under 4 bits and grouped weights under int8 activations are formats of their
    own, since not every engine runs them (vLLM has no scheme for group-wise W8A8)."""
    if spec.kv_bits < FULL:
        return "compressed-tensors-int-kv"
    if spec.act_bits < 8:
        return "compressed-tensors-int4-activations"
    if spec.bits < 4:
        return "compressed-tensors-sub4-weights"
    if spec.act_bits < FULL:
        if spec.bits != 8:
            return "compressed-tensors-w4a8"
        return "compressed-tensors-w8a8-grouped" if group_size else "compressed-tensors-w8a8"
    return "compressed-tensors"


def weight_scheme(bits: int, group_size: int | None, symmetric: bool = True, targets: Sequence[str] = ("Linear",)):
    """A weight-only integer scheme: per group of ``group_size`` inputs, or per output channel."""
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    args = QuantizationArgs(
        num_bits=bits,
        type="int",
        symmetric=symmetric,
        strategy="group" if group_size else "channel",
        group_size=group_size or None,
    )
    return QuantizationScheme(targets=list(targets), weights=args)


def check_group_size(
    model, group_size: int | None, strategy: str, ignore: Sequence[str] = ("lm_head",), per_channel: int = 0
) -> None:
    """Refuse, naming the layer, when a linear layer's input width is not a multiple of the group."""
    import torch

    if not group_size:
        return
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not any(name.endswith(i) for i in ignore):
            if module.in_features % group_size:
                raise UserError(
                    f"strategy {strategy!r}: layer {name} has {module.in_features} input features, "
                    f"not divisible by group_size {group_size}; choose a group size that divides it "
                    f"(or group_size={per_channel} for per-channel)"
                )


def quiet_llmcompressor() -> None:
    """llmcompressor logs through loguru at INFO on every call; keep the console readable."""
    import os

    os.environ.setdefault("LLM_COMPRESSOR_LOG_LEVEL", "ERROR")
    logging.getLogger("llmcompressor").setLevel(logging.WARNING)


def calibration_dataset(tokenizer, texts: Sequence[str], max_length: int):
    """A tokenized ``datasets.Dataset`` for oneshot's calibration."""
    from datasets import Dataset

    if not texts:
        raise UserError("this strategy needs calibration data, but the calibration set is empty")
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, add_special_tokens=False)
    return Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})


def run_oneshot(model, recipe: Any, tokenizer=None, texts: Sequence[str] = (), max_length: int = 512,
                seed: int = 0) -> None:
    """Apply ``recipe`` to ``model`` in place (calibrating on ``texts`` when given).

    llmcompressor draws the calibration order from torch's global generator
    (a ``RandomSampler`` without a seed), and GPTQ's and AWQ's results depend
    on that order through floating-point accumulation: two identical runs wrote
    different integers (24 of 28 GPTQ layers differed). The order is drawn from
    ``seed`` here, in a forked generator, so a run's artifact is reproducible and
    the caller's random state is left as it was.
    """
    import torch
    from llmcompressor import oneshot

    quiet_llmcompressor()
    kwargs: dict[str, Any] = {}
    if texts:
        ds = calibration_dataset(tokenizer, texts, max_length)
        kwargs.update(dataset=ds, num_calibration_samples=len(ds), max_seq_length=max_length)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        oneshot(model=model, recipe=recipe, **kwargs)


def save_compressed(model, tokenizer, out_dir: Path) -> None:
    """Save as compressed-tensors (packed integers + scales), loadable by plain transformers."""
    model.save_pretrained(out_dir, save_compressed=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(out_dir)


def kv_cache_scheme(kv_bits: int) -> dict[str, Any] | None:
    """llmcompressor's ``kv_cache_scheme`` for ``kv_bits`` (None at 16: the cache stays full precision).

    Static symmetric integers with one scale per tensor, calibrated on the same
    data as the weights: the scheme vLLM serves, and one that plain transformers
    applies at run time after a reload (keys and values are fake-quantized).
    """
    from harness.core.strategy import FULL

    if kv_bits == FULL:
        return None
    return {"num_bits": kv_bits, "type": "int", "symmetric": True, "strategy": "tensor"}


def scheme_label(scheme: Any, kv_bits: int | None = None) -> str:
    """What a weight scheme (a ``QuantizationScheme`` or a preset name) quantizes, in words, for reports.

    ``W4A16 int asym group128``, ``W8A16 int sym channel``; ``+ KV4`` when the cache is quantized.
    """
    if isinstance(scheme, str):
        label = scheme
    else:
        w = scheme.weights
        where = f"group{w.group_size}" if w.strategy == "group" else str(w.strategy)
        label = f"W{w.num_bits}A16 {w.type} {'sym' if w.symmetric else 'asym'} {where}"
    return label + (f" + KV{kv_bits}" if kv_bits and kv_bits < 16 else "")


def load_for_compression(model_dir: Path | str, group_size: int | None, strategy: str):
    """The model in bf16 on CPU, checked against ``group_size``, and its bf16 bytes.

    bf16 is the precision the paper calls full; llmcompressor moves layers to
    an accelerator itself when there is one. The group check comes before any
    work so a bad group size fails at once and writes nothing.
    """
    import torch

    from harness.base.model import load_model
    from harness.base.weights import bf16_bytes

    model = load_model(model_dir, "cpu", dtype=torch.bfloat16)
    check_group_size(model, group_size, strategy)
    return model, bf16_bytes(model)


def meta_model(model_dir: Path | str):
    """The model's architecture on the meta device: shapes without weights, built from config.json alone.

    For strategies that quantize while loading (bitsandbytes, gptqmodel): they can
    check group sizes and count full-precision bytes before any real work.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(model_dir)))


def full_precision_bytes(model_dir: Path | str) -> int:
    """bf16 bytes of the unquantized model, counted on the meta device (no weights are read)."""
    from harness.base.weights import bf16_bytes

    return bf16_bytes(meta_model(model_dir))


def require_calibration(texts: Sequence[str], strategy: str) -> None:
    """Refuse before any work when a calibrating strategy was given no calibration texts."""
    if not texts:
        raise UserError(f"strategy {strategy!r} needs calibration data, but the calibration set is empty")


# -- activations, KV cache, reload checks ----------------------------------------------------------


def activation_args(act_bits: int):
    """Dynamic per-token symmetric integer activations (None at 16 bits: not quantized).

    Dynamic scales need no calibration and are computed at every forward, so a
    reloaded checkpoint quantizes its activations exactly as the in-memory model did.
    """
    from compressed_tensors.quantization import QuantizationArgs

    if act_bits >= 16:
        return None
    return QuantizationArgs(num_bits=act_bits, type="int", symmetric=True, strategy="token", dynamic=True)


def quant_scheme(
    bits: int, act_bits: int = 16, group_size: int | None = None, symmetric: bool = True,
    targets: Sequence[str] = ("Linear",),
):
    """Weights as :func:`weight_scheme`, plus dynamic per-token activations at ``act_bits``.

    Weights under 8 bits are stored ``pack-quantized`` whatever the activations, so
    W4A4 and W4A16 store the same bytes (llmcompressor would pick one int8 per weight
    for W4A4).
    """
    scheme = weight_scheme(bits, group_size, symmetric, targets)
    scheme.input_activations = activation_args(act_bits)
    if bits < 8:
        scheme.format = "pack-quantized"
    return scheme


def probe_logits(model, tokenizer, texts: Sequence[str], max_length: int = 64):
    """Logits of ``model`` on a small padded batch, in fp32: the fingerprint reload checks compare."""
    import torch

    enc = tokenizer(list(texts), return_tensors="pt", padding=True, truncation=True, max_length=max_length,
                    add_special_tokens=False)
    device = next(model.parameters()).device
    with torch.no_grad():
        out = model(**{k: v.to(device) for k, v in enc.items()}).logits.float().cpu()
    return out.masked_fill(enc["attention_mask"].unsqueeze(-1) == 0, 0.0)


def verify_reload(model, tokenizer, out_dir: Path, load, texts: Sequence[str], strategy: str,
                  tol: float = 1e-3) -> float:
    """Refuse a checkpoint whose reload is not the model that was quantized.

    Evaluation always reads what the quantize stage wrote. Call this after
    saving, with the in-memory quantized model and the strategy's ``load``: it
    compares logits on ``texts`` (the in-memory model is cast to fp32, the dtype
    evaluation computes in on CPU) and raises UserError when they differ by more
    than ``tol``. Returns the largest absolute difference, for the run record.
    """
    import torch

    texts = list(texts)[:4] or ["1 + 1 ="]
    model.to(torch.float32)
    expected = probe_logits(model, tokenizer, texts)
    reloaded = load(Path(out_dir), "cpu")
    diff = float((probe_logits(reloaded, tokenizer, texts) - expected).abs().max())
    if not diff <= tol:
        raise UserError(
            f"strategy {strategy!r}: the saved checkpoint reloads as a different model (largest logit "
            f"difference {diff:.3g} > {tol:g}); refusing to evaluate it"
        )
    return diff


def weight_modifier(algorithm: str, scheme, kv_bits: int = 16, ignore: Sequence[str] = ("lm_head",)):
    """The modifier that quantizes weights (``gptq`` or ``rtn``) with ``scheme``, and the KV cache at ``kv_bits``."""
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier

    cls = {"gptq": GPTQModifier, "rtn": QuantizationModifier}[algorithm]
    return cls(config_groups={"group_0": scheme}, ignore=list(ignore), kv_cache_scheme=kv_cache_scheme(kv_bits))


def save_verified(strategy, model, ctx, model_dir: Path, out_dir: Path, fp_bytes: int, seconds: float,
                  extra: dict[str, Any] | None = None):
    """Save ``model`` compressed, check its reload with :func:`verify_reload`, and report it.

    ``strategy.load`` is what evaluation will call on ``out_dir``, so the check
    covers whatever the strategy re-attaches at load time.
    """
    from harness.base.model import load_tokenizer

    tokenizer = ctx.tokenizer or load_tokenizer(model_dir)
    report = saved_report(strategy, model, ctx, out_dir, fp_bytes, seconds, extra)
    report.extra.update(spec=ctx.spec.label,
                        reload_max_logit_diff=verify_reload(model, tokenizer, out_dir, strategy.load,
                                                            ctx.calibration, strategy.name))
    return report


def saved_report(strategy, model, ctx, out_dir: Path, fp_bytes: int, seconds: float,
                 extra: dict[str, Any] | None = None):
    """Save ``model`` compressed into ``out_dir`` and report it: the bytes as stored, against bf16's."""
    from harness.base.weights import stored_weight_bytes
    from harness.core.strategy import QuantReport, library_versions

    save_compressed(model, ctx.tokenizer, out_dir)
    return QuantReport(
        weight_bytes=stored_weight_bytes(out_dir),
        fp_bytes=fp_bytes,
        seconds=seconds,
        versions=library_versions(strategy.libraries),
        extra=dict(extra or {}),
    )
