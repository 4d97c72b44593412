"""The in-training lifecycle, owned by core: prepare, train, finalize.

A trainer plugin only trains the model it is handed; it never meets the
strategy. Core asks an in-training strategy to ``prepare`` the model (fake
quantization, a 4-bit base with adapters), hands the prepared model, its PEFT
config and the strategy's step callbacks to the trainer, and asks the strategy
to ``finalize`` what comes back into a real quantized checkpoint. So a
third-party trainer cannot forget a step and evaluate an unquantized model,
and a new in-training strategy needs no trainer glue.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.base.errors import HarnessError

if TYPE_CHECKING:
    from harness.core.strategy import QuantContext, Strategy
    from harness.core.trainer import TrainContext, Trainer, TrainReport


def trainable_model(ctx: TrainContext, strategy: Strategy | None, quant: QuantContext | None) -> tuple[Any, Any]:
    """(model, peft_config): the strategy's prepared model, or the plain model with fp32 master weights."""
    if strategy is not None:
        return strategy.prepare(ctx.model_dir, quant)
    import torch

    from harness.base.model import load_model

    # fp32 master weights everywhere; on a GPU the trainer autocasts to bf16
    return load_model(ctx.model_dir, ctx.device, dtype=torch.float32), None


def train(trainer: Trainer, ctx: TrainContext, strategy: Strategy | None = None,
          quant: QuantContext | None = None) -> TrainReport:
    """Train ``ctx.model_dir`` with ``trainer`` into ``ctx.out_dir``, through ``strategy`` when one
    quantizes during training; the report carries the strategy's quantization report."""
    model, peft_config = trainable_model(ctx, strategy, quant)
    if strategy is not None:
        # the strategy's step callbacks first: what they add to a step's logs reaches the curve
        ctx.callbacks = [*strategy.train_callbacks(model, quant), *ctx.callbacks]
        ctx.recommended_lr = lambda preset: strategy.recommended_lr(quant, preset)
    report = trainer.train(model, peft_config, ctx)
    trained = report.model
    if trained is None:
        raise HarnessError(f"trainer {trainer.name!r} returned no model (TrainReport.model) to save")
    report.model = None  # the report is stored; the model is not
    if strategy is not None:
        report.quant = strategy.finalize(trained, ctx.out_dir, quant)
    else:
        trained.save_pretrained(ctx.out_dir)
    return report
