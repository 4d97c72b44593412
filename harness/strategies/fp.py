"""``fp8``, ``nvfp4``, ``mxfp4``: the floating-point formats people deploy on GPUs, through llmcompressor's presets.

- ``fp8`` (Hopper and later): 8-bit E4M3 weights with one scale per output channel (``FP8_DYNAMIC``'s
  weights), per 128x128 block (``FP8_BLOCK``) or per tensor (``FP8``, static); ``--act-bits 8`` adds E4M3
  activations as the preset quantizes them (dynamic per token, dynamic per group of 128, static per
  tensor calibrated on the run's calibration data); ``--act-bits 16`` keeps them in 16 bits (W8A16 FP8).
- ``nvfp4`` (Blackwell): E2M1 weights in groups of 16 with an E4M3 scale each and one global scale
  (``NVFP4A16``); ``--act-bits 4`` quantizes activations the same way (``NVFP4``: local scales dynamic,
  the global one calibrated).
- ``mxfp4`` (the OCP microscaling format open-weight models ship in): E2M1 in groups of 32 sharing a
  power-of-two (E8M0) scale (``MXFP4A16``); ``--act-bits 4``: dynamic MX activations (``MXFP4``).

Weights are rounded to nearest by llmcompressor's ``QuantizationModifier`` (the presets as llmcompressor
0.14 defines them; every one runs on CPU through its eager fallback) and stored as compressed-tensors
(``float-quantized``, ``nvfp4-pack-quantized``, ``mxfp4-pack-quantized``): the weight bytes are those
written, scales included (FP8 about half of bf16, the FP4 formats under a third on tiny-arith, where
the bf16 embeddings stay). On CPU nothing runs these formats natively: transformers decompresses the
weights and fake-quantizes the activations, so a CPU row measures accuracy and bytes, not speed.

Evaluation through ``hf`` loads the FP4 formats in bfloat16: transformers 5.17 decompresses them to
bfloat16 whatever the requested dtype and then fails in float32 (``expected m1 and m2 to have the same
dtype``), so the run records ``eval_dtype`` and why (:data:`FP4_DTYPE_REASON`). FP8 decompresses to the
requested dtype and evaluates in float32 like every other CPU row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness import hookimpl
from harness.base.errors import UserError
from harness.core.strategy import FULL, QuantContext, QuantReport, Timer
from harness.toolkit.compress import (
    CompressedStrategy,
    load_for_compression,
    probe_logits,
    require_calibration,
    run_oneshot,
    saved_report,
    verify_reload,
)

#: why the FP4 formats evaluate in bfloat16 on CPU (recorded with every such run)
FP4_DTYPE_REASON = (
    "transformers 5.17 decompresses FP4 compressed-tensors weights to bfloat16 whatever dtype is asked, and a "
    "float32 forward then fails ('expected m1 and m2 to have the same dtype'): evaluated in bfloat16"
)


@dataclass
class FP8Options:
    granularity: Literal["channel", "block", "tensor"] = field(
        default="channel",
        metadata={"help": "weight scales: channel (one per output channel, FP8_DYNAMIC), block (128x128, "
                          "FP8_BLOCK), tensor (one per tensor, FP8; its activations are static and calibrated)"},
    )
    num_samples: int = field(default=32, metadata={"help": "calibration texts (static activation scales only: a "
                                                           "min-max over their tokens, no Hessian)"})
    max_length: int = field(default=512, metadata={"help": "calibration texts are truncated to this many tokens"})

    def __post_init__(self) -> None:
        if self.num_samples <= 0 or self.max_length <= 0:
            raise ValueError(f"num_samples and max_length must be > 0, got {self.num_samples}, {self.max_length}")


@dataclass
class FP4Options:
    num_samples: int = field(default=32, metadata={"help": "calibration texts (NVFP4 activations' global scale: a "
                                                           "min-max over their tokens, no Hessian)"})
    max_length: int = field(default=512, metadata={"help": "calibration texts are truncated to this many tokens"})

    def __post_init__(self) -> None:
        if self.num_samples <= 0 or self.max_length <= 0:
            raise ValueError(f"num_samples and max_length must be > 0, got {self.num_samples}, {self.max_length}")


class FloatFormat(CompressedStrategy):
    """A strategy that applies one of llmcompressor's floating-point presets by round-to-nearest.

    Subclasses say which preset a spec and options mean (:meth:`preset`), whether it calibrates
    (:meth:`calibrates`), the artifact format it writes and the width its scale groups need.
    """

    kv_bits = (FULL,)  # an integer KV cache next to float activations is no preset, and vLLM runs fp8 KV only
    needs_calibration = True  # the static variants calibrate; the others ignore the texts
    #: compressed-tensors format name written (its artifact format is ``compressed-tensors-`` + this)
    family: str = ""
    #: inputs per scale group: layers' input widths must be multiples of it
    group: int = 0
    #: the dtype the hf engine evaluates in on CPU (None: the harness's own, float32), and why
    cpu_dtype: str | None = None
    cpu_dtype_reason: str = ""

    def spec(self, bits: int | None, act_bits: int = FULL, kv_bits: int = FULL):
        """The base checks, with the reason a quantized KV cache is refused."""
        if kv_bits != FULL:
            raise UserError(
                f"strategy {self.name!r} does not support KV-cache bits {kv_bits}; supported: 16 (its presets "
                f"quantize no KV cache, and vLLM serves only an FP8 cache: --engine-opt "
                f"server_args='--kv-cache-dtype fp8')"
            )
        return super().spec(bits, act_bits, kv_bits)

    def preset(self, act_bits: int, options: Any) -> str:
        """The llmcompressor preset these settings quantize with (weights only at 16 activation bits)."""
        raise NotImplementedError

    def calibrates(self, act_bits: int, options: Any) -> bool:
        """Whether the preset's scales come from calibration data (static activation scales)."""
        return False

    def group_for(self, options: Any) -> int:
        """Inputs per scale group under ``options``: every quantized layer's input width must be a multiple."""
        return self.group

    def artifact_format_for(self, spec, options) -> str:
        return f"compressed-tensors-{self.family}"

    def scheme(self, act_bits: int, options: Any):
        """The preset's scheme over every Linear layer; without its activations at 16 activation bits."""
        from compressed_tensors.quantization import preset_name_to_scheme

        scheme = preset_name_to_scheme(self.preset(act_bits, options), ["Linear"])
        if act_bits == FULL:
            scheme.input_activations = None
        return scheme

    def check_widths(self, model, group: int) -> None:
        """Refuse, naming the layer, a linear layer (lm_head aside) whose input width the format's groups do not
        divide: the preset has one group size, so there is no other to suggest."""
        import torch

        for name, module in model.named_modules():
            if group and isinstance(module, torch.nn.Linear) and not name.endswith("lm_head"):
                if module.in_features % group:
                    raise UserError(f"strategy {self.name!r}: layer {name} has {module.in_features} input features, "
                                    f"not a multiple of the format's group of {group} inputs")

    def label(self, act_bits: int, options: Any) -> str:
        """``FP8_DYNAMIC``, or ``FP8_DYNAMIC weights only`` at 16 activation bits when the preset quantizes
        activations: the preset, as reports say it."""
        from compressed_tensors.quantization import preset_name_to_scheme

        preset = self.preset(act_bits, options)
        dropped = act_bits == FULL and preset_name_to_scheme(preset, ["Linear"]).input_activations is not None
        return preset + (" weights only" if dropped else "")

    def compress(self, model_dir: Path, ctx: QuantContext) -> tuple[Any, QuantReport]:
        from llmcompressor.modifiers.quantization import QuantizationModifier

        opts = ctx.options
        act_bits = ctx.spec.act_bits
        texts: list[str] = []
        max_length = 512
        if self.calibrates(act_bits, opts):
            texts, max_length = ctx.calibration[: opts.num_samples], opts.max_length
            require_calibration(texts, self.name)
        model, fp = load_for_compression(model_dir, None, self.name)
        group = self.group_for(opts)
        self.check_widths(model, group)
        recipe = QuantizationModifier(config_groups={"group_0": self.scheme(act_bits, opts)}, ignore=["lm_head"])
        with Timer() as t:
            run_oneshot(model, recipe, ctx.tokenizer, texts, max_length, seed=ctx.seed)
        extra: dict[str, Any] = {"scheme": self.label(act_bits, opts), "calibration_samples": len(texts)}
        if self.cpu_dtype and not ctx.device.startswith("cuda"):
            extra.update(eval_dtype=self.cpu_dtype, eval_dtype_reason=self.cpu_dtype_reason)
        return model, QuantReport(fp_bytes=fp, seconds=t.seconds, extra=extra)

    def quantize(self, model_dir: Path, out_dir: Path, ctx: QuantContext) -> QuantReport:
        """Save, then check the reload is the model that was quantized (in the dtype it will evaluate in)."""
        from harness.base.model import load_tokenizer

        model, report = self.compress(model_dir, ctx)
        done = saved_report(self, model, ctx, out_dir, report.fp_bytes, report.seconds, report.extra)
        tokenizer = ctx.tokenizer or load_tokenizer(model_dir)
        if self.cpu_dtype is None:
            diff = verify_reload(model, tokenizer, out_dir, self.load, ctx.calibration, self.name)
        else:
            diff = self.verify_reload_in_dtype(model, tokenizer, out_dir, ctx.calibration)
        done.extra.update(spec=ctx.spec.label, reload_max_logit_diff=diff)
        return done

    def verify_reload_in_dtype(self, model, tokenizer, out_dir: Path, texts: list[str], tol: float = 1e-2) -> float:
        """:func:`~harness.toolkit.compress.verify_reload` for a format that cannot compute in float32 on CPU:
        both models in :attr:`cpu_dtype` (the in-memory one already is: it was quantized in bf16)."""
        texts = list(texts)[:4] or ["1 + 1 ="]
        expected = probe_logits(model, tokenizer, texts)
        diff = float((probe_logits(self.load(Path(out_dir), "cpu"), tokenizer, texts) - expected).abs().max())
        if not diff <= tol:
            raise UserError(
                f"strategy {self.name!r}: the saved checkpoint reloads as a different model (largest logit "
                f"difference {diff:.3g} > {tol:g}); refusing to evaluate it"
            )
        return diff

    def load(self, model_dir: Path, device: str):
        """transformers' reload, in :attr:`cpu_dtype` on CPU when the format needs it."""
        import torch

        from harness.base.model import load_model

        if self.cpu_dtype and device == "cpu":
            return load_model(model_dir, device, dtype=getattr(torch, self.cpu_dtype))
        return load_model(model_dir, device)


