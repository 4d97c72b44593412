"""``qlora``: RL on a frozen NF4 base with trainable LoRA adapters (bitsandbytes + PEFT).

The seed study's QLoRA row: NF4 base with double quantization, LoRA r=8,
alpha=16, dropout 0.05 on the q,k,v,o,gate,up,down projections (not lm_head),
learning rate 1e-4 instead of 1e-6 "to learn despite the quantization noise".

Two ways to evaluate the result (``eval_mode``):

- ``merged`` (default): the adapters are merged into a full-precision copy of
  the base, and the merged model is quantized to NF4 again. One ordinary 4-bit
  checkpoint; its weight bytes are those of any bnb NF4 model.
- ``adapter``: the study's way (its code says merging hurt): the NF4 base is
  stored beside the un-merged adapter and :meth:`QLoRA.load` rebuilds
  base + adapter. Weight bytes = NF4 base + adapter tensors.

Learning rate: the trainer's ``learning_rate``, when given, wins. Otherwise
the trainer asks :meth:`QLoRA.recommended_lr`: this strategy's own
``learning_rate`` option, else 1e-4 under the paper preset (the study's value)
and the tiny preset's QLoRA rate under the tiny one.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness import hookimpl
from harness.core.strategy import Phase, QuantContext, QuantReport, Strategy, Timer, library_versions

ADAPTER_DIR = "adapter"
MARKER = "harness_qlora.json"
PAPER_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
#: learning rate when neither the trainer nor this strategy's options set one, per trainer preset
RECOMMENDED_LR = {"paper": 1e-4, "tiny": 1e-3}


@dataclass
class QLoRAOptions:
    rank: int = field(default=8, metadata={"help": "LoRA rank r (paper: 8)"})
    alpha: int = field(default=16, metadata={"help": "LoRA alpha (paper: 16)"})
    dropout: float = field(default=0.05, metadata={"help": "LoRA dropout (paper: 0.05)"})
    target_modules: tuple[str, ...] = field(
        default=PAPER_TARGETS,
        metadata={"help": "module names that get adapters (paper: q,k,v,o,gate,up,down projections)"},
    )
    learning_rate: float | None = field(
        default=None,
        metadata={"help": "learning rate for QLoRA runs when the trainer's learning_rate is not set "
                  f"(None = per trainer preset: {', '.join(f'{k} {v}' for k, v in RECOMMENDED_LR.items())})"},
    )
    eval_mode: Literal["merged", "adapter"] = field(
        default="merged",
        metadata={"help": "merged: merge into the full-precision base, re-quantize to NF4; adapter: NF4 base + "
                  "un-merged adapter, as the study evaluated"},
    )
    double_quant: bool = field(default=True, metadata={"help": "bnb double quantization of the NF4 scales (paper: on)"})

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"rank must be >= 1, got {self.rank}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules:
            raise ValueError("target_modules must name at least one module, e.g. q_proj,v_proj")
        if self.learning_rate is not None and self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")


def nf4_config(device: str, double_quant: bool = True):
    """NF4 with fp32 compute on CPU (bf16 is slow there) and bf16 on a GPU, as the study."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_compute_dtype=torch.float32 if device == "cpu" else torch.bfloat16,
    )


def _device_map(device: str):
    return "cpu" if device == "cpu" else {"": device}


def load_nf4(model_dir: Path | str, device: str, double_quant: bool = True):
    from harness.base.model import load_model

    return load_model(
        model_dir, device, quantization_config=nf4_config(device, double_quant), device_map=_device_map(device)
    )


