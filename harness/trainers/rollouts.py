"""The rollouts of ``grpo`` and ``dr_grpo`` when the harness samples them instead of TRL: from a quantized
copy of the policy (``rollout_quant``), corrected by TRL's own importance sampling (``rollout_correction``).

Kept apart from :mod:`harness.trainers.grpo` because it is a second job: grpo turns options into TRL's
config and runs it; this module decides whether the rollouts leave TRL's sampler, builds the quantized
copy (refusing what it cannot quantize before anything trains), hands TRL a ``rollout_func`` and the
correction's config fields, and says what the run stores about its rollouts. The quantization and the
mismatch figures are :mod:`harness.toolkit.rollout_correction`'s; the seam into TRL is
:mod:`harness.compat.trl`'s.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from harness.base.errors import UserError
from harness.compat.trl import rollout_corrected_trainer
from harness.toolkit.rollout_correction import (
    QuantizedRollout,
    RolloutCorrection,
    RolloutQuant,
    mismatch_metrics,
    sample_with_logprobs,
)

log = logging.getLogger(__name__)


class RolloutOptions(Protocol):
    """The rollout fields of a trainer's options (``GRPOOptions`` has them)."""

    rollout_quant: str
    rollout_correction: str
    rollout_clip_min: float | None
    rollout_clip_max: float

    @property
    def rollouts_separate(self) -> bool: ...


def correction_args(opts: RolloutOptions) -> dict[str, Any]:
    """TRL's importance-sampling fields for this run's rollouts. Without a correction TRL still computes
    (and logs) the raw ratio: token level, never clipped; the trainer then leaves it out of the loss."""
    if opts.rollout_correction == RolloutCorrection.NONE.value:
        return dict(vllm_importance_sampling_correction=True, vllm_importance_sampling_mode="token_truncate",
                    vllm_importance_sampling_clip_min=None, vllm_importance_sampling_clip_max=float("inf"))
    return dict(vllm_importance_sampling_correction=True, vllm_importance_sampling_mode=opts.rollout_correction,
                vllm_importance_sampling_clip_min=opts.rollout_clip_min,
                vllm_importance_sampling_clip_max=opts.rollout_clip_max)


def trl_vllm_args(opts: RolloutOptions) -> dict[str, Any]:
    """TRL's own vLLM rollouts (``rollout_engine=vllm``): colocated in the trainer's process, its correction of
    the vLLM/trainer mismatch switched by ``rollout_correction`` (none: off) with the same modes and bounds."""
    corrected = opts.rollout_correction != RolloutCorrection.NONE.value
    return dict(use_vllm=True, vllm_mode="colocate", vllm_importance_sampling_correction=corrected,
                **({"vllm_importance_sampling_mode": opts.rollout_correction,
                    "vllm_importance_sampling_clip_min": opts.rollout_clip_min,
                    "vllm_importance_sampling_clip_max": opts.rollout_clip_max} if corrected else {}))


def check_vllm_rollouts(device: str) -> None:
    """Refuse ``rollout_engine=vllm`` where TRL cannot start vLLM: no CUDA device, or no vLLM in this environment
    (the harness's vLLM *engine* runs in an environment of its own; TRL's rollouts need it importable here)."""
    import importlib.util

    if not device.startswith("cuda"):
        raise UserError(f"rollout_engine=vllm needs a CUDA GPU (TRL colocates vLLM with the trainer); the run's "
                        f"device is {device!r}: use rollout_engine=hf")
    if importlib.util.find_spec("vllm") is None:
        raise UserError("rollout_engine=vllm needs vLLM importable in the trainer's environment (pip install vllm, "
                        "the CUDA build); use rollout_engine=hf")


