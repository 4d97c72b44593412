"""``autogptq``: GPTQ through auto-gptq, for environments where it still imports.

auto-gptq is archived upstream; 0.7.1 installs beside transformers 5 but its
import fails (``cannot import name 'no_init_weights'``), so on the harness's
stack this strategy is registered and reports itself unavailable with that
error. Where it does import (an older transformers, a CUDA machine), it runs
auto-gptq's documented quantize-and-save flow. auto-gptq's GPTQ kernels are
CUDA kernels, so the strategy declares that it needs a GPU.
"""

from __future__ import annotations

import functools
from pathlib import Path

from harness.api import QuantContext, QuantReport, Timer
from harness_gptqmodel.common import GPTQBackendOptions, GPTQBackendStrategy, calibration_examples, missing_reason


@functools.lru_cache(maxsize=1)
def import_failure() -> str | None:
    """Why auto-gptq cannot be used here, or None. It is only imported when installed, so the cost
    falls on environments that chose it; the result is cached for the process."""
    reason = missing_reason("auto_gptq", "auto-gptq", "autogptq")
    if reason:
        return reason
    try:
        import auto_gptq  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means the backend is unusable here
        return f"auto-gptq is installed but does not import: {type(exc).__name__}: {exc}"
    return None


class AutoGPTQ(GPTQBackendStrategy):
    name = "autogptq"
    description = "GPTQ through auto-gptq (archived; does not import with transformers 5)"
    needs_gpu = True
    libraries = ("auto-gptq", "transformers", "torch")

    def unavailable_reason(self) -> str | None:
        return import_failure()

    def quantize(self, model_dir: Path, out_dir: Path, ctx: QuantContext) -> QuantReport:
        import torch
        from auto_gptq import AutoGPTQForCausalLM, BaseQuantizeConfig

        opts: GPTQBackendOptions = ctx.options
        config = BaseQuantizeConfig(
            bits=ctx.spec.bits, group_size=opts.group_size, sym=opts.symmetric,
            desc_act=opts.desc_act, damp_percent=opts.damp_percent,
        )
        fp = self.checked_bf16_bytes(model_dir, opts)
        texts = ctx.calibration[: opts.num_samples]
        examples = [
            {k: torch.tensor([v]) for k, v in row.items()}
            for row in calibration_examples(ctx.tokenizer, texts, opts.max_length)
        ]
        with Timer() as t:
            model = AutoGPTQForCausalLM.from_pretrained(str(model_dir), config, torch_dtype=torch.float16)
            model.quantize(examples)
        model.save_quantized(str(out_dir), use_safetensors=True)
        return self.saved_report(out_dir, ctx, fp, t.seconds, {"format": "gptq", "calibration_samples": len(texts)})

    def load(self, model_dir: Path, device: str):
        from auto_gptq import AutoGPTQForCausalLM

        model = AutoGPTQForCausalLM.from_quantized(str(model_dir), device=device, use_safetensors=True).model
        model.eval()
        return model