class QLoRA(Strategy):
    name = "qlora"
    description = "NF4 base (bitsandbytes) + LoRA adapters (PEFT) trained during RL"
    phase = Phase.IN_TRAINING
    bits = (4,)
    options_class = QLoRAOptions
    artifact_format = "bitsandbytes"
    libraries = ("bitsandbytes", "peft", "transformers", "torch")

    def unavailable_reason(self) -> str | None:
        import importlib.util

        missing = [m for m in ("bitsandbytes", "peft") if importlib.util.find_spec(m) is None]
        return f"missing {', '.join(missing)}" if missing else None

    def recommended_lr(self, ctx: QuantContext | None, preset: str) -> float | None:
        """The learning rate QLoRA runs use unless the trainer's is set (see module docstring)."""
        opts: QLoRAOptions | None = ctx.options if ctx is not None else None
        if opts is not None and opts.learning_rate is not None:
            return opts.learning_rate
        return RECOMMENDED_LR.get(preset)

    def prepare(self, model_dir: Path, ctx: QuantContext):
        import logging

        from peft import LoraConfig, prepare_model_for_kbit_training

        logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
        opts: QLoRAOptions = ctx.options
        model = load_nf4(model_dir, ctx.device, opts.double_quant)
        # gradient checkpointing off, as the study's code (it disables it right after this call)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        lora = LoraConfig(
            r=opts.rank,
            lora_alpha=opts.alpha,
            lora_dropout=opts.dropout,
            target_modules=list(opts.target_modules),
            bias="none",
            task_type="CAUSAL_LM",
        )
        return model, lora

    def finalize(self, model, out_dir: Path, ctx: QuantContext) -> QuantReport:
        import torch
        from peft import PeftModel

        from harness.base.model import load_model
        from harness.base.weights import bf16_bytes, safetensors_tensor_bytes, stored_weight_bytes

        opts: QLoRAOptions = ctx.options
        out_dir = Path(out_dir)
        base_dir = _base_dir(model)
        with Timer() as t, tempfile.TemporaryDirectory() as tmp:
            adapter = Path(tmp) / ADAPTER_DIR
            model.save_pretrained(adapter)
            if opts.eval_mode == "merged":
                fp_base = load_model(base_dir, "cpu", dtype=torch.float32)
                fp = bf16_bytes(fp_base)
                merged = PeftModel.from_pretrained(fp_base, adapter).merge_and_unload()
                merged_dir = Path(tmp) / "merged"
                merged.save_pretrained(merged_dir)
                load_nf4(merged_dir, "cpu", opts.double_quant).save_pretrained(out_dir)
                weight_bytes = stored_weight_bytes(out_dir)
            else:
                load_nf4(base_dir, "cpu", opts.double_quant).save_pretrained(out_dir)
                model.save_pretrained(out_dir / ADAPTER_DIR)
                fp = bf16_bytes(load_model(base_dir, "cpu", dtype=torch.float32))
                adapter_bytes = sum(
                    sum(safetensors_tensor_bytes(f).values()) for f in (out_dir / ADAPTER_DIR).glob("*.safetensors")
                )
                weight_bytes = stored_weight_bytes(out_dir) + adapter_bytes
        (out_dir / MARKER).write_text(json.dumps({"eval_mode": opts.eval_mode, "base": str(base_dir)}, indent=1))
        if ctx.tokenizer is not None:
            ctx.tokenizer.save_pretrained(out_dir)
        return QuantReport(
            weight_bytes=weight_bytes,
            fp_bytes=fp,
            seconds=t.seconds,
            versions=library_versions(self.libraries),
            extra={"eval_mode": opts.eval_mode, "rank": opts.rank, "alpha": opts.alpha,
                   "target_modules": list(opts.target_modules)},
        )

    def load(self, model_dir: Path, device: str):
        """The NF4 model; with ``eval_mode=adapter``, wrapped with its un-merged LoRA adapter."""
        import logging

        logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
        from harness.base.model import load_model

        model_dir = Path(model_dir)
        model = load_model(model_dir, device, device_map=_device_map(device))  # NF4 config from config.json
        if (model_dir / ADAPTER_DIR).is_dir():
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, model_dir / ADAPTER_DIR)
        model.eval()
        return model


def _base_dir(model) -> str:
    """Where the trained PEFT model's base was loaded from (recorded by PEFT in the adapter config)."""
    config = next(iter(model.peft_config.values()))
    if not config.base_model_name_or_path:
        raise RuntimeError("strategy 'qlora': the trained model does not record its base model's path")
    return config.base_model_name_or_path


@hookimpl
def register_strategies(register):
    register(QLoRA())
