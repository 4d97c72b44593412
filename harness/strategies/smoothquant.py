"""``smoothquant``: W8A8 integer weights and activations, after SmoothQuant.

SmoothQuant (Xiao et al., 2023) moves activation outliers into the weights
with a per-channel scale computed on calibration data (``smoothing_strength``
is its alpha), so that both can be rounded to int8. Weights are then
quantized by GPTQ or RTN per output channel; activations are quantized per
token, dynamically, at every forward. The KV cache can be quantized too.
Everything goes through llmcompressor and reloads in plain transformers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness import hookimpl
from harness.core.strategy import QuantContext, QuantReport, Timer
from harness.toolkit.compress import (
    CompressedStrategy,
    quant_scheme,
    run_oneshot,
    save_verified,
    weight_modifier,
)


@dataclass
class SmoothQuantOptions:
    smoothing_strength: float = field(
        default=0.8,
        metadata={"help": "SmoothQuant's alpha: how much of the activation range moves into the weights (0-1)"},
    )
    weights: Literal["gptq", "rtn"] = field(default="gptq", metadata={"help": "how the int8 weights are rounded"})
    group_size: int = field(default=0, metadata={"help": "inputs sharing one weight scale; 0 = per output channel"})
    num_samples: int = field(default=128, metadata={"help": "calibration texts used (at most those given)"})

    def __post_init__(self) -> None:
        if not 0.0 < self.smoothing_strength < 1.0:
            raise ValueError(f"smoothing_strength must be between 0 and 1 (exclusive), got {self.smoothing_strength}")
        if self.num_samples <= 0:
            raise ValueError(f"num_samples must be > 0, got {self.num_samples}")
        if self.group_size < 0:
            raise ValueError(f"group_size must be >= 0, got {self.group_size}")


class SmoothQuant(CompressedStrategy):
    name = "smoothquant"
    version = "2"  # calibration order drawn from the run's seed (harness.toolkit.compress.run_oneshot): reproducible
    description = "SmoothQuant, then GPTQ/RTN int8 weights with dynamic per-token int8 activations (W8A8)"
    bits = (8,)
    act_bits = (8,)
    options_class = SmoothQuantOptions

    def build(self, model_dir: Path, ctx: QuantContext):
        """The quantized model, in memory (bf16). Returns (model, fp bytes, extra)."""
        from llmcompressor.modifiers.transform import SmoothQuantModifier

        opts: SmoothQuantOptions = ctx.options
        texts, model, fp = self.calibrated_model(model_dir, ctx)
        recipe = [
            SmoothQuantModifier(smoothing_strength=opts.smoothing_strength),
            weight_modifier(opts.weights, quant_scheme(ctx.spec.bits, ctx.spec.act_bits, opts.group_size),
                            ctx.spec.kv_bits),
        ]
        with Timer() as t:
            run_oneshot(model, recipe, ctx.tokenizer, texts, seed=ctx.seed)
        return model, fp, {"oneshot_seconds": t.seconds}

    def quantize(self, model_dir: Path, out_dir: Path, ctx: QuantContext) -> QuantReport:
        model, fp, extra = self.build(model_dir, ctx)
        return save_verified(self, model, ctx, model_dir, out_dir, fp, extra["oneshot_seconds"], extra)


@hookimpl
def register_strategies(register):
    register(SmoothQuant())
