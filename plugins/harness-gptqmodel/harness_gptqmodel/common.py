"""Options and checks both GPTQ backends share."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from harness.api import Phase, QuantContext, QuantReport, Strategy, library_versions


@dataclass
class GPTQBackendOptions:
    group_size: int = field(default=128, metadata={"help": "inputs sharing one scale; -1 = per output channel"})
    symmetric: bool = field(default=True, metadata={"help": "symmetric (no zero point) or asymmetric"})
    desc_act: bool = field(default=False, metadata={"help": "quantize columns by decreasing activation (act-order)"})
    damp_percent: float = field(default=0.05, metadata={"help": "fraction of the Hessian diagonal added for stability"})
    num_samples: int = field(default=128, metadata={"help": "calibration texts used (at most those given)"})
    max_length: int = field(default=512, metadata={"help": "calibration texts are truncated to this many tokens"})

    def __post_init__(self) -> None:
        if self.group_size == 0 or self.group_size < -1:
            raise ValueError(f"group_size must be > 0, or -1 for per-channel; got {self.group_size}")
        if not 0 < self.damp_percent < 1:
            raise ValueError(f"damp_percent must be in (0, 1), got {self.damp_percent}")
        if self.num_samples <= 0 or self.max_length <= 0:
            raise ValueError(f"num_samples and max_length must be > 0, got {self.num_samples}, {self.max_length}")


def missing_reason(module: str, distribution: str, extra: str) -> str | None:
    """Why ``module`` cannot be used, judged without importing it (``harness plugins`` must stay fast)."""
    if importlib.util.find_spec(module) is None:
        return f"{distribution} is not installed (pip install 'harness-gptqmodel[{extra}]')"
    try:
        version(distribution)
    except PackageNotFoundError:
        return f"{module} is importable but the {distribution} distribution is not installed"
    return None


def calibration_examples(tokenizer, texts: list[str], max_length: int) -> list[dict[str, list[int]]]:
    """Tokenized calibration rows (input ids + attention mask), the form both libraries accept."""
    from harness.api import UserError

    if not texts:
        raise UserError("GPTQ needs calibration data, but the calibration set is empty")
    ids = tokenizer(list(texts), truncation=True, max_length=max_length, add_special_tokens=False)["input_ids"]
    return [{"input_ids": row, "attention_mask": [1] * len(row)} for row in ids]


class GPTQBackendStrategy(Strategy):
    """What the GPTQ backends share: a calibrated post-training method with GPTQ's bit widths and
    options, sized and checked from the checkpoint's shapes, reported the same way."""

    phase = Phase.POST_TRAINING
    bits = (4, 8, 3, 2)
    needs_calibration = True
    options_class = GPTQBackendOptions

    def checked_bf16_bytes(self, model_dir: Path | str, opts: GPTQBackendOptions) -> int:
        """The model's bf16 bytes, after refusing a group size some layer's width does not divide.

        Read from the shapes alone (no weights loaded), before the backend
        starts, so a bad group size fails at once and writes nothing.
        """
        from harness.api import bf16_bytes, check_group_size, meta_model

        shapes = meta_model(model_dir)
        check_group_size(shapes, max(opts.group_size, 0), self.name, per_channel=-1)
        return bf16_bytes(shapes)

    def saved_report(self, out_dir: Path, ctx: QuantContext, fp: int, seconds: float,
                     extra: dict[str, Any]) -> QuantReport:
        """Save the tokenizer beside the backend's checkpoint and report it (bytes as stored)."""
        from harness.api import stored_weight_bytes

        if ctx.tokenizer is not None:
            ctx.tokenizer.save_pretrained(out_dir)
        return QuantReport(weight_bytes=stored_weight_bytes(out_dir), fp_bytes=fp, seconds=seconds,
                           versions=library_versions(self.libraries), extra=extra)
