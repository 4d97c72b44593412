"""``quarot``: Hadamard rotations, then integer weights, activations and KV cache.

QuaRot (Ashkboos et al., 2024) rotates the residual stream and the attention
heads with Hadamard matrices so that outlier channels spread over all channels
before quantization; that is what makes 4-bit activations usable. llmcompressor
builds the same rotations as SpinQuant's (not learned) ``R1``/``R2`` (fused into
the weights) and ``R4`` (an online rotation before ``down_proj``); GPTQ or RTN
then quantizes the rotated weights, with dynamic per-token activations and a
static KV-cache scale.

``rotations=none`` runs the same pipeline without rotating: the baseline that
says whether rotation helps.

Embedding centering: llmcompressor's SpinQuantModifier subtracts each
embedding's mean before rotating, as SpinQuant's reference code does. That is
an identity only for LayerNorm models; for RMSNorm models (Llama, Qwen) it
changes the function: on tiny-arith, rotations alone move the logits by up to
0.79 and change 2% of greedy tokens with centering, and by 1e-5 without it
(facebookresearch/SpinQuant#14 reports the same on Llama-2). So it is off by
default (``center_embeddings=true`` restores it).

Reload: transformers drops online rotation matrices when it loads a
compressed-tensors checkpoint, which gives a wrong model. :meth:`QuaRot.load`
re-attaches them from the checkpoint's own transform config, and
:meth:`QuaRot.quantize` refuses to hand over a checkpoint whose reload does not
give the in-memory model's logits (see ``harness.toolkit.compress.verify_reload``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness import hookimpl
from harness.base.errors import UserError
from harness.compat.compressed_tensors import attach_online_transforms
from harness.core.strategy import FULL, QuantContext, QuantReport, Timer
from harness.toolkit.compress import (
    CompressedStrategy,
    quant_scheme,
    run_oneshot,
    save_verified,
    weight_modifier,
)

#: SpinQuant's names for QuaRot's rotations that this strategy offers. R3 (queries and
#: keys, online) is left out: with a KV-cache scheme compressed-tensors 0.19 quantizes the
#: rotated queries without a scale (``'Qwen3Attention' object has no attribute 'q_scale'``).
ROTATIONS = {
    "R1": "residual stream (fused into the weights)",
    "R2": "attention values and heads (fused)",
    "R4": "down_proj input (online, a Hadamard hook at run time)",
}


@dataclass
class QuaRotOptions:
    rotations: str = field(
        default="R1,R2,R4",
        metadata={"help": "comma-separated Hadamard rotations from R1 (residual), R2 (heads), R4 "
                          "(down_proj input, online); 'none' for no rotation (the plain baseline)"},
    )
    weights: Literal["gptq", "rtn"] = field(default="gptq", metadata={"help": "how the weights are rounded"})
    group_size: int = field(default=128, metadata={"help": "inputs sharing one weight scale; 0 = per output channel"})
    num_samples: int = field(default=128, metadata={"help": "calibration texts used (at most those given)"})
    transform_type: Literal["hadamard", "random-hadamard"] = field(
        default="hadamard", metadata={"help": "deterministic Hadamard (sizes 2^n) or randomized Hadamard"},
    )
    center_embeddings: bool = field(
        default=False,
        metadata={"help": "subtract each embedding's mean first, as SpinQuant's code and llmcompressor do; "
                          "off by default: it changes an RMSNorm model's outputs (see the module docstring)"},
    )
    block_size: int = field(
        default=0,
        metadata={"help": "rotate in blocks of this many channels; 0 = the largest power of two that "
                          "divides every rotated width"},
    )

    def __post_init__(self) -> None:
        names = self.rotation_list
        unknown = [r for r in names if r not in ROTATIONS]
        if unknown:
            raise ValueError(
                f"unknown rotation(s) {', '.join(unknown)} in rotations={self.rotations!r}; "
                f"choose from {', '.join(ROTATIONS)} (comma-separated) or 'none'"
            )
        if self.num_samples <= 0:
            raise ValueError(f"num_samples must be > 0, got {self.num_samples}")
        if self.group_size < 0:
            raise ValueError(f"group_size must be >= 0, got {self.group_size}")
        if self.block_size < 0 or self.block_size & (self.block_size - 1):
            raise ValueError(f"block_size must be 0 or a power of two, got {self.block_size}")

    @property
    def rotation_list(self) -> list[str]:
        if self.rotations.strip().lower() in ("none", ""):
            return []
        return [r.strip().upper() for r in self.rotations.split(",") if r.strip()]


def spinquant_modifier(center_embeddings: bool, **kwargs):
    """llmcompressor's SpinQuantModifier, optionally without its embedding centering."""
    from llmcompressor.modifiers.transform import SpinQuantModifier

    if center_embeddings:
        return SpinQuantModifier(**kwargs)

    class SpinQuantUncentered(SpinQuantModifier):
        """Overrides SpinQuantModifier._center_embeddings (llmcompressor 0.14) to leave the embeddings be."""

        def _center_embeddings(self, model) -> None:
            return None

    return SpinQuantUncentered(**kwargs)


