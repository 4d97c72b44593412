"""What a checkpoint directory says about itself: its quantization method and artifact format.

The strategy declares the format it will write (checked in ``pipeline.plan``,
before anything is built); once the artifact exists, its ``config.json`` is
checked again before an engine starts on it, so a model given by path (or a
plugin that misdeclares) is refused with the same one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def quantization_config(model_dir: Path) -> dict[str, Any] | None:
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    q = config.get("quantization_config") or config.get("compression_config")
    return q if isinstance(q, dict) else None


def quant_method(model_dir: Path) -> str | None:
    """``compressed-tensors pack-quantized W4A16``, ``bitsandbytes nf4``, or None for plain weights."""
    q = quantization_config(model_dir)
    if q is None:
        return None
    method = q.get("quant_method", "unknown")
    if method == "compressed-tensors":
        parts = [method, q.get("format") or ""]
        for group in (q.get("config_groups") or {}).values():
            w = group.get("weights") or {}
            a = group.get("input_activations") or {}
            parts.append(f"W{w.get('num_bits', 16)}A{a.get('num_bits', 16) if a else 16}")
            break
        kv = q.get("kv_cache_scheme")
        if kv:
            parts.append(f"KV{kv.get('num_bits')}")
        return " ".join(p for p in parts if p)
    if method == "bitsandbytes":
        return f"bitsandbytes {q.get('bnb_4bit_quant_type', 'nf4') if q.get('load_in_4bit') else 'int8'}"
    return str(method)


def artifact_format(model_dir: Path) -> str:
    """The format of a written checkpoint (a key of :data:`harness.core.engine.FORMATS`)."""
    model_dir = Path(model_dir)
    if (model_dir / "adapter").is_dir() or (model_dir / "adapter_config.json").exists():
        return "peft-adapter"
    q = quantization_config(model_dir)
    if q is None:
        return "transformers"
    method = q.get("quant_method")
    if method == "bitsandbytes":
        return "bitsandbytes"
    if method != "compressed-tensors":
        return str(method)
    if q.get("transform_config"):
        return "compressed-tensors-transforms"
    if q.get("kv_cache_scheme"):
        return "compressed-tensors-int-kv"
    for group in (q.get("config_groups") or {}).values():
        a = group.get("input_activations") or {}
        if a and a.get("num_bits", 16) < 8:
            return "compressed-tensors-int4-activations"
        bits = (group.get("weights") or {}).get("num_bits", 16)
        if bits < 4:
            return "compressed-tensors-sub4-weights"
        if a and a.get("num_bits", 16) == 8:
            if bits != 8:
                return "compressed-tensors-w4a8"
            grouped = (group.get("weights") or {}).get("strategy") == "group"
            return "compressed-tensors-w8a8-grouped" if grouped else "compressed-tensors-w8a8"
    return "compressed-tensors"
