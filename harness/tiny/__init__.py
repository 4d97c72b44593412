"""``tiny-arith``: the embedded default model (package data, rebuilt by ``harness tiny build``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

NAME = "tiny-arith"


def weights_dir() -> Path:
    """The shipped model directory (config, safetensors, tokenizer)."""
    return Path(str(resources.files("harness.tiny").joinpath("weights")))
