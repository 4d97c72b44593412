"""``awq``: activation-aware weight quantization through llmcompressor.

AWQ scales each input channel of a layer by how large its activations are on
calibration data (folding the inverse into the preceding norm or linear), so
the channels that matter most lose the least to rounding; the weights are then
rounded to integers. llmcompressor's current recipe is ``AWQModifier()``
followed by a ``QuantizationModifier`` whose scheme AWQ's grid search uses.

Bits 4, 8 (a real 8-bit scheme) and 3, group size 128 by default, asymmetric
like the seed study. ``variant=reference`` reproduces the study's
``awq_compress.py``: both of its branches build the 4-bit ``W4A16_ASYM``
recipe, so its "AWQ 8-bit" row is a 4-bit model; the report's ``extra`` says
which scheme actually ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness import hookimpl
from harness.compat.llmcompressor import cpu_pin_memory_guard
from harness.core.strategy import QuantContext, QuantReport, Timer, library_versions
from harness.toolkit.compress import (
    CompressedStrategy,
    kv_cache_scheme,
    run_oneshot,
    scheme_label,
    weight_scheme,
)

#: the preset the seed study's code runs for both its "4-bit" and "8-bit" AWQ rows
REFERENCE_SCHEME = "W4A16_ASYM"


@dataclass
class AWQOptions:
    variant: Literal["standard", "reference"] = field(
        default="standard",
        metadata={"help": "standard: the asked bits; reference: the seed study's code, W4A16_ASYM whatever the bits"},
    )
    group_size: int = field(default=128, metadata={"help": "inputs sharing one scale; 0 = per output channel"})
    symmetric: bool = field(default=False, metadata={"help": "symmetric, or asymmetric with zero points (paper)"})
    num_samples: int = field(default=128, metadata={"help": "calibration texts used (paper: 128)"})
    max_length: int = field(
        default=512, metadata={"help": "calibration texts are truncated to this many tokens (paper: 512)"}
    )
    n_grid: int = field(default=20, metadata={"help": "scale exponents tried per layer in AWQ's grid search"})
    duo_scaling: bool = field(
        default=True, metadata={"help": "scales from activations and weights (True) or activations only"}
    )

    def __post_init__(self) -> None:
        if self.group_size < 0:
            raise ValueError(f"group_size must be >= 0, got {self.group_size}")
        if self.num_samples <= 0 or self.max_length <= 0:
            raise ValueError(f"num_samples and max_length must be > 0, got {self.num_samples}, {self.max_length}")
        # llmcompressor spaces the grid as i / (n_grid - 2) with duo scaling, i / (n_grid - 1) without
        least = 3 if self.duo_scaling else 2
        if self.n_grid < least:
            raise ValueError(f"n_grid must be >= {least} (duo_scaling={self.duo_scaling}), got {self.n_grid}")
        if self.variant == "reference" and (self.group_size != 128 or self.symmetric):
            raise ValueError(
                f"variant 'reference' runs the seed study's {REFERENCE_SCHEME} preset (group 128, asymmetric); "
                f"got group_size={self.group_size}, symmetric={self.symmetric} (use variant=standard to change them)"
            )


class AWQ(CompressedStrategy):
    name = "awq"
    version = "2"  # calibration order drawn from the run's seed (harness.toolkit.compress.run_oneshot): reproducible
    description = "AWQ activation-aware weight quantization (llmcompressor), compressed-tensors checkpoint"
    bits = (4, 8, 3)
    options_class = AWQOptions

    def compress(self, model_dir: Path, ctx: QuantContext) -> tuple[Any, QuantReport]:
        from llmcompressor.modifiers.quantization import QuantizationModifier
        from llmcompressor.modifiers.transform.awq import AWQModifier

        opts: AWQOptions = ctx.options
        texts, model, fp = self.calibrated_model(model_dir, ctx)
        kv = kv_cache_scheme(ctx.spec.kv_bits)
        if opts.variant == "reference":
            quantization = QuantizationModifier(
                targets="Linear", scheme=REFERENCE_SCHEME, ignore=["lm_head"], kv_cache_scheme=kv
            )
            ran = scheme_label(REFERENCE_SCHEME, ctx.spec.kv_bits)
        else:
            scheme = weight_scheme(ctx.spec.bits, opts.group_size, opts.symmetric)
            quantization = QuantizationModifier(
                config_groups={"group_0": scheme}, ignore=["lm_head"], kv_cache_scheme=kv
            )
            ran = scheme_label(scheme, ctx.spec.kv_bits)
        recipe = [AWQModifier(n_grid=opts.n_grid, duo_scaling=opts.duo_scaling), quantization]
        with Timer() as t, cpu_pin_memory_guard():
            run_oneshot(model, recipe, ctx.tokenizer, texts, opts.max_length, seed=ctx.seed)
        return model, QuantReport(
            fp_bytes=fp,
            seconds=t.seconds,
            versions=library_versions(self.libraries),
            extra={
                "variant": opts.variant,
                "bits_asked": ctx.spec.bits,
                "scheme": ran,
                "calibration_samples": len(texts),
            },
        )


@hookimpl
def register_strategies(register):
    register(AWQ())