class RolloutSetup:
    """This run's rollouts when they leave TRL's own sampler: from a quantized copy of the policy (or
    the policy itself, with ``rollout_quant=none``), through TRL's ``rollout_func``, corrected by TRL's
    importance sampling (harness.compat.trl.rollout_corrected_trainer)."""

    def __init__(self, model, opts: RolloutOptions) -> None:
        self.opts = opts
        self.quant = RolloutQuant(opts.rollout_quant)
        self.correction = RolloutCorrection(opts.rollout_correction)
        # built now, so a model the scheme cannot quantize is refused before anything trains
        self.copy = QuantizedRollout(model, self.quant) if self.quant is not RolloutQuant.NONE else None

    @property
    def label(self) -> str:
        """The progress line's name: says the rollouts' precision, and that it is simulated."""
        if self.quant is RolloutQuant.NONE:
            return f"GRPO (full-precision rollouts, {self.correction.value})"
        return f"GRPO ({self.quant.value} rollouts, simulated; {self.correction.value})"

    @staticmethod
    def trainer_class():
        return rollout_corrected_trainer()

    def trainer_kwargs(self) -> dict[str, Any]:
        return dict(rollout_func=self.rollout_func, on_sync=self.sync,
                    apply_correction=self.correction is not RolloutCorrection.NONE, on_batch=self.figures)

    def sync(self, policy) -> None:
        if self.copy is not None:
            self.copy.sync(policy)

    def rollout_func(self, prompts: list, trainer) -> dict[str, list]:
        """TRL's ``rollout_func``: the prompts' ids, one sampled completion each, and its tokens'
        log-probabilities under the distribution sampled (temperature applied)."""
        if not all(isinstance(p, str) for p in prompts):
            raise TypeError("rollout_quant samples from rendered text prompts; got a conversational prompt")
        tokenizer = trainer.processing_class
        prompt_ids = tokenizer(text=prompts)["input_ids"]  # as TRL tokenizes a text prompt
        model = self.copy.model if self.copy is not None else trainer.accelerator.unwrap_model(trainer.model)
        completion_ids, logprobs = sample_with_logprobs(model, prompt_ids, trainer.generation_config,
                                                        tokenizer.pad_token_id)
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": logprobs}

    def figures(self, train_logps, rollout_logps, mask, weights) -> dict[str, float]:
        return mismatch_metrics(train_logps, rollout_logps, mask, weights, self.correction,
                                self.opts.rollout_clip_min, self.opts.rollout_clip_max)

    def record(self) -> dict[str, Any]:
        """What the run stores about its rollouts, saying the quantization was simulated."""
        simulated = self.quant is not RolloutQuant.NONE
        return {
            "quant": self.quant.value,
            "correction": self.correction.value,
            "clip_min": self.opts.rollout_clip_min,
            "clip_max": self.opts.rollout_clip_max,
            "simulated": simulated,
            "note": (f"rollouts sampled from a fake-quantized ({self.quant.value}) copy of the policy, re-quantized "
                     "every optimizer step: simulated quantization (compressed-tensors' quantizer in the compute "
                     "dtype), slower than full precision on this engine, not faster" if simulated else
                     "rollouts sampled from the policy itself: the measured mismatch is the forward passes' noise"),
            "syncs": self.copy.syncs if self.copy is not None else 0,
        }


def rollout_setup(model, peft_config, opts: RolloutOptions) -> RolloutSetup | None:
    """The run's :class:`RolloutSetup`, None when TRL samples as usual; refuses (UserError) what it
    cannot quantize before anything trains, and warns that a correction of unquantized rollouts
    corrects only noise."""
    if not opts.rollouts_separate:
        return None
    if opts.rollout_quant != RolloutQuant.NONE.value and (peft_config is not None or _parametrized(model)):
        raise UserError(f"rollout_quant={opts.rollout_quant} needs a full-precision policy; this run's in-training "
                        "strategy already changes how its layers compute (train without one, or rollout_quant=none)")
    if opts.rollout_quant == RolloutQuant.NONE.value:
        log.warning(
            "rollout_correction=%s with rollout_quant=none: rollouts come from the policy itself, so the ratio is 1 "
            "up to the forward passes' precision; the correction changes (almost) nothing", opts.rollout_correction)
    return RolloutSetup(model, opts)


def _parametrized(model) -> bool:
    from torch.nn.utils import parametrize  # torch, loaded only when a run trains

    return any(parametrize.is_parametrized(m) for m in model.modules())


#: recorded too when the rollouts are the harness's own (what TRL's correction ran with)
RECORDED_CORRECTION = ("vllm_importance_sampling_correction", "vllm_importance_sampling_mode",
                "vllm_importance_sampling_clip_min", "vllm_importance_sampling_clip_max")
