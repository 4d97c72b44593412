"""``kd-qat``: Reasoning-QAT (arXiv 2601.14888): PTQ initialisation, then quantization-aware
training through a trainer: distillation from the full-precision model (``kd``, the default),
and RL on the student after it (``--trainer kd,grpo``).

This strategy only quantizes; the trainers train (core's lifecycle, :mod:`harness.runs.training`):

1. **PTQ is a strong initialisation** (``init=gptq|rtn``): the run's graph quantizes the model
   with the post-training strategy of that name first (:meth:`KDQAT.initialisation`), at the
   run's bits and group size on the run's calibration set, keyed as that strategy's own run, so
   it is the very checkpoint a ``--strategy gptq --bits 3`` run makes (and shares it).
   :meth:`KDQAT.prepare` installs its dequantized weights *and its scales* as fake quantization:
   before the first step the student computes exactly what the PTQ checkpoint does. A trainer
   chain's later stage (``grpo`` after ``kd``) starts from the earlier one's checkpoint the same way.
2. **Distillation is a robust objective**: the ``kd`` trainer (TRL's GKDTrainer; objectives,
   KL direction and data are its options) is what kd-qat runs with when the run names no trainer.
3. **RL after QAT**: ``--trainer kd,grpo`` chains GRPO after distillation in the run's graph;
   each stage writes a real low-bit checkpoint, and the second starts from the first's integers
   and scales.

While training, every quantized linear computes with
``clamp(round_ste(w / s), qmin, qmax) * s`` per group of ``group_size`` inputs: the gradient
passes straight through the rounding to the full-precision master weight ``w`` (zero outside
the clamp range) and, as in LSQ, reaches the scale ``s``. The parameters the checkpoint keeps
in bf16 (embeddings and the tied head, norms) compute in bf16 too: after every optimizer step
they are set to their fp32 master's bf16 value (:func:`bf16_master_callback`), the master keeping
the updates smaller than bf16's step. ``finalize`` writes exactly those integers, scales (rounded
to bf16) and bf16 values as a compressed-tensors checkpoint, so the evaluated model computes
exactly what the trained student did, and weight bytes are what the bits promise. (Until version
3 those parameters trained in fp32 and were rounded at finalize: a silent change of up to 0.8
logits after three steps on tiny-reason, found by issue 29's diagnosis.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from harness import hookimpl
from harness.base.errors import UserError
from harness.core.strategy import Phase, QuantContext, QuantReport, Strategy, Timer
from harness.toolkit.compress import LIBRARIES
from harness.toolkit.group_fake_quant import dequantize, integers, parametrization_class

if TYPE_CHECKING:
    import torch

STATE_ATTR = "harness_kd_qat"
IGNORE = ("lm_head",)  # as rtn and gptq: the (tied) output head stays in full precision


@dataclass
class KDQATOptions:
    init: Literal["gptq", "rtn"] = field(
        default="gptq",
        metadata={"help": "post-training strategy whose result initialises the student (weights and scales), "
                  "calibrated as a plain run of it is"},
    )
    group_size: int = field(
        default=128,
        metadata={"help": "inputs sharing one scale (must divide every linear's input width; tiny-arith has "
                  "256 and 768); 0 = one scale per output channel"},
    )
    train_scales: bool = field(default=True, metadata={"help": "learn the quantization scales too (LSQ-style)"})

    def __post_init__(self) -> None:
        if self.group_size < 0:
            raise ValueError(f"group_size must be >= 0, got {self.group_size}")


# -- fake quantization -----------------------------------------------------------------------------


@dataclass
class KDQATState:
    """What :meth:`KDQAT.prepare` installed and measured, kept on the model for ``finalize``."""

    bits: int
    layer_names: list[str]
    init_codes: dict[str, Any] = field(default_factory=dict)  # integer codes at step 0 (int8 tensors)


def install(model, weights: dict[str, tuple[torch.Tensor, torch.Tensor]], bits: int, train_scales: bool) -> KDQATState:
    """Copy each layer's initial (dequantized) weight in, and fake-quantize it with its scale."""
    import torch
    from torch.nn.utils import parametrize

    modules = dict(model.named_modules())
    missing = sorted(set(weights) - set(modules))
    if missing:
        raise RuntimeError(f"strategy 'kd-qat': the initial checkpoint has layers the model lacks: {missing[:3]}")
    cls = parametrization_class()
    codes = {}
    for name, (weight, scale) in weights.items():
        module = modules[name]
        with torch.no_grad():
            module.weight.copy_(weight.to(module.weight.dtype))
        scale = scale.to(module.weight.device)
        codes[name] = integers(module.weight, scale, bits).to(torch.int8)
        parametrize.register_parametrization(module, "weight", cls(scale, bits, train_scales), unsafe=True)
    state = KDQATState(bits, sorted(weights), codes)
    setattr(model, STATE_ATTR, state)
    return state


