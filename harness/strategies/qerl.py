"""``qerl``: QLoRA plus adaptive quantization noise (QeRL, arXiv 2510.11696).

QeRL trains LoRA adapters on a frozen 4-bit base, as ``qlora`` does, and adds
*adaptive quantization noise* (AQN): a channel-wise Gaussian vector
``Z ~ N(0, sigma^2 I)`` added to the weight of every RMSNorm in front of the
quantized projections, so the next linear layer sees its input channels
rescaled by ``(w + Z)`` -- noise of the kind quantization error makes, which
the paper argues raises policy entropy and so exploration. ``sigma`` decays
in ``stages`` equal stages of training from ``noise_start`` to ``noise_end``
(exponentially: ``sigma_k = start * (end / start) ** (k / (K - 1))``).

Here the base is bitsandbytes NF4 (the paper's NVFP4 needs a Blackwell GPU).
Everything but the noise is :class:`~harness.strategies.qlora.QLoRA`'s: the
same NF4 base, LoRA defaults, learning rate and finalize (merged and
re-quantized, or ``eval_mode=adapter``). With ``aqn=false`` nothing is
added, so the training is the ``qlora`` row's step for step.

How the noise is applied. The strategy gives the trainer a
``TrainerCallback`` (:meth:`QeRL.train_callbacks`): at the start of training
it puts a parametrization (``torch.nn.utils.parametrize``) on each targeted
RMSNorm weight, so every forward -- the rollouts and the loss alike -- reads
``w + Z``; the stored ``w`` is never written. At the start of each optimizer
step it draws a fresh ``Z`` at that step's scale, from a generator of its own
seeded by (run seed, step): the noise is the same on a resumed run, and the
sampling stream of the completions stays the one ``qlora`` draws. At every
logged step it adds the scale in use (``aqn/noise_scale``) to the trainer's
logs, beside TRL's own ``entropy`` (mean token entropy of the sampled
completions), so both land in the run's training curve. At the end of
training the parametrizations are removed (the original weights restored as
they were), before the strategy finalizes the model.

Defaults are the paper's schedule (5e-2 -> 5e-4). The published training
script (NVlabs/QeRL, ``training/*_nvfp4_*.sh``) uses 1e-2 -> 1e-4 over 10
stages, splits training into ``stages + 1`` intervals and leaves the first
noise-free: ``noise_start=1e-2 noise_end=1e-4 noise_free_start=true``. That
script also perturbs every RMSNorm, the final one included (``norms`` here
names which), and trains the norms' weights too (not done here: the base stays
frozen as in ``qlora``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness import hookimpl
from harness.base.errors import UserError
from harness.core.strategy import QuantContext, QuantReport
from harness.strategies.qlora import QLoRA, QLoRAOptions

#: the paper's schedule (Sec. 3.3); the published script's is 1e-2 -> 1e-4, 10 stages
PAPER_NOISE = (5e-2, 5e-4)
SCRIPT_NOISE = (1e-2, 1e-4)
#: the key of the noise scale in the trainer's logs (and so in the run's training curve)
NOISE_KEY = "aqn/noise_scale"
DEFAULT_NORMS = ("input_layernorm", "post_attention_layernorm")


@dataclass
class QeRLOptions(QLoRAOptions):
    """QLoRA's options (same defaults) plus the noise schedule."""

    aqn: bool = field(default=True, metadata={"help": "add adaptive quantization noise (false: exactly qlora)"})
    noise_start: float = field(
        default=PAPER_NOISE[0],
        metadata={"help": f"noise std of the first stage (paper: {PAPER_NOISE[0]}; "
                          f"published script: {SCRIPT_NOISE[0]})"},
    )
    noise_end: float = field(
        default=PAPER_NOISE[1],
        metadata={"help": f"noise std of the last stage (paper: {PAPER_NOISE[1]}; "
                          f"published script: {SCRIPT_NOISE[1]})"},
    )
    stages: int = field(default=10, metadata={"help": "number of equal stages of training the scale decays over "
                                                      "(published script: 10)"})
    schedule: Literal["exponential", "linear", "constant"] = field(
        default="exponential",
        metadata={"help": "how the scale goes from noise_start to noise_end across the stages: exponential (the "
                  "paper's geometric decay), linear, or constant (noise_start throughout)"},
    )
    noise_free_start: bool = field(
        default=False,
        metadata={"help": "the published script's split: stages + 1 intervals, the first without noise"},
    )
    norms: tuple[str, ...] = field(
        default=DEFAULT_NORMS,
        metadata={"help": "RMSNorm modules that get noise, by name suffix (default: the two norms of each decoder "
                  "layer, in front of the quantized projections; add norm for the final one)"},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("noise_start", "noise_end"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.noise_end > self.noise_start:
            raise ValueError(
                f"noise_end ({self.noise_end}) must not exceed noise_start ({self.noise_start}): the noise decays"
            )
        if self.stages < 1:
            raise ValueError(f"stages must be >= 1, got {self.stages}")
        if not self.norms:
            raise ValueError("norms must name at least one RMSNorm module, e.g. input_layernorm")


def noise_scale(step: int, total_steps: int, opts: QeRLOptions) -> float:
    """The noise std at optimizer step ``step`` (0-based) of ``total_steps``: 0 when AQN is off."""
    if not opts.aqn or opts.noise_start == 0:
        return 0.0
    intervals = opts.stages + (1 if opts.noise_free_start else 0)
    interval = min(intervals - 1, max(0, step) * intervals // max(1, total_steps))
    if opts.noise_free_start:
        if interval == 0:
            return 0.0
        interval -= 1
    if opts.schedule == "constant" or opts.stages == 1:
        return opts.noise_start
    frac = interval / (opts.stages - 1)
    if opts.schedule == "linear":
        return opts.noise_start + (opts.noise_end - opts.noise_start) * frac
    return opts.noise_start * (opts.noise_end / opts.noise_start) ** frac


def target_norms(model, names: tuple[str, ...]) -> list[tuple[str, Any]]:
    """(name, module) of the RMSNorms whose name ends with one of ``names``, in model order."""
    found = []
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        is_rms = "rmsnorm" in type(module).__name__.lower()
        if is_rms and weight is not None and weight.dim() == 1 and any(name.endswith(n) for n in names):
            found.append((name, module))
    if not found:
        raise UserError(f"strategy 'qerl': no RMSNorm module matches norms={','.join(names)} in this model")
    return found


def _noise_parametrization():
    """A parametrization that returns ``weight + noise`` (noise: a plain tensor, never saved)."""
    import torch

    class AddNoise(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.noise: torch.Tensor | None = None

        def forward(self, weight):
            return weight if self.noise is None else weight + self.noise

    return AddNoise()


def aqn_callback(opts: QeRLOptions, seed: int):
    """The trainer callback that applies, steps and logs the noise (see the module docstring)."""
    import torch
    from torch.nn.utils import parametrize
    from transformers import TrainerCallback

    class AdaptiveQuantizationNoise(TrainerCallback):
        def __init__(self) -> None:
            self.norms: list[Any] = []
            self.scale = 0.0
            self.generator = torch.Generator()

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            for _, module in target_norms(model, opts.norms):
                if not parametrize.is_parametrized(module, "weight"):
                    parametrize.register_parametrization(module, "weight", _noise_parametrization())
                self.norms.append(module)

        def on_step_begin(self, args, state, control, **kwargs):
            self.resample(state.global_step, state.max_steps)

        def resample(self, step: int, total_steps: int) -> None:
            """Draw this step's noise: one N(0, scale^2) value per channel of every targeted norm."""
            self.scale = noise_scale(step, total_steps, opts)
            self.generator.manual_seed(seed * 1_000_003 + step)
            for module in self.norms:
                holder = module.parametrizations.weight[0]
                original = module.parametrizations.weight.original
                if self.scale == 0:
                    holder.noise = None
                    continue
                z = torch.randn(original.shape, generator=self.generator, dtype=torch.float32) * self.scale
                holder.noise = z.to(device=original.device, dtype=original.dtype)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs is not None and "train_runtime" not in logs:
                logs[NOISE_KEY] = self.scale

        def on_train_end(self, args, state, control, **kwargs):
            for module in self.norms:
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
            self.norms = []

    return AdaptiveQuantizationNoise()


class QeRL(QLoRA):
    name = "qerl"
    description = "QeRL: NF4 base + LoRA (as qlora) with adaptive quantization noise in the RMSNorm weights"
    options_class = QeRLOptions

    def train_callbacks(self, model, ctx: QuantContext) -> list:
        opts: QeRLOptions = ctx.options
        return [aqn_callback(opts, ctx.seed)] if opts.aqn else []

    def finalize(self, model, out_dir: Path, ctx: QuantContext) -> QuantReport:
        report = super().finalize(model, out_dir, ctx)
        opts: QeRLOptions = ctx.options
        report.extra["aqn"] = {
            "on": opts.aqn, "noise_start": opts.noise_start, "noise_end": opts.noise_end, "stages": opts.stages,
            "schedule": opts.schedule, "noise_free_start": opts.noise_free_start, "norms": list(opts.norms),
        }
        return report


@hookimpl
def register_strategies(register):
    register(QeRL())
