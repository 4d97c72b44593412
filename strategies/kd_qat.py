"""``kd-qat``: Reasoning-QAT (arXiv 2601.14888): PTQ initialisation, quantization-aware training
with knowledge distillation from the full-precision model, then optionally RL on the student.

The study's findings, each an option here so it can be re-tested:

1. **PTQ is a strong initialisation** (``init=gptq|rtn``): a copy of the model is quantized by
   the registered post-training strategy of that name at the run's bits and group size; the
   student starts from its dequantized weights *and its scales*, so before the first step the
   student computes exactly what the PTQ checkpoint computes.
2. **Distillation is a robust objective** (``objective=kd|ntp``, ``kl=forward|reverse``): the
   full-precision model (the run's input model) is the teacher; the loss is the KL between its
   and the student's next-token distributions on every completion token (``kd``), or plain
   cross-entropy on the same tokens (``ntp``).
3. **Data: the teacher's own generations** on the training-domain prompts (``data=teacher``;
   the prompts of the run's ``--calib`` set, the same problems that calibrate GPTQ: finding 4,
   aligned domains), or the reference solutions (``data=reference``).
4. **RL after QAT** (``--trainer grpo``): the trainer receives the fake-quantized student from
   :meth:`KDQAT.prepare` and keeps training it; :meth:`KDQAT.finalize` writes what RL made.
   Without a trainer the pipeline calls ``prepare`` then ``finalize`` itself
   (``needs_trainer = False``).

While training, every quantized linear computes with
``clamp(round_ste(w / s), qmin, qmax) * s`` per group of ``group_size`` inputs: the gradient
passes straight through the rounding to the full-precision master weight ``w`` (zero outside
the clamp range) and, as in LSQ, reaches the scale ``s``. ``finalize`` writes exactly those
integers and scales (rounded to bf16) as a compressed-tensors checkpoint, so the evaluated
model is the trained one, and weight bytes are what the bits promise.
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from harness import hookimpl
from harness.compress import LIBRARIES
from harness.errors import UserError
from harness.distillation import Example, distill
from harness.group_fake_quant import dequantize, integers, parametrization_class
from harness.strategy import Phase, QuantContext, QuantReport, Strategy, Timer, library_versions

if TYPE_CHECKING:
    import torch

STATE_ATTR = "harness_kd_qat"
IGNORE = ("lm_head",)  # as rtn and gptq: the (tied) output head stays in full precision


@dataclass
class KDQATOptions:
    init: Literal["gptq", "rtn"] = field(
        default="gptq",
        metadata={"help": "post-training strategy whose result initialises the student (weights and scales); "
                  "gptq calibrates on the --calib set's train split, like the QAT data"},
    )
    objective: Literal["kd", "ntp"] = field(
        default="kd",
        metadata={"help": "kd: KL to the full-precision teacher's token distributions; ntp: next-token "
                  "cross-entropy on the same tokens (the study's SFT baseline)"},
    )
    kl: Literal["forward", "reverse"] = field(
        default="forward",
        metadata={"help": "forward KL(teacher || student) (the study's default) or reverse KL(student || teacher)"},
    )
    data: Literal["teacher", "reference"] = field(
        default="teacher",
        metadata={"help": "teacher: completions the teacher generates for the --calib prompts; reference: the "
                  "set's reference solutions"},
    )
    prompts: int = field(
        default=2048,
        metadata={"help": "training problems sampled from the --calib set's train split (the teacher completes "
                  "each `samples` times); GPTQ calibrates on the first of them, exactly as a plain gptq run"},
    )
    group_size: int = field(
        default=128,
        metadata={"help": "inputs sharing one scale (must divide every linear's input width; tiny-arith has "
                  "256 and 768); 0 = one scale per output channel"},
    )
    steps: int = field(default=150, metadata={"help": "optimizer steps of quantization-aware distillation"})
    lr: float = field(default=2e-4, metadata={"help": "peak AdamW learning rate (linear warm-up, then linear decay)"})
    warmup_steps: int = field(default=10, metadata={"help": "linear warm-up steps"})
    batch_size: int = field(default=16, metadata={"help": "sequences per optimizer step"})
    max_length: int = field(default=192, metadata={"help": "tokens per training sequence (prompt + completion)"})
    max_new_tokens: int = field(default=64, metadata={"help": "tokens per teacher completion"})
    temperature: float = field(
        default=1.0, metadata={"help": "teacher sampling temperature for its completions; 0 = greedy"}
    )
    samples: int = field(default=2, metadata={"help": "teacher completions per prompt (1 when greedy)"})
    train_scales: bool = field(default=True, metadata={"help": "learn the quantization scales too (LSQ-style)"})

    def __post_init__(self) -> None:
        if self.group_size < 0:
            raise ValueError(f"group_size must be >= 0, got {self.group_size}")
        for name in ("prompts", "steps", "batch_size", "max_length", "max_new_tokens", "samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.temperature == 0 and self.samples != 1:
            raise ValueError(f"greedy teacher completions (temperature=0) are all alike: samples must be 1, "
                             f"got {self.samples}")


# -- fake quantization -----------------------------------------------------------------------------


@dataclass
class KDQATState:
    """What :meth:`KDQAT.prepare` installed and measured, kept on the model for ``finalize``."""

    bits: int
    layer_names: list[str]
    init_codes: dict[str, Any] = field(default_factory=dict)  # integer codes at step 0 (int8 tensors)
    report: dict[str, Any] = field(default_factory=dict)
    curve: list[dict] = field(default_factory=list)


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


# -- PTQ initialisation --------------------------------------------------------------------------


def ptq_initialisation(model_dir: Path, ctx: QuantContext, opts: KDQATOptions) -> tuple[dict, QuantReport]:
    """Quantize a copy with the ``init`` strategy; its dequantized weights and scales per layer.

    The post-training strategy is looked up in the registry, so the very
    implementation a ``--strategy gptq`` run uses initialises the student.
    """
    import tempfile

    from harness.plugins import get_registry

    init = get_registry().strategies.get(opts.init)
    if init.phase is not Phase.POST_TRAINING:
        raise UserError(f"strategy 'kd-qat': init={opts.init!r} is not a post-training strategy")
    names = {f.name for f in dataclasses.fields(init.options_class)} if dataclasses.is_dataclass(init.options_class) else set()
    given = {"group_size": str(opts.group_size)}
    if "symmetric" in names:
        given["symmetric"] = "true"
    unknown = sorted(set(given) - names)
    if unknown:
        raise UserError(f"strategy 'kd-qat': init strategy {opts.init!r} has no option {unknown[0]!r}")
    init_ctx = QuantContext(
        spec=init.spec(ctx.spec.bits), options=init.make_options(given), tokenizer=ctx.tokenizer,
        calibration=list(ctx.calibration), calibration_prompts=list(ctx.calibration_prompts), seed=ctx.seed,
        device=ctx.device,
    )
    with tempfile.TemporaryDirectory(prefix="kd-qat-init-") as tmp:
        report = init.quantize(Path(model_dir), Path(tmp), init_ctx)
        weights = read_quantized(Path(tmp))
    return weights, report


def read_quantized(model_dir: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Dequantized fp32 weight and [out, groups] scale of every quantized linear of a checkpoint.

    The checkpoint is loaded with transformers, which decompresses
    compressed-tensors weights at the first forward; symmetric contiguous
    groups only (what ``weight_scheme`` makes), anything else is refused.
    """
    import torch

    from harness.model import load_model

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
    return out


