"""The quantization strategy interface.

A strategy is small: a name, the bit widths it supports, its phase, what it
needs, an options dataclass, and one or two methods. The pipeline decides
*when* it runs; a strategy never evaluates and never knows which benchmark
will judge it.

- Post-training strategies implement :meth:`Strategy.quantize`: read a model
  directory, write a quantized model directory that :meth:`Strategy.load`
  (by default plain ``transformers``) can load.
- In-training strategies implement :meth:`Strategy.prepare` (turn a model into
  a trainable, fake-quantized or adapter-wrapped model) and
  :meth:`Strategy.finalize` (write the real quantized model for evaluation).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.base.errors import UserError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class Phase(str, Enum):
    POST_TRAINING = "post-training"
    IN_TRAINING = "in-training"


FULL = 16  # the bit width that means "not quantized"


@dataclass(frozen=True)
class QuantSpec:
    """Bit widths asked for: weights, activations, KV cache (16 = not quantized)."""

    bits: int
    act_bits: int = FULL
    kv_bits: int = FULL

    @property
    def label(self) -> str:
        """``W4A16``; ``W4A4KV4`` when the KV cache is quantized too."""
        kv = f"KV{self.kv_bits}" if self.kv_bits != FULL else ""
        return f"W{self.bits}A{self.act_bits}{kv}"


@dataclass
class QuantContext:
    """Everything a strategy may use, besides the model itself."""

    spec: QuantSpec
    options: Any
    tokenizer: PreTrainedTokenizerBase | None = None
    #: calibration texts (prompts plus reference solutions from the calib set)
    calibration: list[str] = field(default_factory=list)
    seed: int = 0
    device: str = "cpu"


@dataclass
class QuantReport:
    """What quantization cost and produced; stored with the run."""

    weight_bytes: int | None = None
    fp_bytes: int | None = None
    seconds: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


class Strategy:
    """Base class for quantization strategy plugins."""

    name: str = ""
    description: str = ""
    phase: Phase = Phase.POST_TRAINING
    #: supported weight bit widths; the first is the default
    bits: tuple[int, ...] = (FULL,)
    act_bits: tuple[int, ...] = (FULL,)
    kv_bits: tuple[int, ...] = (FULL,)
    needs_calibration: bool = False
    needs_gpu: bool = False
    #: in-training strategies only: the trainer the run uses when it names none (kd-qat: ``kd``);
    #: None means the run must name one with ``--trainer``
    default_trainer: str | None = None
    #: dataclass of options; defaults documented beside each field
    options_class: type = object
    #: libraries whose versions are recorded with every result, and are part of the cache keys of
    #: the artifacts it writes (an upgraded llmcompressor must not reuse what the old one made)
    libraries: tuple[str, ...] = ()
    #: a full-precision reference: the leaderboard pairs every other strategy's row against a
    #: reference row of the same configuration (the built-in ``none``; a third party's may be one too)
    is_reference: bool = False
    #: a format that only its own engines run (gguf) cannot be compared with the reference strategy's output on
    #: them: its runs are compared with this strategy's own unquantized width instead (gguf: 32, the F32 file)
    reference_bits: int | None = None
    #: the version of what this strategy writes: bump it when an artifact it made under the same
    #: options would now come out different, so cached artifacts are not reused (artifact keys hold it)
    version: str = "1"
    #: the format of what it writes (the name of a registered :class:`~harness.core.engine.ArtifactFormat`):
    #: engines declare the formats they run, and a run whose engine cannot run it is refused when planned
    artifact_format: str = "transformers"

    # -- checks -----------------------------------------------------------------
    def unavailable_reason(self) -> str | None:
        """Why this strategy cannot run on this machine, or None when it can."""
        return None

    def spec(self, bits: int | None, act_bits: int = FULL, kv_bits: int = FULL) -> QuantSpec:
        """Validate the asked bit widths against what this strategy declares."""
        bits = self.bits[0] if bits is None else bits
        for what, value, allowed in (
            ("bits", bits, self.bits),
            ("activation bits", act_bits, self.act_bits),
            ("KV-cache bits", kv_bits, self.kv_bits),
        ):
            if value not in allowed:
                raise UserError(
                    f"strategy {self.name!r} does not support {what} {value}; "
                    f"supported: {', '.join(map(str, allowed))}"
                )
        return QuantSpec(bits, act_bits, kv_bits)

    def artifact_format_for(self, spec: QuantSpec, options: Any) -> str:
        """The format these settings produce: :attr:`artifact_format`, unless the settings change it."""
        return self.artifact_format

    def calibrates_with(self, options: Any) -> bool:
        """Whether these options take calibration texts: :attr:`needs_calibration`, unless an option turns
        calibration on (gguf's importance matrix). What calibrates has the calibration data, prompt and
        seed in its artifact key; what does not is the same artifact whatever they are."""
        return self.needs_calibration

    def make_options(self, opts: dict[str, Any]) -> Any:
        from harness.base.options import build_options

        return build_options(self.options_class, opts, owner=f"strategy {self.name!r}")

    def check_runnable(self, device: str) -> None:
        """Refuse early, before anything is written, when this cannot run here."""
        reason = self.unavailable_reason()
        if reason:
            raise UserError(f"strategy {self.name!r} is unavailable: {reason}")
        if self.needs_gpu and not device.startswith("cuda"):
            raise UserError(
                f"strategy {self.name!r} needs a CUDA GPU, but the run's device is {device!r}"
            )

    # -- post-training ----------------------------------------------------------------
    def quantize(self, model_dir: Path, out_dir: Path, ctx: QuantContext) -> QuantReport:
        """Write the quantized model of ``model_dir`` into ``out_dir``."""
        raise NotImplementedError(f"strategy {self.name!r} has no post-training quantize()")

    def load(self, model_dir: Path, device: str) -> PreTrainedModel:
        """Load what :meth:`quantize` or :meth:`finalize` wrote, ready to generate."""
        from harness.base.model import load_model

        return load_model(model_dir, device)

    # -- in-training --------------------------------------------------------------------
    def prepare(self, model_dir: Path, ctx: QuantContext) -> tuple[PreTrainedModel, Any]:
        """Load ``model_dir`` ready for quantization-aware training.

        Returns the model and a PEFT config (or None) for the trainer to apply.
        """
        raise NotImplementedError(f"strategy {self.name!r} cannot run during training")

    def initialisation(self, spec: QuantSpec, options: Any) -> tuple[str, dict[str, str]] | None:
        """A post-training strategy (its name and ``key=value`` options) whose checkpoint at this run's
        bits the training starts from, or None to start from the model itself.

        Core quantizes with it as a stage of the run's graph, keyed as that
        strategy's own run would key it (so the checkpoint a ``--strategy gptq``
        run makes is the one reused), and hands that checkpoint to :meth:`prepare`.
        """
        return None

    def finalize(self, model: PreTrainedModel, out_dir: Path, ctx: QuantContext) -> QuantReport:
        """Write the trained model as a real quantized model into ``out_dir``."""
        raise NotImplementedError(f"strategy {self.name!r} cannot run during training")

    def recommended_lr(self, ctx: QuantContext | None, preset: str) -> float | None:
        """The learning rate training under this strategy should use under a trainer ``preset`` when
        the trainer's own is unset (None: the trainer's preset decides). Adapters want larger ones."""
        return None

    def train_callbacks(self, model: PreTrainedModel, ctx: QuantContext) -> list:
        """``transformers.TrainerCallback`` objects the trainer adds for this strategy (default: none).

        For what must happen at training steps without editing the trainer's
        library (qerl's noise schedule); they run before the trainer's own
        callbacks, so values they add to the logs reach the training curve.
        """
        return []


class Timer:
    """``with Timer() as t: ...; t.seconds``: wall time of a quantization step."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def library_versions(names: tuple[str, ...] | list[str]) -> dict[str, str]:
    """Installed versions of ``names`` (missing ones say so), for the run record."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out
