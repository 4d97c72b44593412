"""``grpo`` and ``dr_grpo``: RL fine-tuning through TRL's GRPOTrainer.

Both are thin: this module turns one options dataclass into a ``GRPOConfig``,
builds the prompt/answer dataset, hands the model core gives it (plain, or
prepared by an in-training strategy such as ``ste`` or ``qlora``; see
:mod:`harness.runs.training`) to TRL, forwards TRL's per-step logs to the pipeline,
and returns the trained model for core to save or finalize. Dr. GRPO is TRL's own ``loss_type="dr_grpo"`` with
``scale_rewards="none"``; no loss is re-implemented here.

Presets (:mod:`harness.trainers.grpo_options`). Every option whose default is ``None`` takes its value from
``preset``: ``tiny`` (the default) is scaled so that GRPO visibly improves
tiny-arith within a few CPU minutes; ``paper`` is the seed study's setting
(``shared/PAPER.md``): learning rate 1e-6 (1e-4 with QLoRA), 8 generations per
prompt, 4 completions per device x 8 accumulation steps (4 prompts per
optimizer step), 512 completion tokens, one epoch. An explicit
``--trainer-opt key=value`` always wins over the preset.

On tiny-arith the effect of GRPO shows under the seed study's raw prompt
(``--prompt raw --trainer-opt levels=1,2``): its SFT saw that format less, and
RL carries over what it learned under the boxed chat prompt. Under the boxed
prompt the tiny model is already near what a few hundred RL prompts can teach.

Quantized rollouts. ``rollout_quant`` samples the completions from a quantized copy of the
policy (re-quantized from the policy's weights before each optimizer step's first generation),
while the loss and the ``old`` log-probabilities stay the full-precision policy's;
``rollout_correction`` weights the loss by TRL's own importance-sampling correction of that
mismatch (its ``vllm_importance_sampling_*`` modes, reached through :mod:`harness.compat.trl`).
With ``hf`` on a CPU the quantization is simulated (:mod:`harness.toolkit.rollout_correction`).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import hookimpl
from harness.core.trainer import TrainContext, Trainer, TrainReport
from harness.trainers import rollouts
from harness.trainers.grpo_options import PRESETS, ROLLOUT_DEFAULTS, DrGRPOOptions, GRPOOptions

if TYPE_CHECKING:
    from harness.core.benchmark import Problem


class GRPO(Trainer):
    name = "grpo"
    description = "GRPO through TRL's GRPOTrainer (reward: 1 correct + 0.1 boxed)"
    config_class = GRPOOptions
    libraries = ("trl", "transformers", "torch", "peft", "accelerate")

    def unavailable_reason(self) -> str | None:
        import importlib.util

        return None if importlib.util.find_spec("trl") else "TRL is not installed (pip install trl)"

    def train(self, model, peft_config, ctx: TrainContext) -> TrainReport:
        return run_grpo(model, peft_config, ctx, ctx.config)

    def gpu_reason(self, config: Any) -> str | None:
        if config.rollout_engine == "vllm":
            return f"trainer {self.name!r} with rollout_engine=vllm needs a CUDA GPU (TRL colocates vLLM with it)"
        return super().gpu_reason(config)

    def describe_config(self, config: Any) -> dict:
        described = super().describe_config(config)
        return {k: v for k, v in described.items() if k not in ROLLOUT_DEFAULTS or v != ROLLOUT_DEFAULTS[k]}


class DrGRPO(GRPO):
    name = "dr_grpo"
    description = "Dr. GRPO through TRL (loss_type=dr_grpo, scale_rewards=none)"
    config_class = DrGRPOOptions


# -- the training run -----------------------------------------------------------------------------


def select_problems(problems: list[Problem], opts: GRPOOptions, seed: int) -> list[Problem]:
    """The problems this run can reach, in a seeded order.

    With ``max_steps`` set, only ``max_steps x prompts_per_step`` problems are
    ever sampled: rendering the other tens of thousands of prompts would cost
    more than training on the tiny model.
    """
    from harness.base.errors import UserError

    chosen = [p for p in problems if not opts.levels or str(p.level) in opts.levels]
    if not chosen:
        levels = sorted({str(p.level) for p in problems})
        raise UserError(f"no training problem has a level in {list(opts.levels)}; levels present: {levels}")
    if opts.max_steps > 0:
        need = opts.max_steps * opts.prompts_per_step  # an upper bound (num_iterations reuses prompts)
        chosen = random.Random(seed).sample(chosen, min(need, len(chosen)))
    return chosen


def effective_learning_rate(ctx: TrainContext, opts: GRPOOptions) -> float:
    """User's rate, else the in-training strategy's recommendation (qlora has one), else the preset's."""
    if opts.learning_rate is not None:
        return opts.learning_rate
    lr = ctx.recommended_lr(opts.preset)
    return lr if lr is not None else PRESETS[opts.preset]["learning_rate"]


