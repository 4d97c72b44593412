"""TRL: the distillation trainer lives in ``trl.experimental`` (APIs there "may change or be removed
without notice"), so the ``kd`` trainer reaches it through this seam; and GRPOTrainer's importance-sampling
correction, which TRL applies only to vLLM rollouts, is reached here for the ``grpo`` trainer's quantized
rollouts (:func:`rollout_corrected_trainer`)."""

from __future__ import annotations

import os

from harness.compat import Seam

SEAM = Seam(
    library="trl",
    written_against="1.16.0",
    supported=">=1.10,<2",
    what="trl.experimental.gkd (GKDTrainer, GKDConfig: the kd trainer's off-policy distillation)",
)

#: GRPOTrainer internals the rollout correction relies on (``use_vllm`` as the correction's gate, the
#: rollout path's ``vllm_generation.sync_weights``, ``_generate_and_score_completions``'s output keys,
#: ``_metrics``): checked against 1.16 only
ROLLOUT_SEAM = Seam(
    library="trl",
    written_against="1.16.0",
    supported=">=1.16,<1.17",
    what="GRPOTrainer's vLLM importance-sampling correction applied to rollout_func rollouts",
)


def gkd():
    """``(GKDTrainer, GKDConfig)``, after checking TRL's version; TRL's experimental-import warning
    is silenced, since this seam is where that instability is accounted for."""
    SEAM.require()
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    return GKDTrainer, GKDConfig


def rollout_corrected_trainer():
    """A ``GRPOTrainer`` whose rollouts come from its ``rollout_func`` and are corrected by TRL's own
    importance sampling (``vllm_importance_sampling_*``), without vLLM.

    TRL 1.16 computes the ratio pi_train / pi_rollout, clips or masks it, weights the loss with it
    and logs ``sampling/*`` only where ``self.use_vllm`` is true (``_generate_and_score_completions``,
    ``_compute_loss``), while its experimental ``rollout_func`` already hands it the sampled tokens'
    log-probabilities. The subclass turns that switch on after construction (so no vLLM engine is
    built) and stands in for the engine's one call the rollout path makes, ``vllm_generation.sync_weights()``
    (made once per optimizer step, before generating), with ``on_sync(policy)``: the place to refresh a
    rollout copy of the policy. TRL's loss is untouched.

    Keyword arguments beyond ``GRPOTrainer``'s:

    - ``on_sync(policy)``: called with the unwrapped policy before the first generation after each
      optimizer step;
    - ``apply_correction``: False measures the mismatch without weighting the loss (the weights TRL
      computed are replaced by ones after it logged them);
    - ``on_batch(train_logps=, rollout_logps=, mask=, weights=)``: extra figures (name -> float) for each
      generation batch, logged with TRL's own under the same step.
    """
    ROLLOUT_SEAM.require()
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is experimental in 1.16
    import torch
    from trl import GRPOTrainer

    class _PolicySync:
        """What the rollout path asks of TRL's vLLM engine: ``sync_weights()``."""

        def __init__(self, trainer, on_sync) -> None:
            self.trainer, self.on_sync = trainer, on_sync

        def sync_weights(self) -> None:
            self.on_sync(self.trainer.accelerator.unwrap_model(self.trainer.model))

    class RolloutCorrectedGRPOTrainer(GRPOTrainer):
        def __init__(self, *args, on_sync=None, apply_correction: bool = True, on_batch=None, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            if self.rollout_func is None:
                raise ValueError("RolloutCorrectedGRPOTrainer needs a rollout_func: it corrects its rollouts")
            if not self.vllm_importance_sampling_correction:
                raise ValueError("RolloutCorrectedGRPOTrainer needs vllm_importance_sampling_correction=True")
            self.use_vllm = True  # TRL's gate of its importance-sampling correction (see the docstring)
            self.vllm_generation = _PolicySync(self, on_sync or (lambda policy: None))
            self._last_loaded_step = -1
            self.apply_correction = apply_correction
            self.on_batch = on_batch

        def _generate_and_score_completions(self, inputs):
            output = super()._generate_and_score_completions(inputs)
            mask = output["completion_mask"]
            if output.get("tool_mask") is not None:
                mask = mask * output["tool_mask"]
            if self.on_batch is not None:
                mode = "train" if self.model.training else "eval"
                figures = self.on_batch(train_logps=output["old_per_token_logps"],
                                        rollout_logps=output["sampling_per_token_logps"], mask=mask,
                                        weights=output["importance_sampling_ratio"])
                for name, value in figures.items():
                    self._metrics[mode][name].append(value)
            if not self.apply_correction:
                output["importance_sampling_ratio"] = torch.ones_like(output["importance_sampling_ratio"])
            return output

    return RolloutCorrectedGRPOTrainer
