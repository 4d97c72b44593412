"""``formats``: the artifact formats the built-in strategies write, each recognising its own checkpoints.

Registered through ``register_formats`` like any plugin's, so the harness's core
names no format: a third party adds one (and an engine that runs it) with a
plugin of its own. The compressed-tensors family is split by what not every
engine runs (vLLM has no scheme for group-wise W8A8, and applies neither an
integer KV cache nor a transform config as written); the names match what
:func:`harness.toolkit.compress.compressed_format` (and the floating-point strategies,
``harness.strategies.fp``) say a strategy will write, so a checkpoint read back is refused or accepted as its plan was.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import hookimpl
from harness.api import ArtifactFormat, quantization_config_of


class PlainWeights(ArtifactFormat):
    name = "transformers"
    description = "plain transformers weights (safetensors, bf16/fp32)"

    def recognises(self, model_dir: Path, config: dict[str, Any]) -> bool:
        return quantization_config_of(config) is None


class PeftAdapter(ArtifactFormat):
    name = "peft-adapter"
    description = "a PEFT adapter on a quantized base (QLoRA)"
    #: an adapter folder carries its base's quantization config too: the adapter is what decides who runs it
    priority = 10

    def recognises(self, model_dir: Path, config: dict[str, Any]) -> bool:
        return (model_dir / "adapter").is_dir() or (model_dir / "adapter_config.json").exists()


class BitsAndBytes(ArtifactFormat):
    name = "bitsandbytes"
    description = "bitsandbytes LLM.int8 / NF4 / FP4 weights"

    def recognises(self, model_dir: Path, config: dict[str, Any]) -> bool:
        q = quantization_config_of(config)
        return q is not None and q.get("quant_method") == "bitsandbytes"


def compressed_variant(q: dict[str, Any]) -> str:
    """Which compressed-tensors format a ``compressed-tensors`` quantization config is: a transform
    config, then an integer KV cache, then the first config group with something not every engine
    runs (4-bit activations, weights under 4 bits, int8 activations), else plain integer weights."""
    if q.get("transform_config"):
        return "compressed-tensors-transforms"
    if q.get("kv_cache_scheme"):
        return "compressed-tensors-int-kv"
    for group in (q.get("config_groups") or {}).values():
        weights = group.get("weights") or {}
        acts = group.get("input_activations") or {}
        if weights.get("type") == "float":
            return float_variant(weights, acts)
        if acts and acts.get("num_bits", 16) < 8:
            return "compressed-tensors-int4-activations"
        bits = weights.get("num_bits", 16)
        if bits < 4:
            return "compressed-tensors-sub4-weights"
        if acts and acts.get("num_bits", 16) == 8:
            if bits != 8:
                return "compressed-tensors-w4a8"
            grouped = weights.get("strategy") == "group"
            return "compressed-tensors-w8a8-grouped" if grouped else "compressed-tensors-w8a8"
    return "compressed-tensors"


def float_variant(weights: dict[str, Any], acts: dict[str, Any] | None = None) -> str:
    """Which floating-point compressed-tensors format weights of ``type: float`` are (the ``fp8``, ``nvfp4`` and
    ``mxfp4`` strategies' presets). FP8 in 128x128 blocks, FP8 weights alone and FP8 with static activation
    scales are formats of their own beside FP8 weights with dynamic FP8 activations, since engines differ on
    them (vLLM's CPU build runs only the last); at 4 bits, NVFP4's groups of 16 under a global
    scale (``tensor_group``), or MX's groups of 32."""
    if weights.get("num_bits") == 8:
        if weights.get("strategy") == "block":
            return "compressed-tensors-fp8-block"
        if not acts:
            return "compressed-tensors-fp8-a16"
        return "compressed-tensors-fp8-static" if acts.get("dynamic") is False else "compressed-tensors-fp8"
    if weights.get("strategy") == "tensor_group":
        return "compressed-tensors-nvfp4"
    return "compressed-tensors-mxfp4" if weights.get("num_bits") == 4 else "compressed-tensors-float"


class CompressedTensors(ArtifactFormat):
    """One member of the compressed-tensors family: the one :func:`compressed_variant` names."""

    def __init__(self, name: str, description: str) -> None:
        self.name = name
        self.description = description

    def recognises(self, model_dir: Path, config: dict[str, Any]) -> bool:
        q = quantization_config_of(config)
        return q is not None and q.get("quant_method") == "compressed-tensors" and compressed_variant(q) == self.name


#: the built-in formats, in the order they are registered
BUILTIN: tuple[ArtifactFormat, ...] = (
    PeftAdapter(),
    PlainWeights(),
    BitsAndBytes(),
    CompressedTensors("compressed-tensors", "compressed-tensors integer weights, 16-bit activations (W4A16, W8A16)"),
    CompressedTensors("compressed-tensors-w8a8", "compressed-tensors int8 weights and dynamic int8 activations (W8A8)"),
    CompressedTensors("compressed-tensors-w8a8-grouped", "compressed-tensors W8A8 with group-wise weight scales"),
    CompressedTensors("compressed-tensors-w4a8", "compressed-tensors int4 weights and dynamic int8 activations (W4A8)"),
    CompressedTensors("compressed-tensors-int4-activations", "compressed-tensors with 4-bit activations (W4A4, W8A4)"),
    CompressedTensors("compressed-tensors-sub4-weights", "compressed-tensors with weights under 4 bits (W3, W2)"),
    CompressedTensors("compressed-tensors-int-kv", "compressed-tensors with an integer-quantized KV cache (KV8, KV4)"),
    CompressedTensors("compressed-tensors-transforms",
                      "compressed-tensors plus a transform config (QuaRot/SpinQuant rotations)"),
    CompressedTensors("compressed-tensors-fp8", "compressed-tensors FP8 E4M3 weights per channel or tensor, "
                                                "and dynamic FP8 activations (FP8_DYNAMIC)"),
    CompressedTensors("compressed-tensors-fp8-a16", "compressed-tensors FP8 weights, 16-bit activations (W8A16 FP8)"),
    CompressedTensors("compressed-tensors-fp8-static", "compressed-tensors FP8 weights and static per-tensor FP8 "
                                                       "activations (FP8)"),
    CompressedTensors("compressed-tensors-fp8-block", "compressed-tensors FP8 weights in 128x128 blocks (FP8_BLOCK)"),
    CompressedTensors("compressed-tensors-nvfp4", "compressed-tensors NVFP4 weights (NVFP4A16), or W4A4 (NVFP4)"),
    CompressedTensors("compressed-tensors-mxfp4", "compressed-tensors MXFP4 weights (MXFP4A16), or W4A4 (MXFP4)"),
    CompressedTensors("compressed-tensors-float", "compressed-tensors float weights of another width (MXFP8, ...)"),
)


@hookimpl
def register_formats(register: Callable[[ArtifactFormat], None]) -> None:
    for fmt in BUILTIN:
        register(fmt)
