"""The public plugin API: everything a plugin distribution may import from the harness.

A third-party strategy, trainer, benchmark or engine imports from here (and
``harness.hookimpl``) and from nothing else in ``harness``: these names keep
their meaning across releases, while every other module is internal and may
move. The shipped GPTQ-extensions plugin (``plugins/harness-gptqmodel``) keeps
to this list, and a test checks that it does.

Importing this module is light (no torch): the heavy libraries load inside
the functions that need them.
"""

from __future__ import annotations

from harness import hookimpl
from harness.base.errors import DataError, HarnessError, MissingDependencyError, UserError
from harness.base.weights import bf16_bytes, stored_weight_bytes
from harness.compat import Seam
from harness.core.benchmark import Benchmark, Problem
from harness.core.executor import Executor, Job, Run
from harness.core.strategy import FULL, Phase, QuantContext, QuantReport, QuantSpec, Strategy, Timer, library_versions
from harness.core.trainer import TrainContext, Trainer, TrainReport
from harness.sweeps.sweep import execute_job
from harness.toolkit.compress import check_group_size, meta_model

__all__ = [
    "FULL",
    "Benchmark",
    "DataError",
    "Executor",
    "HarnessError",
    "Job",
    "MissingDependencyError",
    "Phase",
    "Problem",
    "QuantContext",
    "QuantReport",
    "QuantSpec",
    "Run",
    "Seam",
    "Strategy",
    "Timer",
    "TrainContext",
    "TrainReport",
    "Trainer",
    "UserError",
    "bf16_bytes",
    "check_group_size",
    "execute_job",
    "hookimpl",
    "library_versions",
    "meta_model",
    "stored_weight_bytes",
]
