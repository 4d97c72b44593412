"""Mean squared input activations of every linear layer over calibration texts: llama.cpp's importance matrix.

llama.cpp's k-quants choose each block's scales by minimising a weighted squared error, and the weight of an
input column is how large that column's activations are on real text (``llama-imatrix`` collects, for every
matrix multiplication, the mean of x_j^2 over the tokens it saw). llama-cpp-python does not build that tool,
but ``llama_model_quantize`` takes the same numbers as plain arrays; this module computes them in transformers,
on the run's calibration texts, so the ``gguf`` strategy's importance-matrix variant is calibrated like every
other calibrated strategy (same texts, same seed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported when statistics are computed, not when the plugins load (`harness --help`)
    import numpy as np
    from torch import nn


def mean_squared_inputs(model: nn.Module, tokenizer, texts: Sequence[str], max_length: int = 512
                        ) -> tuple[dict[str, np.ndarray], int]:
    """``{weight name: mean over tokens of each input column's squared activation}`` for every ``nn.Linear``
    of ``model``, run on ``texts`` one at a time (no padding to count), and the number of tokens seen.

    Weight names are transformers' (``model.layers.0.self_attn.q_proj.weight``); the caller maps them to the
    file's own names. Sums are kept in float64 so a long calibration set loses nothing to rounding.
    """
    import torch
    from torch import nn

    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def recorder(name: str):
        def hook(_module: nn.Module, args: tuple) -> None:
            x = args[0].detach().reshape(-1, args[0].shape[-1]).to(torch.float64)
            sums[name] = sums.get(name, 0) + (x * x).sum(dim=0)
            counts[name] = counts.get(name, 0) + x.shape[0]

        return hook

    handles = [module.register_forward_pre_hook(recorder(f"{name}.weight"))
               for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    tokens = 0
    try:
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        with torch.no_grad():
            for text in texts:
                ids = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_length)["input_ids"]
                if ids.shape[1] == 0:
                    continue
                model(input_ids=ids.to(device))
                tokens += int(ids.shape[1])
        model.train(was_training)
    finally:
        for handle in handles:
            handle.remove()
    stats = {name: (total / counts[name]).to(torch.float32).cpu().numpy() for name, total in sums.items()}
    return stats, tokens