def grpo_config(ctx: TrainContext, opts: GRPOOptions, output_dir: Path, lr: float):
    """The TRL GRPOConfig of this run (what the stored trainer config describes)."""
    from trl import GRPOConfig

    from harness.trainers.trl_support import run_args

    return GRPOConfig(
        **run_args(ctx, output_dir, opts.save_steps),
        max_steps=opts.max_steps,
        num_train_epochs=opts.num_train_epochs,
        learning_rate=lr,
        lr_scheduler_type=opts.lr_scheduler_type,
        warmup_steps=opts.warmup_steps,
        max_grad_norm=opts.max_grad_norm,
        per_device_train_batch_size=opts.per_device_train_batch_size,
        gradient_accumulation_steps=opts.gradient_accumulation_steps,
        num_generations=opts.num_generations,
        max_completion_length=opts.max_completion_length,
        temperature=opts.temperature,
        top_p=opts.top_p,
        beta=opts.beta,
        loss_type=opts.loss_type,
        scale_rewards=opts.scale_rewards,
        num_iterations=opts.num_iterations,
        gradient_checkpointing=opts.gradient_checkpointing,
        **(rollouts.correction_args(opts) if opts.rollouts_separate else {}),
        **(rollouts.trl_vllm_args(opts) if opts.rollout_engine == "vllm" else {}),
    )


def run_grpo(model, peft_config, ctx: TrainContext, opts: GRPOOptions) -> TrainReport:
    """Train with TRL's GRPOTrainer; resume from ``ctx.checkpoint_dir`` when a checkpoint is there."""
    from datasets import Dataset
    from trl import GRPOTrainer

    from harness.base.model import load_tokenizer
    from harness.toolkit.reward import REWARD_FUNCS
    from harness.trainers import trl_support

    tokenizer = load_tokenizer(ctx.model_dir)
    problems = select_problems(ctx.problems, opts, ctx.seed)
    dataset = Dataset.from_dict(
        {"prompt": [ctx.prompt_for(p) for p in problems], "answer": [str(p.answer) for p in problems]}
    )
    if opts.rollout_engine == "vllm":
        rollouts.check_vllm_rollouts(ctx.device)
    lr = effective_learning_rate(ctx, opts)
    checkpoints = trl_support.checkpoint_folder(ctx)
    args = grpo_config(ctx, opts, checkpoints, lr)
    curve: list[dict] = []
    rollout = rollouts.rollout_setup(model, peft_config, opts)
    trainer = (rollout.trainer_class() if rollout else GRPOTrainer)(
        model=model,
        reward_funcs=list(REWARD_FUNCS),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        # the in-training strategy's callbacks first: what they add to a step's logs reaches the curve
        callbacks=[*ctx.callbacks, *trl_support.callbacks(ctx, rollout.label if rollout else "GRPO", opts.max_steps,
                                                            curve, _describe)],
        **(rollout.trainer_kwargs() if rollout else {}),
    )
    trl_support.quiet(trainer)
    if ctx.device == "cpu":
        trl_support.trainable_to_fp32(trainer.model)

    run = trl_support.train_resumable(trainer, checkpoints)
    return TrainReport(
        steps=trainer.state.global_step,
        seconds=run["seconds"],
        curve=curve,
        model=trainer.model,
        extra={
            "learning_rate": lr,
            "resumed_from": run["resumed_from"],
            "train_problems": len(problems),
            "seconds_per_step": run["seconds_per_step"],
            "trl_config": {k: getattr(args, k) for k in _RECORDED + (rollouts.RECORDED_CORRECTION if rollout else ())},
            **({"rollout": rollout.record()} if rollout else {}),
        },
    )


def _describe(logs: dict) -> str | None:
    return f"reward {logs['reward']:.3f}" if "reward" in logs else None


#: GRPOConfig fields stored with the run, so the record shows exactly what TRL ran
_RECORDED = (
    "loss_type", "scale_rewards", "beta", "learning_rate", "num_generations", "per_device_train_batch_size",
    "gradient_accumulation_steps", "generation_batch_size", "max_completion_length", "temperature", "top_p",
    "max_steps", "num_train_epochs", "lr_scheduler_type", "warmup_steps", "max_grad_norm", "num_iterations",
    "bf16", "seed",
)


@hookimpl
def register_trainers(register):
    register(GRPO())
    register(DrGRPO())


__all__ = ["GRPO", "DrGRPO", "GRPOOptions", "DrGRPOOptions", "PRESETS"]
