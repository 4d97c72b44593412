"""Rollouts sampled from a quantized copy of the policy, and how far they drift from the policy trained.

FlashRL and verl sample RL rollouts from an INT8 or FP8 copy of the policy (sampling is most of a
step's time) while the trainer keeps full precision; the mismatch between the two policies is then
corrected by importance sampling (TRL's ``vllm_importance_sampling_*`` modes). This module holds the
harness's side of that: the quantized rollout copy, sampling from it with the log-probabilities of
the distribution actually sampled, and the mismatch figures TRL does not log itself. The correction
is TRL's own (reached through :mod:`harness.compat.trl`); nothing here weights a loss.

The quantization is *simulated* (fake quantization: quantize, then dequantize, in the compute dtype)
with compressed-tensors' own quantizer and the schemes the harness's strategies store (``int8`` is the
W8A8 scheme of ``rtn --bits 8 --act-bits 8``, ``w4`` the W4A16 group-128 scheme, ``fp8``
llmcompressor's ``FP8_DYNAMIC`` preset), so a rollout computes what the stored checkpoint of that
scheme computes. On a CPU that makes sampling slower, not faster; the speed comes from real int8/fp8
kernels (vLLM on a GPU), which this simulation does not claim.
"""

from __future__ import annotations

import copy
import math
from enum import Enum
from typing import TYPE_CHECKING, Any

from harness.toolkit.compress import check_group_size, quant_scheme

if TYPE_CHECKING:
    import torch


class RolloutQuant(str, Enum):
    """The precision rollouts are sampled in."""

    NONE = "none"  #: the policy itself (today's behaviour)
    INT8 = "int8"  #: int8 per-channel weights, dynamic per-token int8 activations (the W8A8 scheme)
    FP8 = "fp8"  #: FP8 (e4m3) per-channel weights, dynamic per-token FP8 activations (FP8_DYNAMIC)
    W4 = "w4"  #: 4-bit group-wise weights (group 128), activations unquantized (W4A16)


class RolloutCorrection(str, Enum):
    """TRL's importance-sampling modes (``vllm_importance_sampling_mode``), plus ``none``."""

    NONE = "none"  #: no correction: the loss ignores the rollout policy (the mismatch is still measured)
    TOKEN_TRUNCATE = "token_truncate"  #: per-token ratio clipped to [clip_min, clip_max] (TIS)
    TOKEN_MASK = "token_mask"  #: tokens whose ratio leaves [clip_min, clip_max] get weight 0 (MIS / IcePop)
    SEQUENCE_TRUNCATE = "sequence_truncate"  #: one clipped ratio per sequence (product of its tokens' ratios)
    SEQUENCE_MASK = "sequence_mask"  #: sequences whose ratio leaves the band get weight 0

    @property
    def sequence_level(self) -> bool:
        return self in (RolloutCorrection.SEQUENCE_TRUNCATE, RolloutCorrection.SEQUENCE_MASK)


#: TRL's default ``vllm_importance_sampling_clip_max``
TRL_CLIP_MAX = 3.0
#: inputs sharing one scale in ``w4`` rollouts (the harness's W4A16 default)
W4_GROUP_SIZE = 128
#: linear layers left in full precision, as every strategy of the harness leaves them
IGNORED = ("lm_head",)


def rollout_scheme(quant: RolloutQuant):
    """The compressed-tensors ``QuantizationScheme`` a rollout copy computes with (None for ``none``)."""
    from compressed_tensors.quantization import preset_name_to_scheme

    if quant is RolloutQuant.INT8:
        return quant_scheme(8, 8)
    if quant is RolloutQuant.FP8:
        return preset_name_to_scheme("FP8_DYNAMIC", ["Linear"])
    if quant is RolloutQuant.W4:
        return quant_scheme(4, 16, W4_GROUP_SIZE)
    return None


