"""``bnb``: bitsandbytes quantization on load, as the seed study's PTQ rows.

8-bit is LLM.int8 (int8 weights per output row, outlier input columns above
``int8_threshold`` computed in 16 bits); 4-bit is NF4 (or FP4) in blocks of 64
with optional double quantization of the block scales. Quantization happens
inside ``from_pretrained`` through transformers' ``BitsAndBytesConfig``.

The quantized model is saved with ``save_pretrained`` (this works on CPU with
bitsandbytes 0.50 and reloads to the same weights), so the weight bytes are
those stored: packed weights plus every scale and quantization map. Tensors
bitsandbytes leaves alone (embeddings, norms, lm_head) are stored in bf16, the
precision the full-precision reference is counted in.

Save before any forward pass. bitsandbytes 0.50 on CPU repacks 4-bit weights
for its CPU kernel at the first forward; ``save_pretrained`` after that writes
a different model (measured on tiny-arith without double quantization: mean
logit error against full precision 0.31 instead of 0.06). :meth:`quantize`
saves straight after quantizing, and the saved model is what is evaluated.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness import hookimpl
from harness.base.weights import stored_weight_bytes
from harness.core.strategy import Phase, QuantContext, QuantReport, Strategy, Timer, library_versions
from harness.toolkit.compress import full_precision_bytes

_DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class BnbOptions:
    quant_type: Literal["nf4", "fp4"] = field(default="nf4", metadata={"help": "4-bit data type (4-bit only)"})
    double_quant: bool = field(
        default=True, metadata={"help": "quantize the 4-bit block scales again (4-bit only; paper: on)"}
    )
    compute_dtype: Literal["auto", "float32", "bfloat16", "float16"] = field(
        default="auto",
        metadata={"help": "dtype 4-bit layers compute in; auto: float32 on CPU (bf16 is slow there), bfloat16 on GPU"},
    )
    int8_threshold: float = field(
        default=6.0, metadata={"help": "LLM.int8 outlier threshold: inputs above it stay 16-bit (8-bit only)"}
    )

    def __post_init__(self) -> None:
        if self.int8_threshold < 0:
            raise ValueError(f"int8_threshold must be >= 0, got {self.int8_threshold}")


def quiet_bitsandbytes() -> None:
    """bitsandbytes warns on every 8-bit matmul that inputs are cast; keep only errors."""
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


def device_map(device: str) -> str | dict[str, str]:
    return "cpu" if device == "cpu" else {"": device}


def bnb_config(bits: int, opts: BnbOptions, device: str):
    """The ``BitsAndBytesConfig`` for ``bits`` and the options on ``device``."""
    import torch
    from transformers import BitsAndBytesConfig

    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=opts.int8_threshold)
    compute = opts.compute_dtype
    if compute == "auto":
        compute = "float32" if device == "cpu" else "bfloat16"
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=opts.quant_type,
        bnb_4bit_use_double_quant=opts.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, compute),
    )


class BitsAndBytes(Strategy):
    name = "bnb"
    description = "bitsandbytes LLM.int8 (8-bit) or NF4/FP4 (4-bit), quantized on load"
    phase = Phase.POST_TRAINING
    bits = (4, 8)
    options_class = BnbOptions
    libraries = ("bitsandbytes", "transformers", "torch")
    artifact_format = "bitsandbytes"

    def unavailable_reason(self) -> str | None:
        import importlib.util

        return None if importlib.util.find_spec("bitsandbytes") else "bitsandbytes is not installed"

    def quantize(self, model_dir: Path, out_dir: Path, ctx: QuantContext) -> QuantReport:
        model, report = self.compress(model_dir, ctx)
        model.save_pretrained(out_dir)  # before any forward: see the module docstring
        if ctx.tokenizer is not None:
            ctx.tokenizer.save_pretrained(out_dir)
        report.weight_bytes = stored_weight_bytes(out_dir)
        return report

    def compress(self, model_dir: Path, ctx: QuantContext) -> tuple[Any, QuantReport]:
        """The quantized model in memory (what :meth:`quantize` saves) and its report, less the stored bytes."""
        import torch

        from harness.base.model import load_model

        opts: BnbOptions = ctx.options
        quiet_bitsandbytes()
        config = bnb_config(ctx.spec.bits, opts, ctx.device)
        fp = full_precision_bytes(model_dir)
        with Timer() as t:
            model = load_model(
                model_dir, ctx.device, dtype=torch.bfloat16, quantization_config=config,
                device_map=device_map(ctx.device),
            )
        extra = {"format": "bitsandbytes"}
        if ctx.spec.bits == 4:
            extra.update(quant_type=opts.quant_type, double_quant=opts.double_quant,
                         compute_dtype=str(config.bnb_4bit_compute_dtype).removeprefix("torch."))
        else:
            extra.update(quant_type="int8", int8_threshold=opts.int8_threshold)
        return model, QuantReport(
            fp_bytes=fp,
            seconds=t.seconds,
            versions=library_versions(self.libraries),
            extra=extra,
        )

    def load(self, model_dir: Path, device: str):
        """The stored bnb model on ``device`` (its quantization config comes from config.json)."""
        from harness.base.model import load_model

        quiet_bitsandbytes()
        return load_model(model_dir, device, device_map=device_map(device))


@hookimpl
def register_strategies(register):
    register(BitsAndBytes())
