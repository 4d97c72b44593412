"""``none``: full precision, the reference every quantized row is compared with."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness import hookimpl
from harness.base.weights import bf16_bytes, stored_weight_bytes
from harness.core.strategy import FULL, Phase, QuantContext, QuantReport, Strategy, Timer


@dataclass
class NoneOptions:
    dtype: Literal["bf16", "fp32"] = field(
        default="bf16",
        metadata={"help": "dtype the checkpoint is stored in; bf16 is the paper's full precision"},
    )


class NoQuantization(Strategy):
    name = "none"
    description = "full precision (bf16 weights; computed in fp32 on CPU)"
    phase = Phase.POST_TRAINING
    bits = (FULL,)
    options_class = NoneOptions
    is_reference = True

    def quantize(self, model_dir: Path, out_dir: Path, ctx: QuantContext) -> QuantReport:
        import torch

        from harness.base.model import load_model

        dtype = torch.bfloat16 if ctx.options.dtype == "bf16" else torch.float32
        with Timer() as t:
            model = load_model(model_dir, "cpu", dtype=dtype)
            model.save_pretrained(out_dir)
            if ctx.tokenizer is not None:
                ctx.tokenizer.save_pretrained(out_dir)
        return QuantReport(weight_bytes=stored_weight_bytes(out_dir), fp_bytes=bf16_bytes(model), seconds=t.seconds)


@hookimpl
def register_strategies(register):
    register(NoQuantization())
