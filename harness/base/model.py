"""Resolving and loading models: an embedded model (tiny-arith, tiny-reason), a Hugging Face id, or a local path.

All three go through the same code: a reference resolves to something
``from_pretrained`` accepts, plus an identity string that cache keys use.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.base.errors import UserError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class ModelRef:
    """A model as the user named it, where it loads from, and what identifies it."""

    name: str
    source: str  # local directory or hub id
    identity: str  # goes into cache keys: changes when the weights change

    @property
    def is_local(self) -> bool:
        return Path(self.source).is_dir()


def _dir_identity(path: Path) -> str:
    """Hash of the directory's weight and config files (name, size, and content for small files)."""
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.suffix in (".json", ".safetensors", ".bin", ".model", ".txt"):
            h.update(f.name.encode())
            size = f.stat().st_size
            h.update(str(size).encode())
            if size < 64 * 2**20:
                h.update(f.read_bytes())
            else:
                h.update(str(f.stat().st_mtime_ns).encode())
    return h.hexdigest()[:16]


def resolve_model(ref: str) -> ModelRef:
    """An embedded model (``tiny-arith``, ``tiny-reason``) | local directory | hub id ``org/name``
    -> :class:`ModelRef`."""
    from harness import tiny

    if ref in tiny.MODELS:
        path = tiny.weights_dir(ref)
        if not (path / "config.json").exists():
            raise UserError(
                f"{ref}'s weights are missing from the installed package; rebuild them with "
                f"`harness tiny build --model {ref}`"
            )
        return ModelRef(ref, str(path), f"{ref}:{_dir_identity(path)}")
    path = Path(ref).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise UserError(f"model path {ref!r} has no config.json: not a transformers model directory")
        return ModelRef(ref, str(path.resolve()), f"local:{_dir_identity(path)}")
    if ref.startswith((".", "/", "~")) or ref.count("/") != 1:
        raise UserError(
            f"model {ref!r} is neither {tiny.NAME}, an existing directory, nor a hub id of the form org/name "
            f"(embedded models: {', '.join(tiny.MODELS)})"
        )
    from harness.base.hub import check_hub_model

    check_hub_model(ref)  # before anything is stored: an unknown or unreachable id fails in seconds, in one line
    return ModelRef(ref, ref, f"hub:{ref}")


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when present else ``cpu``; an explicit ``cuda`` without CUDA is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {device!r} asked for, but CUDA is not available here; use --device auto or cpu")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise UserError(f"unknown device {device!r}; choose auto, cpu or cuda[:N]")
    return device


#: the dtype a model computes in on each device class (what :func:`load_model` loads it as)
COMPUTE_DTYPE = {"cpu": "float32", "cuda": "bfloat16"}


def compute_identity(device: str, dtype: str | None = None) -> str:
    """``cpu:float32`` / ``cuda:bfloat16``: the device class and the dtype a run computes in (the engine's
    choice, :meth:`harness.core.engine.Engine.compute_dtype`; default: what :func:`load_model` loads). Part of
    its id: the same configuration in bf16 arithmetic is another experiment, not a replay."""
    cls = "cuda" if device.startswith("cuda") else device
    return f"{cls}:{dtype or COMPUTE_DTYPE.get(cls, 'float32')}"


def load_tokenizer(source: str | Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(source))
    tok.padding_side = "left"  # decoder-only batched generation
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(source: str | Path, device: str = "cpu", **kwargs) -> PreTrainedModel:
    """Load a causal LM for inference; fp32 on CPU (bf16 is slow on CPUs without AMX)."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = kwargs.pop("dtype", getattr(torch, COMPUTE_DTYPE["cpu" if device == "cpu" else "cuda"]))
    try:
        model = AutoModelForCausalLM.from_pretrained(str(source), dtype=dtype, **kwargs)
    except OSError as exc:
        raise UserError(f"cannot load model {str(source)!r}: {exc}") from None
    if not getattr(model, "hf_device_map", None) and not getattr(model, "is_quantized", False):
        model.to(device)
    model.eval()
    return model