def target_layers(model) -> list[tuple[str, Any]]:
    """The linear layers a rollout copy quantizes: every ``nn.Linear`` but the output head."""
    import torch

    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and not any(n.endswith(i) for i in IGNORED)]


def fake_quantize_weight(weight: torch.Tensor, args) -> torch.Tensor:
    """``weight`` quantized and dequantized under ``args`` (compressed-tensors' quantizer, min-max scales
    per output channel or per group, as llmcompressor's default observer computes them)."""
    from compressed_tensors.quantization.lifecycle import fake_quantize
    from compressed_tensors.quantization.utils import calculate_qparams

    w = weight.detach().float()
    if args.group_size:
        grouped = w.reshape(w.shape[0], -1, args.group_size)
        low, high = grouped.amin(-1), grouped.amax(-1)
    else:
        low, high = w.amin(1, keepdim=True), w.amax(1, keepdim=True)
    scale, zero_point = calculate_qparams(low, high, args)
    return fake_quantize(w, scale, zero_point, args).to(weight.dtype)


def _activation_hook(args):
    """A forward pre-hook fake-quantizing a layer's input with dynamic (per-token) scales."""
    from compressed_tensors.quantization.lifecycle import fake_quantize
    from compressed_tensors.quantization.utils import compute_dynamic_scales_and_zp

    def hook(module, inputs):
        x = inputs[0]
        scale, zero_point = compute_dynamic_scales_and_zp(x.float(), args, module)
        return (fake_quantize(x.float(), scale, zero_point, args).to(x.dtype), *inputs[1:])

    return hook


class QuantizedRollout:
    """A frozen copy of the policy whose linear layers compute in ``quant``'s scheme.

    :meth:`sync` copies the policy's current weights in and quantizes them again, so the rollout
    policy follows training; activations are quantized at every forward (dynamic scales).
    """

    def __init__(self, policy, quant: RolloutQuant) -> None:
        self.quant = RolloutQuant(quant)
        self.scheme = rollout_scheme(self.quant)
        if self.scheme is None:
            raise ValueError("rollout_quant=none needs no quantized copy: sample from the policy itself")
        check_group_size(policy, self.scheme.weights.group_size, f"rollout_quant={self.quant.value}")
        self.model = copy.deepcopy(policy).eval()
        for param in self.model.parameters():
            param.requires_grad_(False)
        self.layers = target_layers(self.model)
        if self.scheme.input_activations is not None:
            for _, layer in self.layers:
                layer.register_forward_pre_hook(_activation_hook(self.scheme.input_activations))
        self.syncs = 0

    def sync(self, policy) -> None:
        """Copy ``policy``'s weights in, then fake-quantize the target layers' weights."""
        import torch

        with torch.no_grad():
            for mine, theirs in zip(self.model.state_dict().values(), policy.state_dict().values(), strict=True):
                mine.copy_(theirs)
            for _, layer in self.layers:
                layer.weight.copy_(fake_quantize_weight(layer.weight, self.scheme.weights))
        self.syncs += 1