# -- distillation data and loss --------------------------------------------------------------------


def training_examples(teacher, tokenizer, ctx: QuantContext, opts: KDQATOptions) -> tuple[list[Example], dict]:
    """Prompt + completion token ids: the teacher's generations, or the reference solutions."""
    from harness.config import Sampling
    from harness.generation import generate

    prompts = list(ctx.calibration_prompts)
    if not prompts:
        raise UserError("strategy 'kd-qat' needs training prompts, but the calibration set is empty")
    enc = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    eos = tokenizer.eos_token_id
    pairs: list[tuple[str, str, bool]] = []
    start = time.perf_counter()
    if opts.data == "reference":
        for prompt, text in zip(prompts, ctx.calibration):
            if not text.startswith(prompt):
                raise RuntimeError("strategy 'kd-qat': a calibration text does not start with its prompt")
            pairs.append((prompt, text[len(prompt):], True))
    else:
        sampling = Sampling(temperature=opts.temperature, top_p=1.0, n=opts.samples, max_new_tokens=opts.max_new_tokens)
        completions = generate(teacher, tokenizer, prompts, sampling, batch_size=64, seed=ctx.seed)
        for prompt, comps in zip(prompts, completions):
            for c in comps:
                pairs.append((prompt, c.text, c.n_tokens < opts.max_new_tokens))
    examples = []
    for prompt, completion, ended in pairs:
        p = enc(prompt)
        ids = (p + enc(completion) + ([eos] if ended and eos is not None else []))[: opts.max_length]
        if len(ids) > len(p):
            examples.append(Example(ids, len(p)))
    if not examples:
        raise RuntimeError("strategy 'kd-qat': no training example has a completion token (max_length too small?)")
    tokens = [len(e.ids) - e.prompt_len for e in examples]
    return examples, {"examples": len(examples), "completion_tokens_mean": sum(tokens) / len(tokens),
                      "data_seconds": time.perf_counter() - start}