def _block_size(config, rotations: list[str], asked: int) -> int:
    """The rotation block: the asked one, or the largest power of two dividing every rotated width."""
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    widths = [cfg.hidden_size] + ([cfg.intermediate_size] if "R4" in rotations else [])
    if asked:
        bad = [w for w in widths if w % asked]
        if bad:
            raise UserError(f"strategy 'quarot': block_size {asked} does not divide width(s) {bad}")
        return asked
    block = 1
    while all(w % (block * 2) == 0 for w in widths):
        block *= 2
    return block


class QuaRot(CompressedStrategy):
    name = "quarot"
    version = "2"  # calibration order drawn from the run's seed (harness.toolkit.compress.run_oneshot): reproducible
    description = "QuaRot-style Hadamard rotations, then GPTQ/RTN weights with int activations and KV cache"
    bits = (4, 8)
    act_bits = (4, 8, FULL)
    options_class = QuaRotOptions

    def artifact_format_for(self, spec, options) -> str:
        """With rotations the checkpoint carries a transform config that a server would not apply as written."""
        if options.rotation_list:
            return "compressed-tensors-transforms"
        return super().artifact_format_for(spec, options)

    def build(self, model_dir: Path, ctx: QuantContext):
        """The quantized model, in memory (bf16): rotate, then quantize. Returns (model, fp bytes, extra)."""
        import torch

        opts: QuaRotOptions = ctx.options
        texts, model, fp = self.calibrated_model(model_dir, ctx)
        rotations = opts.rotation_list
        recipe = []
        extra: dict = {"rotations": rotations}
        if rotations:
            block = _block_size(model.config, rotations, opts.block_size)
            extra["block_size"] = block
            recipe.append(spinquant_modifier(
                opts.center_embeddings, rotations=rotations, transform_type=opts.transform_type,
                transform_block_size=block, precision=torch.float32,
            ))
        scheme = quant_scheme(ctx.spec.bits, ctx.spec.act_bits, opts.group_size)
        recipe.append(weight_modifier(opts.weights, scheme, ctx.spec.kv_bits))
        with Timer() as t:
            run_oneshot(model, recipe, ctx.tokenizer, texts, seed=ctx.seed)
        extra["oneshot_seconds"] = t.seconds
        return model, fp, extra

    def quantize(self, model_dir: Path, out_dir: Path, ctx: QuantContext) -> QuantReport:
        from harness.base.weights import safetensors_tensor_bytes

        model, fp, extra = self.build(model_dir, ctx)
        report = save_verified(self, model, ctx, model_dir, out_dir, fp, extra["oneshot_seconds"], extra)
        # online rotation matrices are stored (and counted in weight_bytes): say how much of it they are
        report.extra["rotation_bytes"] = sum(
            n for f in out_dir.glob("*.safetensors") for k, n in safetensors_tensor_bytes(f).items()
            if any(f".{r}_" in k for r in ROTATIONS)
        )
        return report

    def load(self, model_dir: Path, device: str):
        """Plain transformers load, plus the online rotations it drops (see the module docstring)."""
        from harness.base.model import load_model

        model = load_model(model_dir, device)
        attach_online_transforms(model, model_dir)
        return model


@hookimpl
def register_strategies(register):
    register(QuaRot())
