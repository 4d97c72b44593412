"""Group-wise integer fake quantization with learned scales (LSQ-style), for quantization-aware training.

A layer computes with ``clamp(round_ste(w / s), qmin, qmax) * s`` per group of
inputs: the rounding passes the gradient straight through to the master weight
``w`` (none outside the clamp range), and the scale ``s`` learns too. The
integer range and the symmetric scale match compressed-tensors', so what QAT
trains is exactly what a compressed-tensors checkpoint stores.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def qrange(bits: int) -> tuple[int, int]:
    """Symmetric signed integer range, as compressed-tensors uses: 3 bits -> [-4, 3]."""
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def fake_quantize(weight: torch.Tensor, scale: torch.Tensor, bits: int) -> torch.Tensor:
    """``clamp(round(w / s), qmin, qmax) * s`` per group; ``scale`` is [out, groups].

    The rounding is straight-through (identity gradient); the clamp passes no
    gradient outside the range; the scale gets the LSQ gradient, so both
    master weights and scales learn.
    """
    import torch

    qmin, qmax = qrange(bits)
    out_features, in_features = weight.shape
    groups = scale.shape[1]
    x = weight.reshape(out_features, groups, in_features // groups) / scale.unsqueeze(-1)
    q = torch.clamp(x + (torch.round(x) - x).detach(), qmin, qmax)
    return (q * scale.unsqueeze(-1)).reshape(out_features, in_features)


def integers(weight: torch.Tensor, scale: torch.Tensor, bits: int) -> torch.Tensor:
    """The integer codes ``fake_quantize`` uses (no gradient)."""
    import torch

    qmin, qmax = qrange(bits)
    out_features, in_features = weight.shape
    x = weight.detach().reshape(out_features, scale.shape[1], -1) / scale.detach().unsqueeze(-1)
    return torch.clamp(torch.round(x), qmin, qmax).reshape(out_features, in_features)


@cache
def parametrization_class():
    import torch

    class GroupFakeQuant(torch.nn.Module):
        """Parametrization: the layer computes with ``fake_quantize(weight, scale)``; both are trained."""

        def __init__(self, scale: torch.Tensor, bits: int, train_scale: bool) -> None:
            super().__init__()
            self.bits = bits
            self.scale = torch.nn.Parameter(scale.clone().float(), requires_grad=train_scale)

        def forward(self, weight: torch.Tensor) -> torch.Tensor:
            # the checkpoint stores bf16 scales: train with them, so finalize writes the codes used
            scale = self.scale + (self.scale.to(torch.bfloat16).float() - self.scale).detach()
            return fake_quantize(weight, scale.to(weight.dtype), self.bits)

    return GroupFakeQuant


def dequantize(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``codes * scale`` per group: the weight a checkpoint of these integers and scales holds."""
    out_features, in_features = codes.shape
    return (codes.float().reshape(out_features, scale.shape[1], -1) * scale.unsqueeze(-1)).reshape(
        out_features, in_features
    )
