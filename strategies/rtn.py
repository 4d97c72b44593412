"""``rtn``: round-to-nearest weight quantization, the data-free baseline.

Runs llmcompressor's ``QuantizationModifier`` without calibration data, so the
result is the same compressed-tensors format GPTQ and AWQ produce and the
weight bytes compare like for like.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness import hookimpl
from harness.compress import LIBRARIES, check_group_size, quant_scheme, run_oneshot, save_compressed
from harness.strategy import FULL, Phase, QuantContext, QuantReport, Strategy, Timer, library_versions
from harness.weights import bf16_bytes, stored_weight_bytes


@dataclass
class RTNOptions:
    group_size: int = field(default=128, metadata={"help": "inputs sharing one scale; 0 = per output channel"})
    symmetric: bool = field(default=True, metadata={"help": "symmetric (no zero point) or asymmetric"})

    def __post_init__(self) -> None:
        if self.group_size < 0:
            raise ValueError(f"group_size must be >= 0, got {self.group_size}")


class RoundToNearest(Strategy):
    name = "rtn"
    description = "round-to-nearest integer weights, optionally dynamic int activations (no calibration)"
    phase = Phase.POST_TRAINING
    bits = (4, 8, 3, 2)
    #: dynamic per-token activations need no calibration; a KV-cache scale does, so RTN has none
    act_bits = (FULL, 8, 4)
    options_class = RTNOptions
    libraries = LIBRARIES

    def quantize(self, model_dir: Path, out_dir: Path, ctx: QuantContext) -> QuantReport:
        import torch
        from llmcompressor.modifiers.quantization import QuantizationModifier

        from harness.model import load_model

        opts: RTNOptions = ctx.options
        model = load_model(model_dir, "cpu", dtype=torch.bfloat16)
        check_group_size(model, opts.group_size, self.name)
        fp = bf16_bytes(model)
        scheme = quant_scheme(ctx.spec.bits, ctx.spec.act_bits, opts.group_size, opts.symmetric)
        with Timer() as t:
            run_oneshot(model, QuantizationModifier(config_groups={"group_0": scheme}, ignore=["lm_head"]))
        save_compressed(model, ctx.tokenizer, out_dir)
        return QuantReport(
            weight_bytes=stored_weight_bytes(out_dir),
            fp_bytes=fp,
            seconds=t.seconds,
            versions=library_versions(self.libraries),
        )


@hookimpl
def register_strategies(register):
    register(RoundToNearest())
