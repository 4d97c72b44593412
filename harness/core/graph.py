"""The run as a graph of stages that core owns: what each stage reads, its key, who builds it.

::

    model ──▶ [init] ──▶ train ──▶ [train.NAME ...] ──▶ quantize ──▶ evaluate ──▶ profile ──▶ [divergence]
              (the post-training checkpoint an in-training strategy starts from: kd-qat's gptq)
                         (a trainer, with an in-training strategy's prepare/finalize around it;
                          a chain, --trainer kd,grpo, is one train stage per trainer, each
                          reading the one before)
                                                       (post-training strategy)
                                     (engine: hf | vllm | openai; samples to the store)
                                                  (the same engine session)

A stage that writes an artifact has a key: the hash of everything it depends
on (its inputs, the code and library versions that build it). The runner
(:meth:`harness.runs.pipeline.Runner.materialize`), ``harness profile``, sweep
planning and every executor (the Ray driver builds a stage several cells share
once, before them) read :func:`run_graph` instead of re-encoding the order, and
plugins supply only the bodies: a trainer's ``train``, a strategy's ``prepare``,
``finalize`` or ``quantize``, an engine's session.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from harness.core.config import stable_hash
from harness.core.plan import Plan
from harness.core.strategy import Strategy, library_versions

#: who supplies a stage's body
TRAINER = "trainer"  #: a trainer plugin (with the in-training strategy, if any, around it)
QUANTIZER = "strategy-quantize"  #: a post-training strategy's quantize
ENGINE = "engine"  #: the run's generation engine

#: the stage that quantizes with an in-training strategy's initialisation (``plan.init``)
INIT = "init"


class StageKind(str, Enum):
    """What a stage does; the artifact cache keeps INIT and QUANTIZE outputs under ``quantize``."""

    INIT = "init"  #: the post-training checkpoint an in-training strategy starts from
    TRAIN = "train"  #: one trainer of the run (a chain has one per trainer)
    QUANTIZE = "quantize"  #: the run's post-training strategy
    EVALUATE = "evaluate"
    PROFILE = "profile"
    DIVERGENCE = "divergence"  #: the evaluated model against its reference, on the reference's completions

    @property
    def cache_folder(self) -> str | None:
        """The artifact cache's folder for this kind's output (None: its results go to the store)."""
        return {StageKind.INIT: "quantize", StageKind.QUANTIZE: "quantize", StageKind.TRAIN: "train"}.get(self)


@dataclass(frozen=True)
class Stage:
    """One node of a run's graph."""

    name: str  #: init, train (train.NAME for a chain's later trainers), quantize, evaluate or profile
    body: str  #: who builds it: TRAINER, QUANTIZER or ENGINE
    after: str | None  #: the stage whose output it reads (None: the plan's own model)
    key: str | None = None  #: cache key of its artifact; None for stages whose results go to the store
    inputs: Any = None  #: what the key hashes (recorded beside the artifact)
    train_index: int = 0  #: TRAINER stages: which of the plan's trainers (``plan.training``) it runs
    kind: StageKind = StageKind.EVALUATE
    #: why this stage cannot run without a CUDA GPU (what its plugins declare), or None
    needs_gpu: str | None = None
    #: the stage's plugin reads calibration texts from the run's calibration set
    needs_calibration: bool = False

    @property
    def identity(self) -> str:
        """How the next stage names this one's output in its own key."""
        return f"{self.name}:{self.key}"


@dataclass(frozen=True)
class RunGraph:
    """A run's stages, in the order they run."""

    stages: tuple[Stage, ...]
    #: the run's own device, when it names CUDA (every stage then runs there)
    device: str = "auto"

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

    @property
    def final(self) -> Stage:
        """The artifact stage whose model the run evaluates (the last one that writes an artifact)."""
        return self.artifacts[-1]

    def before(self, name: str) -> Stage | None:
        """The artifact stage whose output stage ``name`` reads (None: it reads the plan's own model)."""
        stage = self.get(name)
        return self.get(stage.after) if stage is not None and stage.after else None

    def gpu_reason(self, upto: str | None = None) -> str | None:
        """Why the run (or its stages up to and including ``upto``) cannot run without a CUDA GPU, or None:
        the one place planning, executors and ``harness profile`` learn it."""
        for stage in self.stages:
            if stage.needs_gpu:
                return stage.needs_gpu
            if stage.name == upto:
                break
        if str(self.device).startswith("cuda"):
            return f"its device is {self.device!r}"
        return None


def final_artifact(artifacts: dict) -> tuple[str, str] | None:
    """(cache folder, key) of the model a stored run evaluated, from the record
    :meth:`harness.runs.pipeline.Runner.materialize` stored (``final``; runs stored before it recorded
    that are read from their quantize, else train, record). None: it records no model artifact."""
    final = artifacts.get("final")
    if final:
        return final["cache"], final["key"]
    if artifacts.get("quantize_key"):
        return "quantize", artifacts["quantize_key"]
    if (artifacts.get("train") or {}).get("key"):
        return "train", artifacts["train"]["key"]
    return None


