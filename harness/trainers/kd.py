"""``kd``: knowledge distillation from the run's input model, through TRL's ``GKDTrainer``.

The student is the model core hands over (plain, or prepared by an
in-training strategy: kd-qat's fake-quantized GPTQ initialisation); the
teacher is the model the run started from, in full precision
(:attr:`~harness.core.trainer.TrainContext.base_model`). The data is off-policy,
as in Reasoning-QAT (arXiv 2601.14888): the teacher's own completions for
training-domain prompts, sampled once before training (``data=teacher``), or
the set's reference solutions (``data=reference``). TRL's GKDTrainer with
``lmbda=0`` (never the student's own generations) and ``seq_kd=False`` (no
per-step teacher generation) is exactly that: its generalized JSD loss at
``beta=0`` is the forward KL(teacher || student), at ``beta=1`` the reverse
one, averaged over completion tokens. ``objective=ntp`` (the study's SFT
baseline) trains on the same tokens with TRL's SFTTrainer (the model's own
next-token cross-entropy on completion tokens). No loss or loop is written here.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from harness import hookimpl
from harness.base.errors import UserError
from harness.core.trainer import TrainContext, Trainer, TrainReport

if TYPE_CHECKING:
    from harness.core.benchmark import Problem


@dataclass
class KDOptions:
    """Options of the ``kd`` trainer (defaults: Reasoning-QAT's recipe scaled to tiny-arith on a CPU)."""

    objective: Literal["kd", "ntp"] = field(
        default="kd",
        metadata={"help": "kd: KL to the teacher's token distributions (GKDTrainer); ntp: next-token "
                  "cross-entropy on the same tokens (SFTTrainer; the study's SFT baseline)"},
    )
    kl: Literal["forward", "reverse"] = field(
        default="forward",
        metadata={"help": "forward KL(teacher || student) (the study's default; GKD beta=0) or reverse "
                  "KL(student || teacher) (beta=1)"},
    )
    data: Literal["teacher", "reference"] = field(
        default="teacher",
        metadata={"help": "teacher: completions the teacher samples for the training prompts; reference: the "
                  "training set's reference solutions"},
    )
    prompts: int = field(
        default=2048,
        metadata={"help": "training problems sampled (seeded) from --train-data's train split; the teacher "
                  "completes each `samples` times"},
    )
    max_steps: int = field(default=150, metadata={"help": "optimizer steps"})
    learning_rate: float = field(
        default=2e-4, metadata={"help": "peak AdamW learning rate (linear warm-up, then linear decay)"}
    )
    warmup_steps: int = field(default=10, metadata={"help": "linear warm-up steps"})
    batch_size: int = field(default=16, metadata={"help": "sequences per optimizer step"})
    max_length: int = field(default=192, metadata={"help": "tokens per training sequence (prompt + completion)"})
    max_new_tokens: int = field(
        default=64,
        metadata={"help": "tokens per teacher completion; in a run, unless set, the run's --max-new-tokens (the "
                  "budget its evaluation gives), so the student learns completions as long as it will write"},
    )
    temperature: float = field(
        default=1.0, metadata={"help": "teacher sampling temperature for its completions; 0 = greedy"}
    )
    samples: int = field(default=2, metadata={"help": "teacher completions per prompt (1 when greedy)"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm"})
    save_steps: int = field(default=50, metadata={"help": "steps between resumable checkpoints"})

    def __post_init__(self) -> None:
        for name in ("prompts", "max_steps", "batch_size", "max_length", "max_new_tokens", "samples", "save_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.temperature == 0 and self.samples != 1:
            raise ValueError(f"greedy teacher completions (temperature=0) are all alike: samples must be 1, "
                             f"got {self.samples}")


class KD(Trainer):
    name = "kd"
    description = "knowledge distillation from the full-precision input model (TRL GKDTrainer, off-policy)"
    config_class = KDOptions
    libraries = ("trl", "transformers", "torch", "accelerate")

    def unavailable_reason(self) -> str | None:
        import importlib.util

        return None if importlib.util.find_spec("trl") else "TRL is not installed (pip install trl)"

    def run_options(self, config) -> dict[str, str]:
        """The teacher writes completions at the run's budget: a level-5 chain cut at a shorter one
        teaches the student nothing about its end (issue 29)."""
        return {"max_new_tokens": str(config.sampling.max_new_tokens)}

    def train(self, model, peft_config, ctx: TrainContext) -> TrainReport:
        return run_kd(model, peft_config, ctx, ctx.config)


# -- data ------------------------------------------------------------------------------------------


def training_rows(teacher, tokenizer, ctx: TrainContext, opts: KDOptions) -> tuple[list[dict], dict]:
    """Token ids of prompt + completion (+ EOS when the completion ended), with labels -100 on the
    prompt: the teacher's sampled completions, or the reference solutions."""
    from harness.core.config import Sampling
    from harness.toolkit.generation import generate

    problems = _sample(ctx.problems, opts.prompts, ctx.seed)
    prompts = [ctx.prompt_for(p) for p in problems]
    start = time.perf_counter()
    pairs: list[tuple[str, str, bool]] = []
    if opts.data == "reference":
        for prompt, p in zip(prompts, problems):
            pairs.append((prompt, p.solution or str(p.answer), True))
    else:
        sampling = Sampling(temperature=opts.temperature, top_p=1.0, n=opts.samples, max_new_tokens=opts.max_new_tokens)
        for prompt, comps in zip(prompts,
                                 generate(teacher, tokenizer, prompts, sampling, batch_size=64, seed=ctx.seed)):
            pairs.extend((prompt, c.text, c.n_tokens < opts.max_new_tokens) for c in comps)
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    rows = []
    for prompt, completion, ended in pairs:
        p = encode(prompt)
        ids = (p + encode(completion) + ([eos] if ended and eos is not None else []))[: opts.max_length]
        if len(ids) > len(p):
            rows.append({"input_ids": ids, "labels": [-100] * len(p) + ids[len(p):]})
    if not rows:
        raise UserError("trainer 'kd': no training example has a completion token (raise max_length)")
    tokens = [sum(label != -100 for label in r["labels"]) for r in rows]
    return rows, {"examples": len(rows), "completion_tokens_mean": sum(tokens) / len(tokens),
                  "data_seconds": time.perf_counter() - start}


def _sample(problems: list[Problem], n: int, seed: int) -> list[Problem]:
    if not problems:
        raise UserError("trainer 'kd' needs training prompts, but the training set is empty")
    return random.Random(f"kd-{seed}").sample(problems, min(n, len(problems)))


# -- the training run -------------------------------------------------------------------------------


def trl_config(ctx: TrainContext, opts: KDOptions, output_dir):
    """GKDConfig (kd) or SFTConfig (ntp): the same optimizer, schedule and batches for both."""
    from trl import SFTConfig

    from harness.compat.trl import gkd
    from harness.trainers.trl_support import run_args

    _, GKDConfig = gkd()
    common = dict(
        **run_args(ctx, output_dir, opts.save_steps), max_steps=opts.max_steps, learning_rate=opts.learning_rate,
        lr_scheduler_type="linear", warmup_steps=opts.warmup_steps, max_grad_norm=opts.max_grad_norm,
        weight_decay=0.0, per_device_train_batch_size=opts.batch_size, gradient_accumulation_steps=1,
        max_length=opts.max_length, gradient_checkpointing=False,
        dataset_kwargs={"skip_prepare_dataset": True},  # the rows are tokenized already
    )
    if opts.objective == "ntp":
        return SFTConfig(**common)
    return GKDConfig(**common, lmbda=0.0, seq_kd=False, beta=0.0 if opts.kl == "forward" else 1.0,
                     temperature=1.0, max_new_tokens=opts.max_new_tokens)


def run_kd(model, peft_config, ctx: TrainContext, opts: KDOptions) -> TrainReport:
    """Distill (or fine-tune, ``ntp``) ``model``; resume from ``ctx.checkpoint_dir`` when a checkpoint is there."""
    import torch
    from datasets import Dataset
    from trl import SFTTrainer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from harness.base.model import load_model, load_tokenizer
    from harness.compat.trl import gkd
    from harness.trainers import trl_support

    tokenizer = load_tokenizer(ctx.model_dir)
    teacher = load_model(ctx.base_model or ctx.model_dir, ctx.device, dtype=torch.float32)
    rows, data_stats = training_rows(teacher, tokenizer, ctx, opts)
    checkpoints = trl_support.checkpoint_folder(ctx)
    args = trl_config(ctx, opts, checkpoints)
    curve: list[dict] = []
    label = "KD" if opts.objective == "kd" else "SFT (next-token)"
    common = dict(
        model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
        data_collator=DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id),
        peft_config=peft_config,
        # the in-training strategy's callbacks first: what they add to a step's logs reaches the curve
        callbacks=[*ctx.callbacks, *trl_support.callbacks(ctx, label, opts.max_steps, curve, _describe)],
    )
    if opts.objective == "ntp":
        del teacher
        trainer = SFTTrainer(**common)
    else:
        trainer = gkd()[0](teacher_model=teacher, **common)
    trl_support.quiet(trainer)
    run = trl_support.train_resumable(trainer, checkpoints)
    bad = [h for h in trainer.state.log_history if "loss" in h and not math.isfinite(h["loss"])]
    if bad:
        raise RuntimeError(f"trainer 'kd': the loss became {bad[0]['loss']} at step {bad[0]['step']}; "
                           "lower learning_rate")
    losses = [row["loss"] for row in curve if "loss" in row]
    return TrainReport(
        steps=trainer.state.global_step,
        seconds=run["seconds"],
        curve=curve,
        model=trainer.model,
        extra={
            **data_stats,
            "objective": opts.objective,
            "kl": opts.kl if opts.objective == "kd" else None,
            "loss_first": losses[0] if losses else None,
            "loss_last": sum(losses[-10:]) / len(losses[-10:]) if losses else None,
            "resumed_from": run["resumed_from"],
            "seconds_per_step": run["seconds_per_step"],
            "trl_trainer": type(trainer).__name__,
        },
    )


def _describe(logs: dict) -> str | None:
    return f"loss {logs['loss']:.4f}" if "loss" in logs else None


@hookimpl
def register_trainers(register):
    register(KD())


__all__ = ["KD", "KDOptions"]
