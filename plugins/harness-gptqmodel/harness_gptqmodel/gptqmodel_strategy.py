"""``gptqmodel``: GPTQ through gptqmodel, the maintained successor of auto-gptq.

Writes gptqmodel's GPTQ checkpoint (``qweight``/``qzeros``/``scales``/``g_idx``
in safetensors plus ``quantize_config.json``). Plain transformers needs
``optimum`` besides gptqmodel to read it, so :meth:`load` goes through
``GPTQModel.load`` and returns the transformers model inside. On CPU that is
the torch kernel, which computes in bf16 (it refuses fp32).

On this stack gptqmodel 7.6 is the release that installs beside llmcompressor
0.14 (7.7 wants torch 2.14.1 and transformers >= 5.20.2); it pins numpy 2.2.6,
so it belongs in its own environment (see the README).
"""

from __future__ import annotations

from pathlib import Path

from harness.api import QuantContext, QuantReport, Timer
from harness_gptqmodel.common import GPTQBackendOptions, GPTQBackendStrategy, calibration_examples, missing_reason
from harness_gptqmodel.compat import import_gptqmodel, working_directory


class GPTQModelStrategy(GPTQBackendStrategy):
    name = "gptqmodel"
    description = "GPTQ through gptqmodel (GPTQ v1 checkpoint; loads through gptqmodel)"
    libraries = ("gptqmodel", "transformers", "torch")

    def unavailable_reason(self) -> str | None:
        return missing_reason("gptqmodel", "gptqmodel", "gptqmodel")

    def quantize(self, model_dir: Path, out_dir: Path, ctx: QuantContext) -> QuantReport:
        gm = import_gptqmodel()
        opts: GPTQBackendOptions = ctx.options
        config = gm.QuantizeConfig(
            bits=ctx.spec.bits,
            group_size=opts.group_size,
            sym=opts.symmetric,
            desc_act=opts.desc_act,
            damp_percent=opts.damp_percent,
            # gptqmodel offloads finished layers to a temporary folder by default; keep
            # everything in memory so nothing is written outside out_dir
            offload_to_disk=False,
        )
        # absolute paths: the quantization runs inside out_dir (see working_directory)
        source = str(Path(model_dir).resolve()) if Path(model_dir).exists() else str(model_dir)
        fp = self.checked_bf16_bytes(source, opts)
        texts = ctx.calibration[: opts.num_samples]
        examples = calibration_examples(ctx.tokenizer, texts, opts.max_length)
        out_dir = Path(out_dir).resolve()
        out_dir.mkdir(parents=True, exist_ok=True)
        with working_directory(out_dir), Timer() as t:
            model = gm.GPTQModel.load(source, config, device=ctx.device)
            model.quantize(examples, tokenizer=ctx.tokenizer, batch_size=1)
        model.save(str(out_dir))
        return self.saved_report(out_dir, ctx, fp, t.seconds, {
            "format": "gptq", "log_dir": "logs", "group_size": opts.group_size, "symmetric": opts.symmetric,
            "desc_act": opts.desc_act, "calibration_samples": len(texts),
        })

    def load(self, model_dir: Path, device: str):
        """The transformers model inside ``GPTQModel.load``: torch kernel in bf16 on CPU, the best kernel on GPU."""
        import torch

        gm = import_gptqmodel()
        backend = gm.BACKEND.TORCH if device == "cpu" else gm.BACKEND.AUTO
        wrapped = gm.GPTQModel.load(str(model_dir), device=device, backend=backend, dtype=torch.bfloat16)
        model = wrapped.model
        model.eval()
        return model
