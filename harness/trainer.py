"""The trainer interface: a fine-tuning procedure (GRPO, Dr. GRPO, ...).

Trainers are plugins (``register_trainers``). The pipeline hands a trainer a
:class:`TrainContext` and gets back a model directory; when the run's strategy
quantizes during training, the trainer asks it to ``prepare`` the model before
training and to ``finalize`` it afterwards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.benchmark import Problem
    from harness.strategy import QuantContext, QuantReport, Strategy


@dataclass
class TrainContext:
    """Everything a trainer needs for one training run."""

    model_dir: Path
    out_dir: Path
    problems: list[Problem]
    #: prompt text for a problem (template and chat template already applied)
    prompt_for: Callable[[Problem], str]
    config: Any
    seed: int
    device: str
    #: in-training strategy and its context, or None for full precision
    strategy: Strategy | None = None
    quant: QuantContext | None = None
    #: where to keep resumable checkpoints (survives a crash; not the artifact)
    checkpoint_dir: Path | None = None
    #: called with (step, {metric: value}) after every logged step
    on_log: Callable[[int, dict], None] = lambda step, logs: None
    extra: dict = field(default_factory=dict)


@dataclass
class TrainReport:
    """What a training run reports back (stored with the run)."""

    steps: int
    seconds: float
    curve: list[dict] = field(default_factory=list)
    quant: QuantReport | None = None
    extra: dict = field(default_factory=dict)


class Trainer:
    """Base class for trainer plugins."""

    name: str = ""
    description: str = ""
    #: dataclass of options; defaults documented beside each field
    config_class: type = object
    needs_gpu: bool = False

    def unavailable_reason(self) -> str | None:
        return None

    def make_config(self, opts: dict[str, Any]) -> Any:
        """Build the config dataclass from ``key=value`` overrides."""
        from harness.options import build_options

        return build_options(self.config_class, opts, owner=f"trainer {self.name!r}")

    def train(self, ctx: TrainContext) -> TrainReport:
        raise NotImplementedError

    def describe_config(self, config: Any) -> dict:
        return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else {}