def uninstall(model) -> tuple[KDQATState, dict[str, torch.Tensor]]:
    """Remove the fake quantization, leaving integer-valued weights ``q * s`` (s in bf16); returns the scales."""
    import torch
    from torch.nn.utils import parametrize

    state: KDQATState | None = getattr(model, STATE_ATTR, None)
    if state is None:
        raise RuntimeError("strategy 'kd-qat': finalize() got a model that prepare() did not make")
    modules = dict(model.named_modules())
    scales = {}
    for name in state.layer_names:
        module = modules[name]
        scale = module.parametrizations.weight[0].scale.detach().to(torch.bfloat16).float()  # as in forward
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
        with torch.no_grad():
            codes = integers(module.weight.float(), scale, state.bits)
            module.weight.copy_(dequantize(codes, scale).to(module.weight.dtype))
        scales[name] = scale
    delattr(model, STATE_ATTR)
    return state, scales


def bf16_master_callback():
    """A ``TrainerCallback`` keeping every parameter outside the quantized weights at the bf16 value of
    an fp32 master: the student computes with what the checkpoint will store, and small updates
    still add up. (A resumed run starts its masters from the stored, bf16, values.)"""
    import torch
    from transformers import TrainerCallback

    class Bf16Master(TrainerCallback):
        def __init__(self) -> None:
            self.params: list[torch.nn.Parameter] = []
            self.masters: list[torch.Tensor] = []

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.params = [p for name, p in model.named_parameters()
                           if ".parametrizations." not in name and p.is_floating_point()]
            self.masters = [p.detach().clone().float() for p in self.params]
            with torch.no_grad():
                for p, m in zip(self.params, self.masters):
                    p.copy_(m.to(torch.bfloat16))

        def on_step_end(self, args, state, control, **kwargs):
            with torch.no_grad():
                for p, m in zip(self.params, self.masters):
                    m.add_(p.float() - m.to(torch.bfloat16).float())  # this step's update, onto the master
                    p.copy_(m.to(torch.bfloat16))

    return Bf16Master()


# -- the starting checkpoint --------------------------------------------------------------------


def read_quantized(model_dir: Path) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], Any]:
    """Dequantized fp32 weight and [out, groups] scale of every quantized linear of a checkpoint, and
    the loaded (decompressed) model itself.

    The checkpoint is loaded with transformers, which decompresses
    compressed-tensors weights at the first forward; symmetric contiguous
    groups only (what ``weight_scheme`` makes), anything else is refused.
    """
    import torch

    from harness.base.model import load_model

    model = load_model(model_dir, "cpu", dtype=torch.float32)
    with torch.no_grad():
        model(torch.zeros(1, 1, dtype=torch.long))
    out = {}
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or not hasattr(module, "weight_scale"):
            continue
        if getattr(module, "weight_zero_point", None) is not None and module.weight_zero_point.abs().sum() > 0:
            raise UserError(f"strategy 'kd-qat': {name} of the initial checkpoint is asymmetric; "
                            "kd-qat trains symmetric scales only")
        g_idx = getattr(module, "weight_g_idx", None)
        scale = module.weight_scale.detach().float()
        if g_idx is not None:
            expected = torch.arange(module.in_features) // (module.in_features // scale.shape[1])
            if not torch.equal(g_idx.long().cpu(), expected):
                raise UserError(f"strategy 'kd-qat': {name} has activation-ordered groups (g_idx); "
                                "initialise from a GPTQ run with actorder static")
        out[name] = (module.weight.detach().float().clone(), scale.reshape(module.out_features, -1).clone())
    if not out:
        raise RuntimeError(f"strategy 'kd-qat': no quantized linear layer found in {model_dir}")
    return out, model


def quantized_scheme(model_dir: Path) -> tuple[int, int] | None:
    """(bits, group size) of a compressed-tensors checkpoint's weights, or None for a plain model."""
    import json

    config = Path(model_dir) / "config.json"
    quant = json.loads(config.read_text()).get("quantization_config") if config.is_file() else None
    if not quant or quant.get("quant_method") != "compressed-tensors":
        return None
    weights = next(iter(quant.get("config_groups", {}).values()), {}).get("weights") or {}
    return int(weights.get("num_bits", 0)), int(weights.get("group_size") or 0)