@contextmanager
def _progress(opts: KDQATOptions):
    """A progress bar on stderr (stdout stays clean for --json); yields the per-step callback."""
    from harness.progress import stage_progress

    label = "KD-QAT" if opts.objective == "kd" else "QAT (next-token)"
    with stage_progress(label, unit="steps") as progress:
        task = progress.add_task("", total=opts.steps)
        yield lambda row: progress.update(task, completed=row["step"], description=f"loss {row['loss']:.4f}")


# -- the strategy ----------------------------------------------------------------------------------


class KDQAT(Strategy):
    name = "kd-qat"
    description = ("Reasoning-QAT: GPTQ/RTN init, fake-quantized distillation from the full-precision model "
                   "(then RL with --trainer), real low-bit weights")
    phase = Phase.IN_TRAINING
    needs_trainer = False
    bits = (3, 2, 4)
    needs_calibration = True
    options_class = KDQATOptions
    artifact_format = "compressed-tensors"
    libraries = LIBRARIES

    def artifact_format_for(self, spec, options) -> str:
        from harness.compress import compressed_format

        return compressed_format(spec)

    def calibration_size(self, options: KDQATOptions) -> int:
        return options.prompts

    def prepare(self, model_dir: Path, ctx: QuantContext):
        """PTQ init + quantization-aware distillation; returns the fake-quantized student."""
        import torch

        from harness.compress import check_group_size
        from harness.model import load_model, load_tokenizer

        opts: KDQATOptions = ctx.options
        tokenizer = ctx.tokenizer or load_tokenizer(model_dir)
        cpu_start = time.process_time()
        with Timer() as total:
            teacher = load_model(model_dir, ctx.device, dtype=torch.float32)
            check_group_size(teacher, opts.group_size, self.name, IGNORE)
            with Timer() as t_init:
                weights, init_report = ptq_initialisation(model_dir, ctx, opts)
            student = load_model(model_dir, ctx.device, dtype=torch.float32)
            state = install(student, weights, ctx.spec.bits, opts.train_scales)
            examples, data_stats = training_examples(teacher, tokenizer, ctx, opts)
            with Timer() as t_train, _progress(opts) as on_log:
                state.curve = distill(
                    student, teacher, examples, tokenizer.pad_token_id, opts, ctx.seed, ctx.device, on_log
                )
        del teacher
        state.report = {
            "init": opts.init,
            "init_weight_bytes": init_report.weight_bytes,
            "init_seconds": t_init.seconds,
            "qat_seconds": t_train.seconds,
            "prepare_seconds": total.seconds,
            # CPU seconds of this process (all threads): wall time on a shared machine says little
            "prepare_cpu_seconds": time.process_time() - cpu_start,
            "loss_first": state.curve[0]["loss"],
            "loss_last": sum(r["loss"] for r in state.curve[-10:]) / len(state.curve[-10:]),
            **data_stats,
        }
        return student, None

    def finalize(self, model, out_dir: Path, ctx: QuantContext) -> QuantReport:
        """Write the student's integers and scales as a compressed-tensors checkpoint."""
        import torch
        from compressed_tensors.utils import update_offload_parameter
        from llmcompressor.modifiers.quantization import QuantizationModifier

        from harness.compress import run_oneshot, save_compressed, weight_scheme
        from harness.weights import bf16_bytes, stored_weight_bytes

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
                update_offload_parameter(module, "weight_scale", scale.reshape(module.weight_scale.shape).to(module.weight_scale.dtype))
        save_compressed(model, ctx.tokenizer, out_dir)
        return QuantReport(
            weight_bytes=stored_weight_bytes(out_dir),
            fp_bytes=fp,
            seconds=state.report.get("prepare_seconds", 0.0) + t.seconds,
            versions=library_versions(self.libraries),
            extra={
                **state.report,
                "objective": opts.objective,
                "kl": opts.kl if opts.objective == "kd" else None,
                "data": opts.data,
                "group_size": opts.group_size,
                "steps": len(state.curve),
                "quantized_layers": len(state.layer_names),
                # share of integer codes that differ from the PTQ initialisation (after any RL too)
                "codes_changed_fraction": changed / max(1, total_codes),
                "curve": state.curve,
            },
        )


@hookimpl
def register_strategies(register):
    register(KDQAT())
