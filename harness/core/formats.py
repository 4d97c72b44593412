"""What a checkpoint directory says about itself: its quantization method and artifact format.

The strategy declares the format it will write (checked in ``pipeline.plan``,
before anything is built); once the artifact exists, its ``config.json`` is
checked again before an engine starts on it, so a model given by path (or a
plugin that misdeclares) is refused with the same one line.

Which format a checkpoint is, the registered formats say (:class:`ArtifactFormat`,
``register_formats``): each recognises its own checkpoints, as vLLM's
quantization configs do, so a new format is a plugin and this module names none.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.base.errors import HarnessError
from harness.core.engine import ArtifactFormat
from harness.core.plugin_manager import get_registry

__all__ = [
    "PLAIN",
    "ArtifactFormat",
    "artifact_format",
    "checkpoint_config",
    "in_priority_order",
    "quant_method",
    "quantization_config",
    "quantization_config_of",
]

#: what a checkpoint no registered format recognises is called when it has no quantization config
PLAIN = "transformers"


def checkpoint_config(model_dir: Path) -> dict[str, Any]:
    """The checkpoint's parsed ``config.json``; empty when it has none (or an unreadable one)."""
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def quantization_config_of(config: dict[str, Any]) -> dict[str, Any] | None:
    """The quantization section of a parsed ``config.json`` (transformers' or compressed-tensors' key)."""
    q = config.get("quantization_config") or config.get("compression_config")
    return q if isinstance(q, dict) else None


def quantization_config(model_dir: Path) -> dict[str, Any] | None:
    """The quantization section of ``model_dir``'s ``config.json``, or None for plain weights."""
    return quantization_config_of(checkpoint_config(model_dir))


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


def in_priority_order(formats: Iterable[ArtifactFormat]) -> list[ArtifactFormat]:
    """The order formats are asked in: highest :attr:`~ArtifactFormat.priority` first, ties in the
    order given (the registry's is registration order, built-ins first, so a third party that wants
    a built-in's checkpoints says so with a higher priority instead of by its name sorting first)."""
    return sorted(formats, key=lambda f: -f.priority)


def artifact_format(model_dir: Path, formats: Iterable[ArtifactFormat] | None = None) -> str:
    """The name of the format of the checkpoint written in ``model_dir``.

    ``formats`` are the formats to ask (a registry's ``formats``); by default the process's
    registered ones. The first, in :func:`in_priority_order`, that recognises the checkpoint
    names it; one that raises is a HarnessError naming it. A checkpoint none recognises is
    named by its config's ``quant_method`` (so an engine may declare a method no plugin
    describes), or is plain ``transformers`` weights when it has no quantization config.
    """
    model_dir = Path(model_dir)
    config = checkpoint_config(model_dir)
    for fmt in in_priority_order(get_registry().formats if formats is None else formats):
        try:
            recognised = fmt.recognises(model_dir, config)
        except Exception as exc:  # a plugin's code: one line naming it, not a traceback from inside a run
            raise HarnessError(
                f"artifact format {fmt.name!r} failed to read {model_dir}: {type(exc).__name__}: {exc}"
            ) from exc
        if recognised:
            return fmt.name
    q = quantization_config_of(config)
    return PLAIN if q is None else str(q.get("quant_method", "unknown"))
