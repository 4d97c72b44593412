"""Planning a run: every check on user input, before anything is written.

:func:`plan` resolves a :class:`~harness.core.config.RunConfig` against the
registry (strategy, trainers, benchmarks, engine, device, model, data) into a
:class:`Plan`, the one object the graph (:mod:`harness.core.graph`), the runner and
every executor read; a bad value is a :class:`~harness.base.errors.UserError` here,
not a half-written run later.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from harness.base.errors import UserError
from harness.base.model import compute_identity, resolve_device, resolve_model
from harness.core.config import NO_TRAINER, RunConfig, field_default, reference_config
from harness.core.engine import Engine, EngineSettings
from harness.core.graph import run_graph
from harness.core.plan import Initialisation, Plan, TrainStep
from harness.core.prompts import get_template
from harness.core.registry import Registry
from harness.core.strategy import Phase, QuantContext, QuantSpec, Strategy
from harness.core.trainer import chain_options, trainer_chain


def plan(config: RunConfig, registry: Registry, check_device: bool = True) -> Plan:
    """Resolve names, bits, options, device, model and data; raise UserError on anything wrong.

    ``check_device=False`` plans a run that will run on another machine (a Ray
    worker, which plans it again on its own device): the driver's lack of a
    GPU must not refuse it there, so the device stays as configured and only
    the checks that do not depend on this machine's hardware are made.
    """
    strategy = registry.strategies.get(config.strategy)
    benches = {name: registry.benchmarks.get(name) for name in config.benchmarks}
    spec = strategy.spec(config.bits, config.act_bits, config.kv_bits)
    options = strategy.make_options(dict(config.strategy_opts))
    if strategy.phase is Phase.IN_TRAINING and config.trainer == NO_TRAINER:
        if strategy.default_trainer is None:
            raise UserError(
                f"strategy {strategy.name!r} quantizes during training and needs a trainer; "
                f"add --trainer ({', '.join(registry.trainers.names()) or 'none installed'})"
            )
        config = dataclasses.replace(config, trainer=strategy.default_trainer)
    training = plan_training(config, registry)
    trainer = training[0].trainer if training else None
    get_template(config.prompt)
    device = resolve_device(config.device) if check_device else config.device
    reason = strategy.unavailable_reason()
    if reason:
        raise UserError(f"strategy {strategy.name!r} is unavailable: {reason}")
    engine, engine_options, fmt = check_engine(config, registry, strategy, spec, device, check_here=check_device)
    model = resolve_model(config.model)
    data_dir = Path(config.data_dir) if config.data_dir else None
    problems = {}
    for name, bench in benches.items():
        bench.check_split(config.split)
        items = bench.load(config.split, data_dir)
        problems[name] = items[: config.limit] if config.limit else items
    if trainer is not None:
        registry.benchmarks.get(config.train_data).check_split("train")
    quant = QuantContext(spec=spec, options=options, seed=config.seed, device=device)
    init = plan_initialisation(strategy, quant, registry, device) if strategy.phase is Phase.IN_TRAINING else None
    # planned without this machine's devices and still ``auto``: resolved where the run runs (a sweep's
    # driver first asks its executor what ``auto`` is there: Executor.auto_device)
    compute = (compute_identity(device, engine.compute_dtype(device, engine_options, fmt).dtype)
               if device != "auto" else config.compute)
    config = dataclasses.replace(config, bits=spec.bits, data=data_identity(benches, problems), compute=compute)
    reference = _reference(config, strategy, registry) if engine.can_score else None
    planned = Plan(config, registry, strategy, training, quant, model, device, problems, engine, engine_options, init,
                   reference)
    graph = run_graph(planned)  # what each stage needs: the graph is the one place that knows
    if check_device and not device.startswith("cuda") and (why := graph.gpu_reason()) is not None:
        raise UserError(f"{why}, but the run's device is {device!r}")
    if any(stage.needs_calibration for stage in graph.stages):
        registry.benchmarks.get(config.calib_data).check_split("train")
    return planned


def _reference(config: RunConfig, strategy: Strategy, registry: Registry) -> RunConfig | None:
    """The full-precision twin a run's divergence is measured against: the default strategy when it is a
    reference (``Strategy.is_reference``), else the first installed reference strategy by name; for a strategy
    with its own unquantized width (``Strategy.reference_bits``), that width of the same strategy."""
    if not config.divergence or strategy.is_reference:
        return None
    if strategy.reference_bits is not None:
        if config.bits == strategy.reference_bits:
            return None  # the run is its own reference
        reference = dataclasses.replace(reference_config(config, strategy.name), bits=strategy.reference_bits)
        return _one_for_every_seed(reference, strategy)
    references = sorted(s.name for s in registry.strategies if s.is_reference)
    if not references:
        return None
    name = field_default("strategy") if field_default("strategy") in references else references[0]
    return _one_for_every_seed(reference_config(config, name), registry.strategies.get(name))


def _one_for_every_seed(reference: RunConfig, strategy: Strategy) -> RunConfig:
    """The reference at the default seed when the seed cannot change it: nothing trained, nothing calibrated,
    greedy decoding. A three-seed row of a calibrated recipe then shares one reference evaluation instead of
    repeating an identical one per seed (on a deployed model, an F32 GGUF or bf16 evaluation of minutes or
    hours). A trained or sampled reference keeps the run's seed: that model or those completions differ."""
    if (reference.trainer == NO_TRAINER and reference.sampling.greedy
            and not strategy.calibrates_with(strategy.make_options(dict(reference.strategy_opts)))):
        return dataclasses.replace(reference, seed=field_default("seed"))
    return reference


