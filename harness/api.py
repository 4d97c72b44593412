"""The public plugin API: everything a plugin distribution may import from the harness.

A third-party strategy, trainer, benchmark, executor, engine or artifact format
imports from here (and ``harness.hookimpl``) and from nothing else in
``harness``: every interface a plugin implements, and the value types its
methods receive, keep their meaning across releases here, while every other
module is internal and may move. The shipped GPTQ-extensions plugin
(``plugins/harness-gptqmodel``) and the built-in engines keep to this list,
and tests check that they do.

Importing this module is light (no torch): the heavy libraries load inside
the functions that need them.
"""

from __future__ import annotations

from harness import hookimpl
from harness.base.cpu_dtype import CpuClass, DtypeChoice
from harness.base.errors import DataError, HarnessError, MissingDependencyError, UserError
from harness.base.weights import bf16_bytes, stored_weight_bytes
from harness.compat import Seam
from harness.core.benchmark import Benchmark, Problem
from harness.core.config import Sampling
from harness.core.engine import (
    ArtifactFormat,
    Completion,
    Engine,
    EngineSettings,
    OnBatch,
    Session,
    TokenScores,
)
from harness.core.executor import DoneCallback, Executor, Job, Run
from harness.core.formats import artifact_format, checkpoint_config, quant_method, quantization_config_of
from harness.core.strategy import FULL, Phase, QuantContext, QuantReport, QuantSpec, Strategy, Timer, library_versions
from harness.core.trainer import TrainContext, Trainer, TrainReport
from harness.sweeps.sweep import execute_job
from harness.toolkit.compress import check_group_size, meta_model

__all__ = [
    "FULL",
    "ArtifactFormat",
    "Benchmark",
    "Completion",
    "CpuClass",
    "DataError",
    "DoneCallback",
    "DtypeChoice",
    "Engine",
    "EngineSettings",
    "Executor",
    "HarnessError",
    "Job",
    "MissingDependencyError",
    "OnBatch",
    "Phase",
    "Problem",
    "QuantContext",
    "QuantReport",
    "QuantSpec",
    "Run",
    "Sampling",
    "Seam",
    "Session",
    "Strategy",
    "Timer",
    "TokenScores",
    "TrainContext",
    "TrainReport",
    "Trainer",
    "UserError",
    "artifact_format",
    "bf16_bytes",
    "check_group_size",
    "checkpoint_config",
    "execute_job",
    "hookimpl",
    "library_versions",
    "meta_model",
    "quant_method",
    "quantization_config_of",
    "stored_weight_bytes",
]
