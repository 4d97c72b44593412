"""A planned run: the resolved plugins and inputs every stage, the runner and executors read.

A value type with no behaviour beyond reading itself, at the bottom of the
house so that the graph, engines' settings and executors can name it without
importing the planning that makes it (:func:`harness.runs.planning.plan`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.core.config import RunConfig
from harness.core.engine import Engine
from harness.core.registry import Registry
from harness.core.strategy import Phase, QuantContext, Strategy
from harness.core.trainer import Trainer


@dataclass
class Plan:
    """A run's resolved plugins and inputs, checked before anything is written."""

    config: RunConfig
    registry: Registry
    strategy: Strategy
    #: the trainers, in the order they train (empty: no training); each is a stage of the graph
    training: tuple[TrainStep, ...]
    quant: QuantContext
    model: Any  # ModelRef
    device: str
    problems: dict[str, list] = field(default_factory=dict)
    engine: Engine | None = None  #: the engine that evaluates and profiles
    engine_options: Any = None
    #: the post-training quantization an in-training strategy starts from (its ``initialisation``)
    init: Initialisation | None = None
    #: the configuration of the full-precision twin this run's divergence is measured against (None: the
    #: run is a reference itself, no reference strategy is installed, or ``divergence`` is off)
    reference: RunConfig | None = None

    @property
    def in_training(self) -> bool:
        return self.strategy.phase is Phase.IN_TRAINING

    @property
    def trainer(self) -> Trainer | None:
        """The first trainer (None without training)."""
        return self.training[0].trainer if self.training else None


@dataclass(frozen=True)
class Initialisation:
    """The post-training strategy, and its settings, whose checkpoint training starts from."""

    strategy: Strategy
    quant: QuantContext


@dataclass(frozen=True)
class TrainStep:
    """One trainer of the run and its options."""

    trainer: Trainer
    config: Any
