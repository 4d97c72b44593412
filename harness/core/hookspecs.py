"""Hook specifications: the one way in for every plugin.

A plugin is a module (or object) with functions decorated ``@harness.hookimpl``
and is announced through the ``harness`` entry-point group in its distribution's
``pyproject.toml``::

    [project.entry-points.harness]
    my_strategy = "my_package.plugin"

Built-in strategies, trainers, benchmarks, executors, engines and artifact formats
use these same hooks and the same entry-point group; nothing is special-cased.

Each hook is called through pluggy, one plugin at a time, so an implementation
names only the arguments it uses: a hookspec may gain an argument in a later
release without breaking a plugin written against this one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from harness.core.benchmark import Benchmark
    from harness.core.engine import ArtifactFormat, Engine
    from harness.core.executor import Executor
    from harness.core.strategy import Strategy
    from harness.core.trainer import Trainer

hookspec = pluggy.HookspecMarker("harness")


@hookspec
def register_strategies(register: Callable[[Strategy], None]) -> None:
    """Register quantization strategies.

    :param register: call ``register(strategy)`` once per strategy, where
        ``strategy`` is an instance of :class:`harness.core.strategy.Strategy`
        (post-training, or during training). Its ``name`` must be unique
        across all installed plugins; a clash is an error naming both plugins.
    """


@hookspec
def register_trainers(register: Callable[[Trainer], None]) -> None:
    """Register RL trainers (or any fine-tuning procedure).

    :param register: call ``register(trainer)`` once per trainer, an instance
        of :class:`harness.core.trainer.Trainer`.
    """


@hookspec
def register_benchmarks(register: Callable[[Benchmark], None]) -> None:
    """Register benchmarks: problem sets with reference answers.

    :param register: call ``register(benchmark)`` once per benchmark, an
        instance of :class:`harness.core.benchmark.Benchmark`. Benchmarks double as
        training and calibration data through their ``train`` split.
    """


@hookspec
def register_executors(register: Callable[[Executor], None]) -> None:
    """Register executors: where a sweep's cells run (this machine, a Ray cluster, a job queue).

    :param register: call ``register(executor)`` once per executor, an
        instance of :class:`harness.core.executor.Executor`. Its ``options_class``
        (a dataclass) is what ``--executor-opt KEY=VALUE`` sets; its ``start``
        returns the object that runs the sweep's jobs, each through
        :func:`harness.sweeps.sweep.execute_job` so a cell runs exactly as a local
        run does.
    """


@hookspec
def register_engines(register: Callable[[Engine], None]) -> None:
    """Register generation engines: what serves an artifact while it is evaluated and profiled.

    :param register: call ``register(engine)`` once per engine, an instance of
        :class:`harness.core.engine.Engine`. It declares the artifact ``formats``
        it runs by name (``"transformers"``, ``"compressed-tensors"``, ``"bitsandbytes"``,
        ...: the registered :class:`harness.core.engine.ArtifactFormat`) and its ``devices``, so a run
        it cannot serve is refused before anything starts; ``start(model_dir,
        settings)`` returns a :class:`harness.core.engine.Session` (a context
        manager that always stops what it started) that generates and profiles.
        ``--engine NAME`` picks one; its ``options_class`` is what
        ``--engine-opt KEY=VALUE`` sets, and those options are part of a run's identity.
    """


@hookspec
def register_formats(register: Callable[[ArtifactFormat], None]) -> None:
    """Register artifact formats: kinds of written checkpoint, each recognising its own.

    :param register: call ``register(fmt)`` once per format, an instance of
        :class:`harness.core.engine.ArtifactFormat` (also exported as
        ``harness.api.ArtifactFormat``): a ``name`` that strategies declare they write and engines
        declare they run, a ``description``, and ``recognises(model_dir, config)``, which says
        whether a checkpoint on disk is of this format. :func:`harness.core.formats.artifact_format`
        asks the registered formats in decreasing ``priority`` and the first that recognises a
        checkpoint names it, so a new format (and the engine that runs it) is a plugin, with no
        edit of the harness.
    """
