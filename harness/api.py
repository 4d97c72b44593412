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
from harness.benchmark import Benchmark, Problem
from harness.compat import Seam
from harness.compress import check_group_size, meta_model
from harness.errors import DataError, HarnessError, MissingDependencyError, UserError
from harness.executor import Executor, Job, Run, execute_job
from harness.strategy import FULL, Phase, QuantContext, QuantReport, QuantSpec, Strategy, Timer, library_versions
from harness.trainer import TrainContext, Trainer, TrainReport
from harness.weights import bf16_bytes, stored_weight_bytes

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
