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

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from harness import hookimpl
from harness.api import Completion, CpuClass, DtypeChoice, Engine, EngineSettings, OnBatch, Session, TokenScores


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

    def score(self, pairs: Sequence[tuple[str, str]], batch_size: int = 8) -> Iterator[TokenScores]:
        """Teacher-forced log-probabilities over the whole vocabulary: the exact figures."""
        import torch

        for start in range(0, len(pairs), batch_size):
            batch = pairs[start : start + batch_size]
            rows = [(self._ids(prompt), self._ids(continuation)) for prompt, continuation in batch]
            width = max(len(p) + len(c) for p, c in rows)
            pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for i, (p, c) in enumerate(rows):
                ids[i, : len(p) + len(c)] = torch.tensor(p + c)
                mask[i, : len(p) + len(c)] = 1
            with torch.inference_mode():
                device = self.model.device
                logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            for i, (p, c) in enumerate(rows):
                if not c or not p:
                    yield TokenScores([], [], full=logits.new_zeros((0, logits.shape[-1])).float().cpu())
                    continue
                full = torch.log_softmax(logits[i, len(p) - 1 : len(p) + len(c) - 1].float(), dim=-1).cpu()
                target = torch.tensor(c).view(-1, 1)
                yield TokenScores(c, full.gather(1, target).squeeze(1).tolist(), full=full)

    @property
    def compute_dtype(self) -> str | None:
        """The dtype of the model's embeddings: what its activations flow in."""
        try:
            return str(self.model.get_input_embeddings().weight.dtype).removeprefix("torch.")
        except AttributeError:
            return None

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

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


#: what the in-process loader computes in on each CPU class (``harness.base.model.COMPUTE_DTYPE``: float32), and
#: why it stays so (``scripts/measure_cpu_dtype.py``, Qwen3-0.6B shape, two threads, 32 greedy tokens)
_UNMEASURED = "not measured on this CPU class; the in-process loader computes in float32 on every CPU"
CPU_DTYPES = {
    CpuClass.AVX512: DtypeChoice("float32", _UNMEASURED),  # and the classes above it, which take this row
    CpuClass.AVX2: DtypeChoice(
        "float32", "measured on avx2 (torch 2.13): bfloat16 decodes 1.6x faster at batch 1 (9.2 against 5.6 "
                   "tok/s) but takes 3.4x longer to the first token (1,782 against 526 ms) and decodes 8 "
                   "sequences at 0.82x (13.8 against 16.8 tok/s); evaluation is batched prefill and decode"),
}


class HFEngine(Engine):
    name = "hf"
    description = "transformers generate in this process (runs every format; CPU decompresses int weights)"
    formats = ("*",)
    devices = ("cpu", "cuda")
    #: runs inside the harness's process: a run that trained here evaluates in a fresh one (clean profile)
    in_process = True
    can_score = True  #: the whole vocabulary's log-probabilities: exact divergence
    cpu_dtypes = CPU_DTYPES

    def start(self, model_dir: Path, settings: EngineSettings) -> HFSession:
        from harness.base.model import load_tokenizer

        model = settings.strategy.load(model_dir, settings.device)
        return HFSession(model, load_tokenizer(model_dir), settings.device, Path(model_dir))


@hookimpl
def register_engines(register):
    register(HFEngine())
