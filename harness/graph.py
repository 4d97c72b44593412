"""The run as a graph of stages that core owns: what each stage reads, its key, who builds it.

::

    model ──▶ train ──▶ quantize ──▶ evaluate ──▶ profile
              (trainer, with an in-training strategy's prepare/finalize around it;
               or an in-training strategy that trains by itself)
                        (post-training strategy)
                                     (engine: hf | vllm | openai; samples to the store)
                                                  (the same engine session)

A stage that writes an artifact has a key: the hash of everything it depends
on (its inputs, the code and library versions that build it). The runner
(:meth:`harness.pipeline.Runner.materialize`), ``harness profile``, sweep
planning and every executor (the Ray driver builds a stage several cells share
once, before them) read :func:`run_graph` instead of re-encoding the order, and
plugins supply only the bodies: a trainer's ``train``, a strategy's ``prepare``,
``finalize`` or ``quantize``, an engine's session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.config import stable_hash

if TYPE_CHECKING:
    from harness.pipeline import Plan

#: who supplies a stage's body
TRAINER = "trainer"  #: a trainer plugin (with the in-training strategy, if any, around it)
SELF_TRAINING = "strategy-train"  #: an in-training strategy that trains by itself (kd-qat without a trainer)
QUANTIZER = "strategy-quantize"  #: a post-training strategy's quantize
ENGINE = "engine"  #: the run's generation engine


@dataclass(frozen=True)
class Stage:
    """One node of a run's graph."""

    name: str  #: train, quantize, evaluate or profile
    body: str  #: who builds it: TRAINER, SELF_TRAINING, QUANTIZER or ENGINE
    after: str | None  #: the stage whose output it reads (None: the plan's own model)
    key: str | None = None  #: cache key of its artifact; None for stages whose results go to the store
    inputs: Any = None  #: what the key hashes (recorded beside the artifact)

    @property
    def identity(self) -> str:
        """How the next stage names this one's output in its own key."""
        return f"{self.name}:{self.key}"


@dataclass(frozen=True)
class RunGraph:
    """A run's stages, in the order they run."""

    stages: tuple[Stage, ...]

    def get(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.name == name), None)

    def key(self, name: str) -> str | None:
        """The cache key of stage ``name``, or None when the run has no such stage (or it writes no artifact)."""
        stage = self.get(name)
        return stage.key if stage is not None else None

    @property
    def artifacts(self) -> tuple[Stage, ...]:
        """The stages that write an artifact, in order: what the cache holds and executors can share."""
        return tuple(s for s in self.stages if s.key is not None)

    def before(self, name: str) -> Stage | None:
        """The artifact stage whose output stage ``name`` reads (None: it reads the plan's own model)."""
        stage = self.get(name)
        return self.get(stage.after) if stage is not None and stage.after else None


def run_graph(plan: Plan) -> RunGraph:
    """The stages of ``plan``: train when it has a trainer or an in-training strategy, quantize for a
    post-training strategy, then evaluate and profile through the run's engine."""
    stages: list[Stage] = []
    source, after = plan.model.identity, None
    if plan.trainer is not None or plan.in_training:
        body = TRAINER if plan.trainer is not None else SELF_TRAINING
        parts = train_key_parts(plan) if body == TRAINER else strategy_train_key_parts(plan)
        train = Stage("train", body, None, stable_hash(parts), parts)
        stages.append(train)
        source, after = train.identity, "train"
    if not plan.in_training:
        parts = quantize_key_parts(plan, source)
        stages.append(Stage("quantize", QUANTIZER, after, stable_hash(parts), parts))
        after = "quantize"
    stages.append(Stage("evaluate", ENGINE, after))
    stages.append(Stage("profile", ENGINE, "evaluate"))
    return RunGraph(tuple(stages))


# -- what each artifact's key holds ---------------------------------------------------------------


def train_key_parts(plan: Plan) -> dict:
    """What a trainer's checkpoint depends on (its cache key is their hash)."""
    cfg, trainer = plan.config, plan.trainer
    key_parts = {
        "model": plan.model.identity,
        "trainer": trainer.name,
        "trainer_config": trainer.describe_config(plan.trainer_config),
        "seed": cfg.seed,
        "train_data": cfg.train_data,
        "prompt": cfg.prompt,
    }
    key_parts["code"] = {"trainer": code_identity(trainer)}
    if plan.in_training:
        key_parts["strategy"] = [plan.strategy.name, plan.quant.spec.label, _opts(plan.quant.options)]
        key_parts["code"]["strategy"] = code_identity(plan.strategy)
        if plan.strategy.needs_calibration:
            key_parts["calib"] = cfg.calib_data
    return key_parts


def code_identity(plugin: Any) -> dict:
    """The code an artifact was made by: the plugin's own version and its libraries' versions.

    Part of every artifact key, so upgrading llmcompressor, TRL or a strategy
    rebuilds what the old code made instead of reusing it. Run ids do not hold
    it (the versions are recorded with every result instead): the same
    configuration under a newer library is the same experiment, measured again.
    """
    from harness.strategy import library_versions

    return {"version": str(plugin.version), "libraries": library_versions(tuple(plugin.libraries))}


def strategy_train_key_parts(plan: Plan) -> dict:
    """What the checkpoint of an in-training strategy that trains by itself depends on."""
    cfg = plan.config
    return {
        "model": plan.model.identity,
        "trainer": "none",
        "strategy": [plan.strategy.name, plan.quant.spec.label, _opts(plan.quant.options)],
        "code": {"strategy": code_identity(plan.strategy)},
        "seed": cfg.seed,
        "calib": cfg.calib_data if plan.strategy.needs_calibration else None,
        "prompt": cfg.prompt,
    }


def quantize_key_parts(plan: Plan, source_identity: str) -> dict:
    """What a post-training quantized model depends on: its source model and the strategy's settings."""
    cfg = plan.config
    return {
        "source": source_identity,
        "strategy": plan.strategy.name,
        "spec": plan.quant.spec.label,
        "options": _opts(plan.quant.options),
        "calib": cfg.calib_data if plan.strategy.needs_calibration else None,
        "prompt": cfg.prompt if plan.strategy.needs_calibration else None,
        "seed": cfg.seed if plan.strategy.needs_calibration else None,
        "code": code_identity(plan.strategy),
    }


def _opts(options: Any) -> dict:
    import dataclasses

    return dataclasses.asdict(options) if dataclasses.is_dataclass(options) else {}