class FP8(FloatFormat):
    name = "fp8"
    description = ("FP8 E4M3 weights (per channel, 128x128 block or per tensor), activations with --act-bits 8 "
                   "(llmcompressor FP8_DYNAMIC / FP8_BLOCK / FP8); native on Hopper and later")
    bits = (8,)
    act_bits = (FULL, 8)
    family = "fp8"
    options_class = FP8Options
    PRESETS = {"channel": "FP8_DYNAMIC", "block": "FP8_BLOCK", "tensor": "FP8"}

    def preset(self, act_bits: int, options: FP8Options) -> str:
        return self.PRESETS[options.granularity]

    def calibrates(self, act_bits: int, options: FP8Options) -> bool:
        return act_bits != FULL and options.granularity == "tensor"

    def artifact_format_for(self, spec, options: FP8Options) -> str:
        if options.granularity == "block":
            return "compressed-tensors-fp8-block"
        if spec.act_bits == FULL:
            return "compressed-tensors-fp8-a16"
        return "compressed-tensors-fp8-static" if self.calibrates(spec.act_bits, options) else "compressed-tensors-fp8"

    def group_for(self, options: FP8Options) -> int:
        return 128 if options.granularity == "block" else 0  # 128x128 weight blocks, 128-wide activation groups


class FP4Format(FloatFormat):
    """What the two 4-bit float formats share: E2M1 values, weights alone or with 4-bit activations, and a
    CPU evaluation in bfloat16 (their checkpoints do not compute in float32 there)."""

    bits = (4,)
    act_bits = (FULL, 4)
    cpu_dtype = "bfloat16"
    cpu_dtype_reason = FP4_DTYPE_REASON
    options_class = FP4Options


class NVFP4(FP4Format):
    name = "nvfp4"
    description = ("NVFP4: E2M1 weights in groups of 16 with E4M3 scales (NVFP4A16), activations with --act-bits 4 "
                   "(NVFP4); native on Blackwell")
    family = "nvfp4"
    group = 16

    def preset(self, act_bits: int, options: Any) -> str:
        return "NVFP4A16" if act_bits == FULL else "NVFP4"

    def calibrates(self, act_bits: int, options: Any) -> bool:
        return act_bits != FULL  # the activations' global scale is static


class MXFP4(FP4Format):
    name = "mxfp4"
    description = ("MXFP4: E2M1 weights in groups of 32 sharing a power-of-two scale (MXFP4A16), dynamic MX "
                   "activations with --act-bits 4 (MXFP4)")
    family = "mxfp4"
    group = 32
    needs_calibration = False

    def preset(self, act_bits: int, options: Any) -> str:
        return "MXFP4A16" if act_bits == FULL else "MXFP4"


@hookimpl
def register_strategies(register):
    for strategy in (FP8(), NVFP4(), MXFP4()):
        register(strategy)
