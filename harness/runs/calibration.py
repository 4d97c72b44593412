"""Calibration texts for the strategies that need them (GPTQ, AWQ, SmoothQuant, ...).

A seeded sample of the calibration set's train split, rendered with the run's
prompt template plus the reference solution: the same seed gives the same
texts, so a calibrated checkpoint is reproducible.
"""

from __future__ import annotations

import random
from pathlib import Path

from harness.core.plan import Plan
from harness.core.prompts import get_template
from harness.core.strategy import QuantContext, Strategy

#: calibration texts per strategy
N_CALIBRATION = 256


def calibration_texts(plan: Plan, tokenizer) -> list[str]:
    """Prompt + reference solution from the calibration set's train split (seeded sample)."""
    return [prompt + answer for prompt, answer in _calibration_pairs(plan, tokenizer)]


def _calibration_pairs(plan: Plan, tokenizer) -> list[tuple[str, str]]:
    cfg = plan.config
    bench = plan.registry.benchmarks.get(cfg.calib_data)
    items = bench.load("train", Path(cfg.data_dir) if cfg.data_dir else None)
    rng = random.Random(f"calib-{cfg.seed}")
    chosen = rng.sample(items, min(N_CALIBRATION, len(items)))
    template = get_template(cfg.prompt)
    return [(template.render(p.problem, tokenizer), p.solution or p.answer) for p in chosen]


def calibrate(plan: Plan, tokenizer, strategy: Strategy | None = None, quant: QuantContext | None = None) -> None:
    """Give the strategy (the run's, unless another is named) its calibration texts when it needs them."""
    strategy, quant = strategy or plan.strategy, quant or plan.quant
    if strategy.calibrates_with(quant.options):
        quant.calibration = calibration_texts(plan, tokenizer)