def run_graph(plan: Plan) -> RunGraph:
    """The stages of ``plan``: the initialisation an in-training strategy starts from, one train
    stage per trainer (in-training strategies always have one: their default trainer), quantize
    for a post-training strategy, then evaluate and profile through the run's engine."""
    stages: list[Stage] = []
    source, after = plan.model.identity, None
    if plan.init is not None:
        parts = quantize_key_parts(plan, source, plan.init.strategy, plan.init.quant)
        init = Stage(INIT, QUANTIZER, None, stable_hash(parts), parts, kind=StageKind.INIT,
                     needs_gpu=_strategy_gpu(plan.init.strategy),
                     needs_calibration=plan.init.strategy.calibrates_with(plan.init.quant.options))
        stages.append(init)
        source, after = init.identity, INIT
    for index, step in enumerate(plan.training):
        parts = train_key_parts(plan, index, source)
        name = "train" if index == 0 else f"train.{step.trainer.name}"
        gpu = step.trainer.gpu_reason(step.config)
        if gpu is None and plan.in_training:
            gpu = _strategy_gpu(plan.strategy)
        calibrates = plan.in_training and plan.strategy.calibrates_with(plan.quant.options)
        train = Stage(name, TRAINER, after, stable_hash(parts), parts, train_index=index, kind=StageKind.TRAIN,
                      needs_gpu=gpu, needs_calibration=calibrates)
        stages.append(train)
        source, after = train.identity, name
    if not plan.in_training:
        parts = quantize_key_parts(plan, source)
        stages.append(Stage("quantize", QUANTIZER, after, stable_hash(parts), parts, kind=StageKind.QUANTIZE,
                            needs_gpu=_strategy_gpu(plan.strategy),
                            needs_calibration=plan.strategy.calibrates_with(plan.quant.options)))
        after = "quantize"
    stages.append(Stage("evaluate", ENGINE, after, kind=StageKind.EVALUATE))
    stages.append(Stage("profile", ENGINE, "evaluate", kind=StageKind.PROFILE))
    if plan.reference is not None:
        stages.append(Stage("divergence", ENGINE, "evaluate", kind=StageKind.DIVERGENCE))
    return RunGraph(tuple(stages), device=str(plan.config.device))


def _strategy_gpu(strategy: Strategy) -> str | None:
    return f"strategy {strategy.name!r} needs a CUDA GPU" if strategy.needs_gpu else None


# -- what each artifact's key holds ---------------------------------------------------------------


def train_key_parts(plan: Plan, index: int = 0, source: str | None = None) -> dict:
    """What a trainer's checkpoint depends on (its cache key is their hash): the model it starts
    from (a chain's earlier stage, for the later ones), the trainer and its options, the data, and
    the in-training strategy around it."""
    cfg, step = plan.config, plan.training[index]
    source = source or plan.model.identity
    key_parts = {
        "model": source,
        "trainer": step.trainer.name,
        "trainer_config": step.trainer.describe_config(step.config),
        "seed": cfg.seed,
        "train_data": cfg.train_data,
        "prompt": cfg.prompt,
    }
    if source != plan.model.identity:  # a distilling trainer's teacher is the run's model, whatever it trains
        key_parts["base_model"] = plan.model.identity
    key_parts["code"] = {"trainer": code_identity(step.trainer)}
    if plan.in_training:
        key_parts["strategy"] = [plan.strategy.name, plan.quant.spec.label, _opts(plan.quant.options)]
        key_parts["code"]["strategy"] = code_identity(plan.strategy)
        if plan.strategy.calibrates_with(plan.quant.options):
            key_parts["calib"] = cfg.calib_data
    return key_parts


def code_identity(plugin: Any) -> dict:
    """The code an artifact was made by: the plugin's own version and its libraries' versions.

    Part of every artifact key, so upgrading llmcompressor, TRL or a strategy
    rebuilds what the old code made instead of reusing it. Run ids do not hold
    it (the versions are recorded with every result instead): the same
    configuration under a newer library is the same experiment, measured again.
    """
    return {"version": str(plugin.version), "libraries": library_versions(tuple(plugin.libraries))}


def quantize_key_parts(plan: Plan, source_identity: str, strategy: Any = None, quant: Any = None) -> dict:
    """What a post-training quantized model depends on: its source model and the strategy's settings
    (the run's strategy, or the initialisation its in-training strategy starts from: the same parts,
    so that checkpoint is the one a run of that strategy makes)."""
    cfg = plan.config
    strategy, quant = strategy or plan.strategy, quant or plan.quant
    calibrates = strategy.calibrates_with(quant.options)
    return {
        "source": source_identity,
        "strategy": strategy.name,
        "spec": quant.spec.label,
        "options": _opts(quant.options),
        "calib": cfg.calib_data if calibrates else None,
        "prompt": cfg.prompt if calibrates else None,
        "seed": cfg.seed if calibrates else None,
        "code": code_identity(strategy),
    }


def _opts(options: Any) -> dict:
    import dataclasses

    return dataclasses.asdict(options) if dataclasses.is_dataclass(options) else {}