def checkpoint_student(model_dir: Path, bits: int, group_size: int) -> tuple[Any, dict]:
    """A plain fp32 model holding a quantized checkpoint's every parameter, and its layers' weights
    and scales: a trainer chain's later stage starts exactly where the earlier one ended."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    found = quantized_scheme(model_dir)
    if found != (bits, group_size):
        raise UserError(f"strategy 'kd-qat': the input checkpoint is {found[0]}-bit with group size {found[1]}; "
                        f"this run asks for {bits}-bit with group size {group_size}")
    weights, loaded = read_quantized(model_dir)
    config = AutoConfig.from_pretrained(model_dir)
    del config.quantization_config
    student = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    wanted = student.state_dict()
    state = {k: v for k, v in loaded.state_dict().items() if k in wanted}
    missing = sorted(set(wanted) - set(state) - {"lm_head.weight"})
    if missing:
        raise RuntimeError(f"strategy 'kd-qat': the input checkpoint lacks {missing[:3]}")
    student.load_state_dict(state, strict=False)
    student.tie_weights()
    return student.eval(), weights


class KDQAT(Strategy):
    name = "kd-qat"
    description = ("Reasoning-QAT: GPTQ/RTN init, fake-quantized training (default trainer: kd, distillation "
                   "from the full-precision model; kd,grpo adds RL), real low-bit weights")
    phase = Phase.IN_TRAINING
    default_trainer = "kd"
    bits = (3, 2, 4)
    options_class = KDQATOptions
    artifact_format = "compressed-tensors"
    libraries = LIBRARIES
    version = "3"  # 3: the non-quantized parameters train in bf16 (finalize no longer rounds them)

    def artifact_format_for(self, spec, options) -> str:
        from harness.toolkit.compress import compressed_format

        return compressed_format(spec)

    def initialisation(self, spec, options: KDQATOptions) -> tuple[str, dict[str, str]]:
        """The ``init`` strategy at this run's bits, with kd-qat's group size and symmetric scales (the
        only kind it trains): with the defaults, exactly a ``--strategy gptq`` run's checkpoint."""
        return options.init, {"group_size": str(options.group_size), "symmetric": "true"}

    def train_callbacks(self, model, ctx: QuantContext) -> list:
        """The non-quantized parameters train at the precision the checkpoint stores (bf16)."""
        return [bf16_master_callback()]

    def prepare(self, model_dir: Path, ctx: QuantContext):
        """The fake-quantized student, computing exactly what the input checkpoint computes: the PTQ
        initialisation core made (:meth:`initialisation`), or a trainer chain's earlier stage."""
        opts: KDQATOptions = ctx.options
        if quantized_scheme(Path(model_dir)) is None:
            raise RuntimeError(f"strategy 'kd-qat' prepares from a quantized checkpoint, and {model_dir} is "
                               "not one (core quantizes with the init strategy first)")
        student, weights = checkpoint_student(Path(model_dir), ctx.spec.bits, opts.group_size)
        install(student, weights, ctx.spec.bits, opts.train_scales)
        return student.to(ctx.device), None

    def finalize(self, model, out_dir: Path, ctx: QuantContext) -> QuantReport:
        """Write the student's integers and scales as a compressed-tensors checkpoint."""
        import torch
        from compressed_tensors.utils import update_offload_parameter
        from llmcompressor.modifiers.quantization import QuantizationModifier

        from harness.base.weights import bf16_bytes
        from harness.toolkit.compress import run_oneshot, saved_report, weight_scheme

        opts: KDQATOptions = ctx.options
        state, scales = uninstall(model)
        changed = sum(
            int((integers(m.weight.float(), scales[n], state.bits).to(torch.int8) != state.init_codes[n]).sum())
            for n, m in model.named_modules() if n in scales
        )
        total_codes = sum(c.numel() for c in state.init_codes.values())
        model = model.to("cpu", dtype=torch.bfloat16).eval()
        fp = bf16_bytes(model)
        with Timer() as t:
            # the modifier attaches the scheme (and min-max scales); the trained scales replace those
            scheme = weight_scheme(state.bits, opts.group_size, symmetric=True)
            run_oneshot(model, QuantizationModifier(config_groups={"group_0": scheme}, ignore=list(IGNORE)))
            modules = dict(model.named_modules())
            for name, scale in scales.items():
                module = modules[name]
                scale = scale.reshape(module.weight_scale.shape).to(module.weight_scale.dtype)
                update_offload_parameter(module, "weight_scale", scale)
        return saved_report(
            self, model, ctx, out_dir, fp, t.seconds,
            {
                "group_size": opts.group_size,
                "quantized_layers": len(state.layer_names),
                # share of integer codes that differ from the initialisation (what training changed)
                "codes_changed_fraction": changed / max(1, total_codes),
            },
        )


@hookimpl
def register_strategies(register):
    register(KDQAT())
