"""The module the ``harness`` entry point names: registers both strategies."""

from __future__ import annotations

from harness.api import hookimpl
from harness_gptqmodel.autogptq_strategy import AutoGPTQ
from harness_gptqmodel.gptqmodel_strategy import GPTQModelStrategy


@hookimpl
def register_strategies(register):
    register(GPTQModelStrategy())
    register(AutoGPTQ())