def plan_initialisation(
    strategy: Strategy, quant: QuantContext, registry: Registry, device: str
) -> Initialisation | None:
    """The post-training quantization ``strategy`` asks to start from, resolved and checked."""
    found = strategy.initialisation(quant.spec, quant.options)
    if found is None:
        return None
    name, opts = found
    init = registry.strategies.get(name)
    if init.phase is not Phase.POST_TRAINING:
        raise UserError(f"strategy {strategy.name!r} starts from {name!r}, which is not a post-training strategy")
    reason = init.unavailable_reason()
    if reason:
        raise UserError(f"strategy {strategy.name!r} starts from {name!r}, which is unavailable: {reason}")
    spec = init.spec(quant.spec.bits)
    return Initialisation(
        init, QuantContext(spec=spec, options=init.make_options(opts), seed=quant.seed, device=device)
    )


def plan_training(config: RunConfig, registry: Registry) -> tuple[TrainStep, ...]:
    """The run's trainers in the order they train (``--trainer kd,grpo`` is a chain), each with its
    options (:func:`harness.core.trainer.chain_options`); ``--max-steps`` reaches every one."""
    trainers = [registry.trainers.get(name) for name in trainer_chain(config.trainer)]
    if not trainers:
        if config.trainer_opts:
            raise UserError("--trainer-opt given without --trainer")
        return ()
    per_trainer = chain_options(trainers, dict(config.trainer_opts))
    steps = []
    for trainer, opts in zip(trainers, per_trainer):
        opts = {**trainer.run_options(config), **opts}  # what --trainer-opt leaves unset follows the run
        if config.max_steps is not None:
            opts["max_steps"] = str(config.max_steps)
        reason = trainer.unavailable_reason()
        if reason:
            raise UserError(f"trainer {trainer.name!r} is unavailable: {reason}")
        steps.append(TrainStep(trainer, trainer.make_config(opts)))
    return tuple(steps)


def data_identity(benches: dict, problems: dict[str, list]) -> tuple[tuple[str, str], ...]:
    """The ``data`` part of a run's identity: each benchmark's :meth:`~harness.core.benchmark.Benchmark.identity`.

    A benchmark at version 1 whose problems are generated is left out: that is
    what every run stored before benchmark identities were hashed had, so their
    ids (and the published leaderboards') stay what they were.
    """
    out = {name: bench.identity(problems[name]) for name, bench in benches.items()}
    return tuple(sorted((name, ident) for name, ident in out.items() if ident != "v1"))


def check_engine(plan_config: RunConfig, registry: Registry, strategy: Strategy, spec: QuantSpec, device: str,
                 check_here: bool = True) -> tuple[Engine, Any, str]:
    """The run's engine, its options and the artifact format it will run, or a one-line refusal: unknown name,
    bad option, a format or device it cannot run, no environment. Called by :func:`plan` before anything is
    written."""
    engine = registry.engines.get(plan_config.engine)
    options = engine.make_options(dict(plan_config.engine_opts))
    fmt = strategy.artifact_format_for(spec, strategy.make_options(dict(plan_config.strategy_opts)))
    settings = EngineSettings(device=device, options=options, url=plan_config.engine_url,
                              python=plan_config.engine_python)
    if check_here:
        engine.check(fmt, device, others=list(registry.engines), settings=settings,
                     known_formats=registry.formats)
    elif not engine.accepts(fmt, registry.formats):
        engine.check(fmt, device, others=list(registry.engines), known_formats=registry.formats)
    return engine, options, fmt
