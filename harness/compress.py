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

from harness.errors import UserError

LIBRARIES = ("llmcompressor", "compressed-tensors", "transformers", "torch")


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


def check_group_size(model, group_size: int | None, strategy: str, ignore: Sequence[str] = ("lm_head",)) -> None:
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
                    f"(or group_size=0 for per-channel)"
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


def run_oneshot(model, recipe: Any, tokenizer=None, texts: Sequence[str] = (), max_length: int = 512) -> None:
    """Apply ``recipe`` to ``model`` in place (calibrating on ``texts`` when given)."""
    from llmcompressor import oneshot

    quiet_llmcompressor()
    kwargs: dict[str, Any] = {}
    if texts:
        ds = calibration_dataset(tokenizer, texts, max_length)
        kwargs.update(dataset=ds, num_calibration_samples=len(ds), max_seq_length=max_length)
    oneshot(model=model, recipe=recipe, **kwargs)


def save_compressed(model, tokenizer, out_dir: Path) -> None:
    """Save as compressed-tensors (packed integers + scales), loadable by plain transformers."""
    model.save_pretrained(out_dir, save_compressed=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(out_dir)
