"""The options of ``grpo`` and ``dr_grpo``: names, defaults, presets and their checks, in one place.

Kept apart from :mod:`harness.trainers.grpo` (which turns them into TRL's ``GRPOConfig`` and runs the trainer),
as TRL keeps ``GRPOConfig`` apart from ``GRPOTrainer``: what a user may set, and why, reads here whole.
Every option whose default is ``None`` takes its value from ``preset`` (see :data:`PRESETS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from harness.toolkit.rollout_correction import TRL_CLIP_MAX, RolloutCorrection, RolloutQuant

#: values of the ``None``-default options, per preset
PRESETS: dict[str, dict[str, Any]] = {
    # measured on tiny-arith (2 contended CPU cores, one torch thread): 100 steps of 8 prompts x 8 completions,
    # about 3 s a step; with --prompt raw and levels=1,2 greedy arith accuracy rose 0.154 -> 0.206 (seed 0).
    # lr 1e-4 and above destabilises the tiny model (accuracy falls for tens of steps); 2e-5 barely moves it.
    "tiny": {
        "max_steps": 100,
        "learning_rate": 5e-5,
        "num_generations": 8,
        "per_device_train_batch_size": 64,
        "gradient_accumulation_steps": 1,
        "max_completion_length": 48,
        "save_steps": 25,
    },
    "paper": {
        "max_steps": -1,  # one epoch over the training data
        "learning_rate": 1e-6,
        "num_generations": 8,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 8,
        "max_completion_length": 512,
        "save_steps": 20,
    },
}


def _preset_help(name: str, what: str) -> dict:
    values = " / ".join(f"{p} {v[name]}" for p, v in PRESETS.items())
    return {"help": f"{what} (None = the preset's: {values})"}


@dataclass
class GRPOOptions:
    """Options of the ``grpo`` trainer; the names are GRPOConfig's where one exists."""

    preset: Literal["tiny", "paper"] = field(
        default="tiny",
        metadata={"help": "defaults for the options left at None: 'tiny' (tiny-arith on a CPU, minutes) "
                  "or 'paper' (the seed study's values)"},
    )
    max_steps: int | None = field(
        default=None, metadata=_preset_help("max_steps", "optimizer steps; -1 = num_train_epochs")
    )
    num_train_epochs: float = field(default=1.0, metadata={"help": "epochs when max_steps is -1 (paper: 1)"})
    learning_rate: float | None = field(
        default=None,
        metadata={"help": "peak learning rate (None = the in-training strategy's recommended rate when it has one, "
                  "e.g. qlora: paper 1e-4; else the preset's: "
                  + " / ".join(f"{p} {v['learning_rate']}" for p, v in PRESETS.items()) + ")"},
    )
    num_generations: int | None = field(
        default=None,
        metadata=_preset_help("num_generations", "completions sampled per prompt (the GRPO group)"),
    )
    per_device_train_batch_size: int | None = field(
        default=None,
        metadata=_preset_help("per_device_train_batch_size", "completions (not prompts) per micro-batch"),
    )
    gradient_accumulation_steps: int | None = field(
        default=None, metadata=_preset_help("gradient_accumulation_steps", "micro-batches per optimizer step")
    )
    max_completion_length: int | None = field(
        default=None, metadata=_preset_help("max_completion_length", "new tokens per sampled completion")
    )
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature while training (paper: 1.0)"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling while training (paper: 1.0)"})
    beta: float = field(default=0.0, metadata={"help": "KL coefficient; 0 = no reference model (paper: 0)"})
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo"] = field(
        default="grpo", metadata={"help": "TRL loss aggregation (paper: grpo; TRL's own default is dapo)"}
    )
    scale_rewards: Literal["group", "batch", "none"] = field(
        default="group", metadata={"help": "divide advantages by the reward std of the group, batch, or not at all"}
    )
    num_iterations: int = field(default=1, metadata={"help": "policy updates per generation batch (TRL's mu)"})
    lr_scheduler_type: str = field(default="linear", metadata={"help": "learning-rate schedule (paper: linear)"})
    warmup_steps: int = field(default=1, metadata={"help": "linear warm-up steps (paper: 1)"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm (paper: 1.0)"})
    levels: tuple[str, ...] = field(
        default=(),
        metadata={"help": "train only on problems of these levels, e.g. 3,4,5 (empty = all); the paper trains "
                  "on MATH levels 3-5, and on arith levels 1-2 are solved already (no learning signal)"},
    )
    save_steps: int | None = field(
        default=None, metadata=_preset_help("save_steps", "steps between resumable checkpoints")
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "trade compute for memory (TRL turns it on by default; off in the paper)"}
    )
    rollout_quant: Literal["none", "int8", "fp8", "w4"] = field(
        default="none",
        metadata={"help": "sample rollouts from a quantized copy of the policy, re-quantized every step: int8 "
                  "(W8A8: per-channel weights, dynamic per-token activations), fp8 (FP8_DYNAMIC), w4 (4-bit "
                  "weights, group 128); the loss stays full precision. Simulated (fake quantization) on hf"},
    )
    rollout_correction: Literal["none", "token_truncate", "token_mask", "sequence_truncate", "sequence_mask"] = field(
        default="none",
        metadata={"help": "TRL's importance-sampling correction of the rollout/train mismatch "
                  "(vllm_importance_sampling_mode): *_truncate clips the ratio to [clip_min, clip_max], *_mask "
                  "zeroes what leaves the band; none measures the mismatch without weighting the loss"},
    )
    rollout_clip_max: float = field(
        default=TRL_CLIP_MAX, metadata={"help": "upper bound of the importance ratio (TRL's default 3.0); >= 1"}
    )
    rollout_clip_min: float | None = field(
        default=None, metadata={"help": "lower bound of the importance ratio (None: none, TRL's default); in [0, 1]"}
    )
    rollout_engine: Literal["hf", "vllm"] = field(
        default="hf",
        metadata={"help": "what samples the rollouts: hf (transformers in the trainer's process; rollout_quant's "
                  "copies simulated) or vllm (TRL's own colocated vLLM on a CUDA GPU, use_vllm, with "
                  "rollout_correction mapped onto TRL's switches; rollout_quant must be none there)"},
    )

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"preset {self.preset!r} is unknown; choose one of {', '.join(PRESETS)}")
        for name, value in PRESETS[self.preset].items():
            # learning_rate stays None until train time: an in-training strategy may recommend its own
            if name != "learning_rate" and getattr(self, name) is None:
                setattr(self, name, value)
        self.levels = tuple(str(level) for level in self.levels)  # a TOML list may hold integers
        if self.num_generations < 2:
            raise ValueError(f"num_generations must be >= 2 (GRPO compares completions), got {self.num_generations}")
        batch = self.per_device_train_batch_size * self.gradient_accumulation_steps
        if batch % self.num_generations:
            raise ValueError(
                f"per_device_train_batch_size x gradient_accumulation_steps ({self.per_device_train_batch_size} x "
                f"{self.gradient_accumulation_steps} = {batch}) must be divisible by num_generations "
                f"({self.num_generations})"
            )
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"max_steps must be positive, or -1 for num_train_epochs; got {self.max_steps}")
        if self.learning_rate is not None and self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0 < self.temperature:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.max_completion_length < 1:
            raise ValueError(f"max_completion_length must be >= 1, got {self.max_completion_length}")
        self._check_rollout()

    def _check_rollout(self) -> None:
        quants, corrections = [q.value for q in RolloutQuant], [c.value for c in RolloutCorrection]
        if self.rollout_quant not in quants:
            raise ValueError(f"rollout_quant {self.rollout_quant!r} is unknown; choose one of {', '.join(quants)}")
        if self.rollout_correction not in corrections:
            raise ValueError(f"rollout_correction {self.rollout_correction!r} is unknown; choose one of "
                             f"{', '.join(corrections)}")
        if not self.rollout_clip_max >= 1:
            raise ValueError(f"rollout_clip_max must be >= 1 (1 is no mismatch), got {self.rollout_clip_max}")
        if self.rollout_clip_min is not None and not 0 <= self.rollout_clip_min <= 1:
            raise ValueError(f"rollout_clip_min must lie in [0, 1] (or be None), got {self.rollout_clip_min}")
        if self.rollout_clip_min is not None and self.rollout_clip_min >= self.rollout_clip_max:
            raise ValueError(f"rollout_clip_min ({self.rollout_clip_min}) must be below rollout_clip_max "
                             f"({self.rollout_clip_max})")
        if self.rollout_engine not in ("hf", "vllm"):
            raise ValueError(f"rollout_engine {self.rollout_engine!r} is unknown; choose one of hf, vllm")
        if self.rollout_engine == "vllm" and self.rollout_quant != "none":
            raise ValueError(f"rollout_engine=vllm with rollout_quant={self.rollout_quant}: TRL loads the policy's "
                             "full-precision weights into vLLM at every sync and re-quantizes nothing; quantized "
                             "rollouts run on rollout_engine=hf (simulated)")
        if self.rollout_correction != "none" and self.top_p < 1:
            raise ValueError(f"rollout_correction={self.rollout_correction} with top_p={self.top_p}: nucleus "
                             "truncation biases the importance ratio (the trained policy is not truncated); "
                             "use top_p=1 or rollout_correction=none")

    @property
    def rollouts_separate(self) -> bool:
        """Whether rollouts go through the harness's own sampler (a quantized copy, or a correction measured)."""
        return self.rollout_engine == "hf" and (self.rollout_quant != "none" or self.rollout_correction != "none")

    @property
    def prompts_per_step(self) -> int:
        return self.per_device_train_batch_size * self.gradient_accumulation_steps // self.num_generations


@dataclass
class DrGRPOOptions(GRPOOptions):
    """Options of ``dr_grpo``: GRPO without the length and std normalisations (arXiv 2503.20783)."""

    loss_type: Literal["dr_grpo", "grpo"] = field(
        default="dr_grpo",
        metadata={"help": "dr_grpo (TRL's Dr. GRPO loss: a constant normaliser); the seed study's code kept "
                  "'grpo' and only switched std scaling off: pass grpo to reproduce it"},
    )
    scale_rewards: Literal["none"] = field(
        default="none", metadata={"help": "always none: Dr. GRPO does not divide advantages by the reward std"}
    )


#: the rollout options at their defaults: left out of a checkpoint's key, so checkpoints trained before
#: they existed (which sampled from the policy itself, as the defaults do) keep their keys
ROLLOUT_DEFAULTS = {"rollout_quant": "none", "rollout_correction": "none", "rollout_clip_max": TRL_CLIP_MAX,
                    "rollout_clip_min": None, "rollout_engine": "hf"}
