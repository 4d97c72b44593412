"""What every TRL-based trainer plugin needs around TRL: per-step log forwarding, a progress
display, the load-following thread count, resumable checkpoints, fp32 trainable weights on CPU.

Shared by ``grpo`` and ``kd``, so a step's logs reach the run's curve the same way whichever
trainer made them."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.core.trainer import TrainContext


def run_args(ctx: TrainContext, output_dir: Path, save_steps: int) -> dict[str, Any]:
    """The TRL config fields every harness trainer sets alike: seeds, precision for the device,
    per-step logs (the curve), resumable checkpoints, and no reporting or tqdm of TRL's own."""
    on_cpu = ctx.device == "cpu"
    return dict(
        output_dir=str(output_dir),
        seed=ctx.seed,
        data_seed=ctx.seed,
        # bf16 autocast is 8x slower than fp32 on CPUs without AMX (shared/STACK.md)
        use_cpu=on_cpu,
        bf16=not on_cpu,
        fp16=False,
        logging_steps=1,
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=1,
        report_to="none",
        disable_tqdm=True,  # the rich bar of :func:`callbacks` replaces tqdm
        remove_unused_columns=False,
        dataloader_num_workers=0,
    )


def train_resumable(trainer, folder: Path) -> dict[str, Any]:
    """``trainer.train()``, resumed from the newest complete checkpoint in ``folder``; what the run's
    report records of it (the checkpoint resumed from, wall seconds, seconds per step trained here)."""
    resume = latest_checkpoint(folder)
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - start
    return {
        "resumed_from": Path(resume).name if resume else None,
        "seconds": seconds,
        "seconds_per_step": seconds / max(1, trainer.state.global_step - step_of(resume)),
    }


def checkpoint_folder(ctx: TrainContext) -> Path:
    """Where resumable checkpoints go: the cache's scratch folder for the stage, else beside the output."""
    return ctx.checkpoint_dir or (Path(ctx.out_dir).parent / (Path(ctx.out_dir).name + ".checkpoints"))


def latest_checkpoint(folder: Path | None) -> str | None:
    """The newest complete checkpoint; a partial one (killed mid-save) is moved aside (harness.base.checkpoints)."""
    from harness.base.checkpoints import latest_complete_checkpoint

    found = latest_complete_checkpoint(folder)
    return str(found) if found else None


def step_of(checkpoint: str | None) -> int:
    """The optimizer step a checkpoint folder (``checkpoint-N``) was saved at; 0 for none."""
    return int(Path(checkpoint).name.rsplit("-", 1)[-1]) if checkpoint else 0


def callbacks(ctx: TrainContext, label: str, total: int, curve: list[dict],
              describe: Callable[[dict], str | None]) -> list:
    """A progress display over optimizer steps (a bar on a terminal, periodic lines in a log), the
    per-step log forwarder, and the thread count that follows the load.

    ``describe(logs)`` is the bar's text for a step's logs (None leaves it as it was).
    """
    from transformers import TrainerCallback

    from harness.base.progress import stage_progress

    class Forward(TrainerCallback):
        """Hands each step's logs (loss, rewards, lengths, grad norm, learning rate) to the pipeline."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "train_runtime" in logs:  # the end-of-training summary is not a step
                return
            row = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float)) and math.isfinite(v)}
            curve.append({"step": state.global_step, **row})
            ctx.on_log(state.global_step, row)

    class Bar(TrainerCallback):
        def __init__(self) -> None:
            self.progress = stage_progress(label, unit="steps")
            self.task = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.progress.start()
            self.task = self.progress.add_task("", total=state.max_steps or total, completed=state.global_step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            text = describe(logs) if logs else None
            if text and self.task is not None:
                self.progress.update(self.task, description=text)

        def on_step_end(self, args, state, control, **kwargs):
            self.progress.update(self.task, completed=state.global_step)

        def on_train_end(self, args, state, control, **kwargs):
            self.progress.stop()

    class Threads(TrainerCallback):
        """The default thread count follows the machine's load, step by step (harness.base.threads.adapt)."""

        def on_step_begin(self, args, state, control, **kwargs):
            from harness.base.threads import adapt

            adapt()

    return [Forward(), Bar(), Threads()]


def quiet(trainer) -> None:
    """Drop transformers' own tqdm bar and log printer: the rich display replaces them."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for cb in (ProgressCallback, PrinterCallback):
        trainer.remove_callback(cb)


def trainable_to_fp32(model) -> None:
    """Undo TRL's bf16 cast of trainable weights (QLoRA adapters) on CPU: bf16 is slow there, and too
    coarse for small updates."""
    import torch

    for param in model.parameters():
        if param.requires_grad and param.dtype == torch.bfloat16:
            param.data = param.data.float()