def sample_with_logprobs(model, prompt_ids: list[list[int]], generation_config, pad_token_id: int
                         ) -> tuple[list[list[int]], list[list[float]]]:
    """Sample one completion per prompt; each completion's tokens (cut after the first end-of-sequence,
    which is kept) and their log-probabilities under the distribution actually sampled from.

    Those are log-softmax of the *processed* scores transformers draws from (temperature applied, and
    any top-k/top-p truncation, which is why a correction refuses truncation: the trainer's policy has
    none). Scores are kept for every step, so memory grows as batch x length x vocabulary.
    """
    import torch

    width = max(len(ids) for ids in prompt_ids)
    input_ids = torch.full((len(prompt_ids), width), pad_token_id, dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    for row, ids in enumerate(prompt_ids):
        input_ids[row, width - len(ids):] = torch.tensor(ids)
        attention[row, width - len(ids):] = 1
    device = next(model.parameters()).device
    with torch.no_grad():
        out = model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                             generation_config=generation_config, output_scores=True, return_dict_in_generate=True)
    new = out.sequences[:, width:]
    scores = torch.stack(out.scores, dim=1)[:, : new.shape[1]]
    logps = torch.log_softmax(scores.float(), dim=-1).gather(-1, new[:, : scores.shape[1]].unsqueeze(-1)).squeeze(-1)
    eos = generation_config.eos_token_id
    eos = set(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
    completions, logprobs = [], []
    for ids, lps in zip(new.tolist(), logps.tolist(), strict=True):
        end = next((i + 1 for i, t in enumerate(ids) if t in eos), len(ids))
        completions.append(ids[:end])
        logprobs.append(lps[:end])
    return completions, logprobs


# -- mismatch figures --------------------------------------------------------------------------------


#: the figures :func:`mismatch_metrics` adds to TRL's ``sampling/sampling_logp_difference/*`` and
#: ``sampling/importance_sampling_ratio/*``
EXTRA_METRICS = ("sampling/clipped_fraction", "sampling/kl_rollout_train", "sampling/effective_sample_size")


def raw_ratio(train_logps: torch.Tensor, rollout_logps: torch.Tensor, mask: torch.Tensor,
              correction: RolloutCorrection) -> torch.Tensor:
    """pi_train / pi_rollout before any clipping, at the mode's level: per token ([B, T], padding 1)
    or per sequence ([B, 1], the product over its tokens); token level for ``none``."""
    import torch

    diff = torch.nan_to_num((train_logps - rollout_logps) * mask, nan=0.0)
    if correction.sequence_level:
        diff = diff.sum(-1, keepdim=True)
    return torch.exp(diff)


def mismatch_metrics(train_logps: torch.Tensor, rollout_logps: torch.Tensor, mask: torch.Tensor,
                     weights: torch.Tensor, correction: RolloutCorrection, clip_min: float | None,
                     clip_max: float | None) -> dict[str, float]:
    """What TRL does not log of the mismatch, for one generation batch:

    - ``sampling/clipped_fraction``: the share of the mode's units (tokens, or sequences) whose raw
      ratio lies outside [clip_min, clip_max], i.e. truncated (``*_truncate``) or masked (``*_mask``);
      for ``none`` the share that would be;
    - ``sampling/kl_rollout_train``: KL(pi_rollout || pi_train) per token, Schulman's k3 estimator
      ``r - 1 - log r`` (r = pi_train / pi_rollout; unbiased, never negative) over the sampled tokens;
    - ``sampling/effective_sample_size``: (sum w)^2 / (n sum w^2) of the weights the loss applies
      (``weights``; the raw ratios for ``none``), 1 when every weight is equal.
    """
    import torch

    m = mask.bool()
    d = torch.nan_to_num(train_logps - rollout_logps, nan=0.0)[m]
    kl = (torch.exp(d) - 1 - d).mean().item() if d.numel() else 0.0
    raw = raw_ratio(train_logps, rollout_logps, mask, correction)
    units = raw.flatten() if correction.sequence_level else raw[m]
    low = -math.inf if clip_min is None else clip_min
    high = math.inf if clip_max is None else clip_max
    outside = ((units < low) | (units > high)).float().mean().item() if units.numel() else 0.0
    w = (weights.flatten() if weights.shape[-1] == 1 else weights[m]).double()
    square = (w * w).sum().item()
    ess = (w.sum().item() ** 2) / (w.numel() * square) if square > 0 else 0.0
    return {"sampling/clipped_fraction": outside, "sampling/kl_rollout_train": kl,
            "sampling/effective_sample_size": ess}


__all__ = ["RolloutQuant", "RolloutCorrection", "QuantizedRollout", "sample_with_logprobs", "mismatch_metrics",
           "raw_ratio", "rollout_scheme", "fake_quantize_weight", "TRL_CLIP_MAX", "EXTRA_METRICS"]
