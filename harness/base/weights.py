"""Counting weight bytes honestly.

Compressed checkpoints decompress to full precision when reloaded on CPU, so
the in-memory size says nothing about the quantization. The stored size does:
packed integers, scales and zero points, read from the safetensors headers.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

_DTYPE_BYTES = {
    "F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2,
    "I16": 2, "U16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1,
}


def safetensors_tensor_bytes(path: Path) -> dict[str, int]:
    """Bytes of each tensor in one safetensors file, from its header alone."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        out[name] = end - start
    return out


def stored_weight_bytes(model_dir: Path) -> int:
    """Total tensor bytes of every safetensors file in ``model_dir`` (adapters excluded)."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors files in {model_dir}")
    return sum(sum(safetensors_tensor_bytes(f).values()) for f in files)


def bf16_bytes(model) -> int:
    """What the model's parameters take in bf16 (the reference the paper's memory uses)."""
    seen = set()
    total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel() * 2
    return total


def in_memory_bytes(model) -> int:
    """Bytes of the model's parameters and buffers as they sit in memory now."""
    seen = set()
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) in seen:
            continue
        seen.add(id(t))
        total += t.numel() * t.element_size()
    return total
