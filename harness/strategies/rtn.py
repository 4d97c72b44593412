"""``rtn``: round-to-nearest weight quantization, the data-free baseline.

Runs llmcompressor's ``QuantizationModifier`` without calibration data, so the
result is the same compressed-tensors format GPTQ and AWQ produce and the
weight bytes compare like for like.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import hookimpl
from harness.core.strategy import FULL, QuantContext, QuantReport, Timer, library_versions
from harness.toolkit.compress import CompressedStrategy, load_for_compression, quant_scheme, run_oneshot


@dataclass
class RTNOptions:
    group_size: int = field(default=128, metadata={"help": "inputs sharing one scale; 0 = per output channel"})
    symmetric: bool = field(default=True, metadata={"help": "symmetric (no zero point) or asymmetric"})

    def __post_init__(self) -> None:
        if self.group_size < 0:
            raise ValueError(f"group_size must be >= 0, got {self.group_size}")


class RoundToNearest(CompressedStrategy):
    name = "rtn"
    description = "round-to-nearest integer weights, optionally dynamic int activations (no calibration)"
    bits = (4, 8, 3, 2)
    #: dynamic per-token activations need no calibration; a KV-cache scale does, so RTN has none
    act_bits = (FULL, 8, 4)
    kv_bits = (FULL,)
    needs_calibration = False
    options_class = RTNOptions

    def compress(self, model_dir: Path, ctx: QuantContext) -> tuple[Any, QuantReport]:
        from llmcompressor.modifiers.quantization import QuantizationModifier

        opts: RTNOptions = ctx.options
        model, fp = load_for_compression(model_dir, opts.group_size, self.name)
        scheme = quant_scheme(ctx.spec.bits, ctx.spec.act_bits, opts.group_size, opts.symmetric)
        with Timer() as t:
            run_oneshot(model, QuantizationModifier(config_groups={"group_0": scheme}, ignore=["lm_head"]))
        return model, QuantReport(fp_bytes=fp, seconds=t.seconds, versions=library_versions(self.libraries))


@hookimpl
def register_strategies(register):
    register(RoundToNearest())
