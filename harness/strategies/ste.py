"""``ste``: quantization-aware RL with fake quantization (the seed study's "STE 8-bit" / QAFT).

While the trainer runs, the chosen linear layers compute with integer-rounded
values; afterwards :meth:`STE.finalize` writes real integer weights
(compressed-tensors, through llmcompressor) so the evaluated model's memory is
what the bits promise.

Two behaviours are on offer, because they give different science
(``shared/PAPER.md``):

- ``variant=text`` (default), the paper's *text*: the attention projections'
  **weights** are fake-quantized and the gradient passes straight through the
  rounding (``w + (q(w) - w).detach()``): the optimizer updates full-precision
  master weights that the forward pass sees rounded.
- ``variant=reference``, the paper's *code*: a forward hook on **every**
  ``nn.Linear`` (lm_head included) rounds the layer's **output** per tensor to
  int8 (absmax/127) with ``torch.round``. ``torch.round`` has zero gradient,
  so the only gradient left flows through the absmax scale to one element per
  tensor: the layers' weights receive almost none. Reproduced exactly, to show
  the difference side by side.

``target``, ``layers``, ``estimator`` and ``granularity`` can also be set one by
one (with ``variant=text``); the reference variant fixes them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from harness import hookimpl
from harness.core.strategy import Phase, QuantContext, QuantReport, Strategy, Timer
from harness.toolkit.compress import LIBRARIES

if TYPE_CHECKING:
    import torch

#: what each variant sets; ``text`` values are only defaults, ``reference`` values are fixed
VARIANTS: dict[str, dict[str, str]] = {
    "text": {"target": "weights", "layers": "attention", "estimator": "ste", "granularity": "channel"},
    "reference": {"target": "outputs", "layers": "all", "estimator": "round", "granularity": "tensor"},
}
ATTENTION = re.compile(r"(^|\.)(q_proj|k_proj|v_proj|o_proj)$")
STATE_ATTR = "harness_fake_quant"


@dataclass
class STEOptions:
    variant: Literal["text", "reference"] = field(
        default="text",
        metadata={"help": "text: the paper's description (attention weights, straight-through); reference: the "
                  "paper's code exactly (every linear's output rounded, near-zero gradient)"},
    )
    target: Literal["weights", "outputs"] | None = field(
        default=None, metadata={"help": "what is fake-quantized: layer weights or layer outputs (None = the variant's)"}
    )
    layers: Literal["attention", "all"] | None = field(
        default=None,
        metadata={"help": "attention: q,k,v,o projections; all: every nn.Linear incl. lm_head (None = the variant's)"},
    )
    estimator: Literal["ste", "round"] | None = field(
        default=None,
        metadata={"help": "ste: identity gradient through the rounding; round: plain torch.round as the reference "
                  "code (gradient only through the scale) (None = the variant's)"},
    )
    granularity: Literal["channel", "tensor"] | None = field(
        default=None,
        metadata={"help": "one scale per output channel or per tensor (None = the variant's: text channel, "
                  "reference tensor)"},
    )

    def __post_init__(self) -> None:
        defaults = VARIANTS[self.variant]
        for name, value in defaults.items():
            given = getattr(self, name)
            if given is None:
                setattr(self, name, value)
            elif self.variant == "reference" and given != value:
                raise ValueError(
                    f"variant 'reference' reproduces the reference code and fixes {name}={value!r}; got "
                    f"{name}={given!r} (use variant=text to combine settings freely)"
                )


# -- fake quantization (plain torch) ------------------------------------------------------------


def quantize_dequantize(x: torch.Tensor, bits: int, granularity: str, reference: bool = False) -> torch.Tensor:
    """Symmetric integer round trip, differentiable as written (``torch.round`` has zero gradient).

    ``reference=True`` uses the reference code's scale absmax / (2^(b-1) - 1);
    otherwise compressed-tensors' absmax / ((2^b - 1) / 2), so a weight seen in
    training is exactly the integer weight :meth:`STE.finalize` writes.
    """
    import torch

    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if granularity == "channel" and x.dim() == 2:  # a weight: one scale per output row
        absmax = x.abs().amax(dim=1, keepdim=True)
    elif granularity == "channel":  # an output: one scale per feature (last dimension)
        absmax = x.abs().amax(dim=tuple(range(x.dim() - 1)), keepdim=True)
    else:
        absmax = x.abs().max()
    if reference:
        scale = absmax / qmax
    else:
        scale = torch.clamp(absmax / ((qmax - qmin) / 2), min=torch.finfo(x.dtype).tiny)
    return torch.round(x / scale).clamp(qmin, qmax) * scale


def fake_quant(x: torch.Tensor, bits: int, granularity: str, estimator: str, reference: bool = False) -> torch.Tensor:
    q = quantize_dequantize(x, bits, granularity, reference)
    if estimator == "ste":
        return x + (q - x).detach()  # forward: q; backward: identity
    return q


@cache
def _parametrization_class():
    import torch

    class WeightFakeQuant(torch.nn.Module):
        """Parametrization: the layer computes with ``fake_quant(weight)``; the optimizer updates ``weight``."""

        def __init__(self, bits: int, granularity: str, estimator: str) -> None:
            super().__init__()
            self.bits, self.granularity, self.estimator = bits, granularity, estimator

        def forward(self, weight: torch.Tensor) -> torch.Tensor:
            return fake_quant(weight, self.bits, self.granularity, self.estimator)

    return WeightFakeQuant


def _output_hook(bits: int, granularity: str, estimator: str, reference: bool):
    def hook(module, inputs, output):
        out = fake_quant(output, bits, granularity, estimator, reference)
        if reference and out.requires_grad:
            out.register_hook(lambda grad: grad)  # the reference code's (identity) gradient hook
        return out

    return hook


@dataclass
class FakeQuantState:
    """What :meth:`STE.prepare` installed, kept on the model so finalize can undo it."""

    options: STEOptions
    bits: int
    layer_names: list[str]
    handles: list[Any] = field(default_factory=list)


def target_layers(model, layers: str) -> list[str]:
    """Names of the nn.Linear modules to fake-quantize."""
    import torch

    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and (layers == "all" or ATTENTION.search(name))
    ]


def install(model, opts: STEOptions, bits: int) -> FakeQuantState:
    """Install fake quantization on ``model`` in place."""
    from torch.nn.utils import parametrize

    names = target_layers(model, opts.layers)
    if not names:
        from harness.base.errors import UserError

        raise UserError(f"strategy 'ste': the model has no linear layers matching layers={opts.layers!r}")
    state = FakeQuantState(opts, bits, names)
    modules = dict(model.named_modules())
    reference = opts.variant == "reference"
    for name in names:
        module = modules[name]
        if opts.target == "weights":
            parametrize.register_parametrization(
                module, "weight", _parametrization_class()(bits, opts.granularity, opts.estimator), unsafe=True
            )
        else:
            hook = _output_hook(bits, opts.granularity, opts.estimator, reference)
            state.handles.append(module.register_forward_hook(hook))
    setattr(model, STATE_ATTR, state)
    return state


def uninstall(model) -> FakeQuantState:
    """Remove the fake quantization, leaving the trained full-precision weights in place."""
    from torch.nn.utils import parametrize

    state: FakeQuantState | None = getattr(model, STATE_ATTR, None)
    if state is None:
        raise RuntimeError("strategy 'ste': finalize() got a model that prepare() did not make")
    modules = dict(model.named_modules())
    for name in state.layer_names:
        module = modules[name]
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
    for handle in state.handles:
        handle.remove()
    delattr(model, STATE_ATTR)
    return state


# -- the strategy -------------------------------------------------------------------------------


class STE(Strategy):
    name = "ste"
    description = ("fake quantization during RL (straight-through or the reference code's rounding), "
                   "then real int weights")
    phase = Phase.IN_TRAINING
    bits = (8, 4)
    options_class = STEOptions
    artifact_format = "compressed-tensors"
    libraries = LIBRARIES

    def artifact_format_for(self, spec, options) -> str:
        from harness.toolkit.compress import compressed_format

        return compressed_format(spec)

    def prepare(self, model_dir: Path, ctx: QuantContext):
        import torch

        from harness.base.model import load_model

        model = load_model(model_dir, ctx.device, dtype=torch.float32)
        install(model, ctx.options, ctx.spec.bits)
        return model, None

    def finalize(self, model, out_dir: Path, ctx: QuantContext) -> QuantReport:
        import torch
        from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
        from llmcompressor.modifiers.quantization import QuantizationModifier

        from harness.base.weights import bf16_bytes
        from harness.toolkit.compress import run_oneshot, saved_report

        state = uninstall(model)
        opts = state.options
        model = model.to("cpu", dtype=torch.bfloat16).eval()
        fp = bf16_bytes(model)
        args = QuantizationArgs(num_bits=state.bits, type="int", symmetric=True, strategy=opts.granularity)
        # exact module names, so exactly the trained-quantized layers become integers
        targets = [f"re:^{re.escape(name)}$" for name in state.layer_names]
        scheme = QuantizationScheme(targets=targets, weights=args)
        with Timer() as t:
            run_oneshot(model, QuantizationModifier(config_groups={"group_0": scheme}))
        return saved_report(
            self, model, ctx, out_dir, fp, t.seconds,
            {
                "variant": opts.variant,
                "target": opts.target,
                "layers": opts.layers,
                "estimator": opts.estimator,
                "granularity": opts.granularity,
                "quantized_layers": len(state.layer_names),
                # with target=outputs the activations were rounded only while training; the evaluated model
                # has integer weights for those layers and full-precision activations
                "activations_fake_quantized_in_training_only": opts.target == "outputs",
            },
        )


@hookimpl
def register_strategies(register):
    register(STE())
