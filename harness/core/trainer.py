"""The trainer interface: a fine-tuning procedure (GRPO, Dr. GRPO, ...).

Trainers are plugins (``register_trainers``). Core hands a trainer a model
(plain, or prepared by an in-training strategy), its PEFT config and a
:class:`TrainContext`, and gets the trained model back in the
:class:`TrainReport`; core saves it, or asks the strategy to finalize it
(:mod:`harness.runs.training`). A trainer never calls a strategy."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.config import NO_TRAINER

if TYPE_CHECKING:
    from harness.core.benchmark import Problem
    from harness.core.strategy import QuantReport


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
    #: where to keep resumable checkpoints (survives a crash; not the artifact)
    checkpoint_dir: Path | None = None
    #: called with (step, {metric: value}) after every logged step
    on_log: Callable[[int, dict], None] = lambda step, logs: None
    #: ``transformers.TrainerCallback`` objects to add (an in-training strategy's, e.g. qerl's noise schedule)
    callbacks: list = field(default_factory=list)
    #: ``recommended_lr(preset)``: the in-training strategy's learning rate for a trainer preset, or None
    #: (the trainer uses it when its own learning rate is unset)
    recommended_lr: Callable[[str], float | None] = lambda preset: None
    #: the model the run started from, before any earlier stage of a trainer chain (a distilling
    #: trainer's teacher); ``model_dir`` is what this stage trains
    base_model: Path | str | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class TrainReport:
    """What a training run reports back (stored with the run)."""

    steps: int
    seconds: float
    curve: list[dict] = field(default_factory=list)
    quant: QuantReport | None = None
    extra: dict = field(default_factory=dict)
    #: the trained model, handed back to core, which saves or finalizes it (not stored)
    model: Any = None


class Trainer:
    """Base class for trainer plugins."""

    name: str = ""
    description: str = ""
    #: dataclass of options; defaults documented beside each field
    config_class: type = object
    needs_gpu: bool = False
    #: the version of what this trainer writes: bump it when a checkpoint it made under the same
    #: options would now come out different, so cached checkpoints are not reused (artifact keys hold it)
    version: str = "1"
    #: libraries whose versions change what it trains; they are part of its checkpoints' cache keys
    libraries: tuple[str, ...] = ()

    def unavailable_reason(self) -> str | None:
        return None

    def make_config(self, opts: dict[str, Any]) -> Any:
        """Build the config dataclass from ``key=value`` overrides."""
        from harness.base.options import build_options

        return build_options(self.config_class, opts, owner=f"trainer {self.name!r}")

    def run_options(self, config: Any) -> dict[str, str]:
        """Option values this trainer takes from the run's own settings (``config``, the RunConfig)
        unless ``--trainer-opt`` sets them, e.g. a teacher's completion budget that follows
        ``--max-new-tokens``. Planning resolves them, so they are part of the checkpoint's key."""
        return {}

    def train(self, model: Any, peft_config: Any, ctx: TrainContext) -> TrainReport:
        """Train ``model`` (wrapped with ``peft_config`` when given, as an adapter trainer does) and
        return it in the report's ``model``; add ``ctx.callbacks`` to the training loop."""
        raise NotImplementedError

    def describe_config(self, config: Any) -> dict:
        return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else {}

    def gpu_reason(self, config: Any) -> str | None:
        """Why training with these options needs a CUDA GPU, or None: :attr:`needs_gpu`, unless an option asks
        for one (grpo's ``rollout_engine=vllm``). The run is refused on a CPU when planned, before the store."""
        return f"trainer {self.name!r} needs a CUDA GPU" if self.needs_gpu else None


#: separates the trainers of a chain in ``--trainer`` (``kd,grpo``: distillation, then GRPO)
CHAIN = ","


def chain_names(value: str) -> list[str]:
    """The names a ``trainer`` setting holds, as written (empty for ``none``); :func:`trainer_chain`
    checks them."""
    return [] if value == NO_TRAINER else [name.strip() for name in value.split(CHAIN)]


def trainer_chain(value: str) -> list[str]:
    """The trainer names of a run's ``trainer`` setting, in the order they train (empty for ``none``)."""
    from harness.base.errors import UserError

    names = chain_names(value)
    if not names:
        return []
    if "" in names or "none" in names:
        raise UserError(f"--trainer {value!r}: a chain names trainers separated by {CHAIN!r}, e.g. kd,grpo")
    if len(set(names)) != len(names):
        raise UserError(f"--trainer {value!r} names a trainer twice; a chain trains each trainer once")
    return names


def chain_options(trainers: list[Trainer], opts: dict[str, str]) -> list[dict[str, str]]:
    """Each trainer's ``--trainer-opt`` values: ``NAME.key=value`` reaches the trainer NAME; a plain
    ``key=value`` reaches every trainer of the chain with that option (all of one trainer's options,
    when the run has one trainer, so its own error names an unknown key)."""
    from harness.base.errors import UserError

    by_name = {t.name: {} for t in trainers}
    for key, value in opts.items():
        name, dot, rest = key.partition(".")
        if dot and name in by_name:
            by_name[name][rest] = value
        elif dot and len(trainers) > 1:
            raise UserError(f"--trainer-opt {key}: {name!r} is not a trainer of this run "
                            f"({', '.join(by_name)})")
        elif len(trainers) == 1:
            by_name[trainers[0].name][key] = value
        else:
            owners = [t.name for t in trainers if key in _option_names(t)]
            if not owners:
                raise UserError(f"--trainer-opt {key}: no trainer of this run ({', '.join(by_name)}) has it")
            for owner in owners:
                by_name[owner][key] = value
    return [by_name[t.name] for t in trainers]


def _option_names(trainer: Trainer) -> set[str]:
    cls = trainer.config_class
    return {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
