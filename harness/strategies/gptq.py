"""``gptq``: GPTQ weight quantization through llmcompressor's ``GPTQModifier``.

GPTQ quantizes one layer at a time and corrects the error of each quantized
column in the columns not yet quantized, using second-order statistics of the
layer's inputs on calibration data. The result is a compressed-tensors
checkpoint (packed integers + scales) that plain transformers and vLLM load.

Weight bits 8, 4, 3 and 2 (all packed by compressed-tensors). With
``--kv-bits 8`` or ``4`` the KV cache is quantized too (static per-tensor
scales calibrated on the same data), applied at run time after a reload.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness import hookimpl
from harness.core.strategy import QuantContext, QuantReport, Timer, library_versions
from harness.toolkit.compress import (
    CompressedStrategy,
    kv_cache_scheme,
    run_oneshot,
    scheme_label,
    weight_scheme,
)


@dataclass
class GPTQOptions:
    group_size: int = field(default=128, metadata={"help": "inputs sharing one scale; 0 = per output channel"})
    symmetric: bool = field(
        default=True, metadata={"help": "symmetric (no zero point, the W4A16 preset) or asymmetric"}
    )
    dampening: float = field(
        default=0.01, metadata={"help": "fraction of the Hessian's mean diagonal added to it for stability"}
    )
    actorder: Literal["weight", "none"] = field(
        default="weight",
        metadata={"help": "weight: quantize columns in order of Hessian diagonal (no run-time cost); none: in order"},
    )
    block_size: int = field(default=128, metadata={"help": "columns quantized together in one pass"})
    num_samples: int = field(default=128, metadata={"help": "calibration texts used (at most those given)"})
    max_length: int = field(default=512, metadata={"help": "calibration texts are truncated to this many tokens"})

    def __post_init__(self) -> None:
        if self.group_size < 0:
            raise ValueError(f"group_size must be >= 0, got {self.group_size}")
        if not 0 < self.dampening < 1:
            raise ValueError(f"dampening must be in (0, 1), got {self.dampening}")
        if self.block_size <= 0:
            raise ValueError(f"block_size must be > 0, got {self.block_size}")
        if self.num_samples <= 0 or self.max_length <= 0:
            raise ValueError(f"num_samples and max_length must be > 0, got {self.num_samples}, {self.max_length}")


class GPTQ(CompressedStrategy):
    name = "gptq"
    version = "2"  # calibration order drawn from the run's seed (harness.toolkit.compress.run_oneshot): reproducible
    description = "GPTQ weight-only integer quantization (llmcompressor), compressed-tensors checkpoint"
    bits = (4, 8, 3, 2)
    options_class = GPTQOptions

    def compress(self, model_dir: Path, ctx: QuantContext) -> tuple[Any, QuantReport]:
        from llmcompressor.modifiers.quantization import GPTQModifier

        opts: GPTQOptions = ctx.options
        texts, model, fp = self.calibrated_model(model_dir, ctx)
        scheme = weight_scheme(ctx.spec.bits, opts.group_size, opts.symmetric)
        recipe = GPTQModifier(
            config_groups={"group_0": scheme},
            ignore=["lm_head"],
            kv_cache_scheme=kv_cache_scheme(ctx.spec.kv_bits),
            dampening_frac=opts.dampening,
            actorder=None if opts.actorder == "none" else opts.actorder,
            block_size=opts.block_size,
        )
        with Timer() as t:
            run_oneshot(model, recipe, ctx.tokenizer, texts, opts.max_length, seed=ctx.seed)
        return model, QuantReport(
            fp_bytes=fp,
            seconds=t.seconds,
            versions=library_versions(self.libraries),
            extra={"scheme": scheme_label(scheme, ctx.spec.kv_bits), "calibration_samples": len(texts)},
        )


@hookimpl
def register_strategies(register):
    register(GPTQ())
