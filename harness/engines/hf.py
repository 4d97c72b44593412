"""``hf``: eager ``transformers.generate`` in the harness's own process (the built-in default).

Runs every artifact format, because it loads through the strategy's own
``load`` (bitsandbytes layers, re-attached QuaRot rotations, PEFT adapters).
On CPU, compressed-tensors checkpoints decompress to fp32 when they load, so
its latency and memory describe a full-precision model: the ``vllm`` engine
times the int kernels that serve them.

Generation is :func:`harness.toolkit.generation.generate` and latency is
:func:`harness.toolkit.profiling.latency_figures`, exactly as before engines existed:
the same greedy outputs and the same profile keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import hookimpl
from harness.api import Completion, Engine, EngineSettings, OnBatch, Session


class HFSession(Session):
    """A loaded model and tokenizer; ``generate`` is today's batched, length-sorted generation."""

    engine = "hf"

    def __init__(self, model, tokenizer, device: str = "cpu", model_dir: Path | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.model_dir = model_dir

    def generate(self, prompts: Sequence[str], sampling, batch_size: int = 64, seed: int = 0,
                 on_batch: OnBatch | None = None) -> list[list[Completion]]:
        from harness.toolkit.generation import generate

        return generate(self.model, self.tokenizer, prompts, sampling, batch_size=batch_size, seed=seed,
                        on_batch=on_batch)

    def measure(self):
        """What the evaluation costs in this process: wall, forward time and peak memory (``watch``)."""
        from harness.base.memory import watch

        return watch(self.model, self.device)

    def profile(self, prompts: Sequence[str], config, settings, timings: dict, eval_stats=None,
                quant: dict | None = None) -> dict[str, Any]:
        from harness.toolkit.profiling import profile_run

        out = profile_run(
            model=self.model, tokenizer=self.tokenizer, model_dir=self.model_dir, config=config,
            device=self.device, prompts=prompts,
            timings=timings, quant=quant or {}, settings=settings,
            phases={"eval": eval_stats} if eval_stats is not None else None,
        )
        out.update(engine_figures(self.model, self.model_dir))
        return out

    def stop(self) -> None:
        self.model = None


def engine_figures(model, model_dir: Path | None) -> dict[str, Any]:
    """engine, its version, the checkpoint's quantization method and the linear layers' classes."""
    from harness.api import library_versions, quant_method

    kernels = sorted({type(m).__name__ for m in model.modules() if "Linear" in type(m).__name__}) if model else []
    return {
        "engine": "hf",
        "engine_version": f"transformers {library_versions(('transformers',))['transformers']}",
        "quant_method": quant_method(model_dir) if model_dir else None,
        "kernels": kernels,
    }


class HFEngine(Engine):
    name = "hf"
    description = "transformers generate in this process (runs every format; CPU decompresses int weights)"
    formats = ("*",)
    devices = ("cpu", "cuda")
    #: runs inside the harness's process: a run that trained here evaluates in a fresh one (clean profile)
    in_process = True

    def start(self, model_dir: Path, settings: EngineSettings) -> HFSession:
        from harness.base.model import load_tokenizer

        model = settings.strategy.load(model_dir, settings.device)
        return HFSession(model, load_tokenizer(model_dir), settings.device, Path(model_dir))


@hookimpl
def register_engines(register):
    register(HFEngine())
