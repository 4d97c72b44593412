"""The run configuration: one dataclass, defaults in one place, hashed into a run id.

Two runs with the same configuration are the same run: the id is the hash of
every field that can change a result, so re-running resumes instead of
duplicating, and a sweep skips cells already stored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field

from harness.base.errors import UserError
from harness.core.strategy import QuantSpec
from harness.grading.extraction import check_extraction

#: fields that never change a result (where things live, how fast they run)
NOT_HASHED = frozenset({"data_dir", "batch_size", "device", "engine_url", "engine_python", "divergence"})

#: the fields that say how a model was quantized: a run and its full-precision reference differ only in these
STRATEGY_FIELDS = ("strategy", "bits", "act_bits", "kv_bits", "strategy_opts", "calib")

#: fields added after results were published: hashed only when they differ from the value every
#: earlier run implicitly had, so the ids of stored and published runs stay what they were
#: (a field added later goes here with that value; never remove an entry)
HASHED_UNLESS: dict[str, object] = {
    "engine": "hf", "engine_opts": {}, "extraction": "strict", "data": {}, "compute": "cpu:float32", "split": "test",
}


@dataclass(frozen=True)
class Sampling:
    """Decoding settings. temperature 0 means greedy."""

    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    max_new_tokens: int = 64

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise UserError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise UserError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.n < 1:
            raise UserError(f"n (samples per problem) must be >= 1, got {self.n}")
        if self.max_new_tokens < 1:
            raise UserError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


#: the trainer value of a run that trains nothing
NO_TRAINER = "none"


def divergence_by_default() -> bool:
    """Whether runs measure their divergence unless told: yes, but ``HARNESS_DIVERGENCE=0`` (or false, no,
    off) turns it off where only the plumbing matters (a quick look, a test suite): the stage evaluates
    the reference run too, which doubles the cost of a first quantized run."""
    return os.environ.get("HARNESS_DIVERGENCE", "1").strip().lower() not in ("0", "false", "no", "off")


#: evaluation presets: named bundles of prompt and sampling settings
PRESETS: dict[str, dict] = {
    "default": {"prompt": "boxed", "sampling": Sampling()},
    # The seed study (arXiv 2511.15694): one sample, T=1, top-p 1, 512 tokens, raw problem.
    # Its grading is strict (last box, "the answer is"): the preset fixes --extraction strict.
    "rlquant": {"prompt": "raw", "sampling": Sampling(temperature=1.0, top_p=1.0, n=1, max_new_tokens=512),
                "extraction": "strict"},
}


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one run: model, training, quantization, evaluation."""

    model: str = "tiny-arith"
    trainer: str = NO_TRAINER
    trainer_opts: tuple[tuple[str, str], ...] = ()
    train_data: str = "arith"
    max_steps: int | None = None
    strategy: str = "none"
    bits: int | None = None  # None: the strategy's default, filled in by pipeline.plan
    act_bits: int = 16
    kv_bits: int = 16
    strategy_opts: tuple[tuple[str, str], ...] = ()
    calib: str | None = None
    benchmarks: tuple[str, ...] = ("arith",)
    #: the split every benchmark is evaluated on: ``test`` for every reported row; ``validation`` (where a
    #: benchmark has one) to choose a recipe without reading the test split. Hashed unless ``test``, so
    #: runs stored before the field existed keep their ids
    split: str = "test"
    limit: int | None = None
    prompt: str = "boxed"
    sampling: Sampling = field(default_factory=Sampling)
    preset: str = "default"
    seed: int = 0
    data_dir: str | None = None
    batch_size: int = 64
    device: str = "auto"
    #: the generation engine that evaluates and profiles (``hf``, ``vllm``, ``openai``; see harness.engines)
    engine: str = "hf"
    #: ``--engine-opt`` options: hashed, since they can change a result (the server's dtype, its flags)
    engine_opts: tuple[tuple[str, str], ...] = ()
    #: where the engine's server is (``--engine-url``) and which Python starts it (``--vllm-python``):
    #: not hashed, like ``device``: the same artifact under the same options gives the same result anywhere
    engine_url: str | None = None
    engine_python: str | None = None
    #: how the grader finds a completion's answer: ``strict`` (box, "the answer is"; the RL reward's)
    #: or ``lenient`` (also an unformatted completion's final expression); see harness.grading
    extraction: str = "strict"
    #: what identifies each benchmark's data: filled in by ``pipeline.plan`` (version, and a fingerprint
    #: of problems read from files or a hub); part of the run id, so new data is a new run
    data: tuple[tuple[str, str], ...] = ()
    #: the device class and dtype the run computes in (``cpu:float32``, ``cuda:bfloat16``), filled in by
    #: ``pipeline.plan`` from the resolved device: part of the run id (``device`` itself is not: cuda:0 and
    #: cuda:1 give the same result)
    compute: str = "cpu:float32"
    #: measure how far the run's model moved from its full-precision reference's (``--no-divergence``:
    #: skip; ``HARNESS_DIVERGENCE=0`` makes skipping the default): what it measures does not change the
    #: run's results, so it is not hashed
    divergence: bool = field(default_factory=divergence_by_default)

    def __post_init__(self) -> None:
        check_extraction(self.extraction)
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit must be >= 1, got {self.limit}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be >= 1, got {self.batch_size}")
        if not self.benchmarks:
            raise UserError("at least one benchmark is needed (--benchmarks)")

    @property
    def calib_data(self) -> str:
        """Calibration set: the run's training data unless --calib names another."""
        return self.calib or self.train_data

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["trainer_opts"] = dict(self.trainer_opts)
        d["strategy_opts"] = dict(self.strategy_opts)
        d["engine_opts"] = dict(self.engine_opts)
        d["data"] = dict(self.data)
        d["benchmarks"] = list(self.benchmarks)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        d = dict(d)
        d["trainer_opts"] = tuple(sorted(d.get("trainer_opts", {}).items()))
        d["strategy_opts"] = tuple(sorted(d.get("strategy_opts", {}).items()))
        d["engine_opts"] = tuple(sorted((d.get("engine_opts") or {}).items()))
        d["data"] = tuple(sorted((d.get("data") or {}).items()))
        d["benchmarks"] = tuple(d.get("benchmarks", ("arith",)))
        d["sampling"] = Sampling(**d.get("sampling", {}))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def hashed_dict(self) -> dict:
        return {
            k: v
            for k, v in self.to_dict().items()
            if k not in NOT_HASHED and not (k in HASHED_UNLESS and v == HASHED_UNLESS[k])
        }

    @property
    def run_id(self) -> str:
        return stable_hash(self.hashed_dict())

    @property
    def label(self) -> str:
        """Short human name: ``tiny-arith grpo rtn W4A16``; ``... W4A16 (vllm)`` on another engine than hf."""
        # the default strategy is the full-precision reference, labelled by its dtype
        quantized = self.strategy != field_default("strategy")
        spec = QuantSpec(self.bits, self.act_bits, self.kv_bits).label if quantized else "bf16"
        parts = [self.model, self.trainer if self.trainer != NO_TRAINER else "base", self.strategy, spec]
        if self.engine != field_default("engine"):
            parts.append(f"({self.engine})")
        if self.split != field_default("split"):
            parts.append(f"[{self.split}]")  # never mistaken for a reported (test) row
        return " ".join(parts)


def reference_config(config: RunConfig, strategy: str) -> RunConfig:
    """The full-precision twin of ``config``: the same model, training, evaluation and engine, quantized by
    the reference strategy ``strategy`` at its default settings (the run a plain ``--strategy NAME`` gives)."""
    return dataclasses.replace(config, strategy=strategy, bits=None, act_bits=16, kv_bits=16, strategy_opts=(),
                               calib=None)


def field_default(name: str):
    """The default of a :class:`RunConfig` field: the one place defaults are written (the CLI reads it)."""
    f = {f.name: f for f in dataclasses.fields(RunConfig)}[name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def stable_hash(obj: object, length: int = 16) -> str:
    """Hash of a JSON-able object, independent of dict order."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]
