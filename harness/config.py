"""The run configuration: one dataclass, defaults in one place, hashed into a run id.

Two runs with the same configuration are the same run: the id is the hash of
every field that can change a result, so re-running resumes instead of
duplicating, and a sweep skips cells already stored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from harness.errors import UserError

#: fields that never change a result (where things live, how fast they run)
NOT_HASHED = frozenset({"data_dir", "batch_size", "device"})

#: fields added after results were published: hashed only when they differ from the value every
#: earlier run implicitly had, so the ids of stored and published runs stay what they were
#: (a field added later goes here with that value; never remove an entry)
HASHED_UNLESS: dict[str, object] = {}


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


#: evaluation presets: named bundles of prompt and sampling settings
PRESETS: dict[str, dict] = {
    "default": {"prompt": "boxed", "sampling": Sampling()},
    # The seed study (arXiv 2511.15694): one sample, T=1, top-p 1, 512 tokens, raw problem.
    "rlquant": {"prompt": "raw", "sampling": Sampling(temperature=1.0, top_p=1.0, n=1, max_new_tokens=512)},
}


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one run: model, training, quantization, evaluation."""

    model: str = "tiny-arith"
    trainer: str = "none"
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
    limit: int | None = None
    prompt: str = "boxed"
    sampling: Sampling = field(default_factory=Sampling)
    preset: str = "default"
    seed: int = 0
    data_dir: str | None = None
    batch_size: int = 64
    device: str = "auto"

    def __post_init__(self) -> None:
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
        d["benchmarks"] = list(self.benchmarks)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        d = dict(d)
        d["trainer_opts"] = tuple(sorted(d.get("trainer_opts", {}).items()))
        d["strategy_opts"] = tuple(sorted(d.get("strategy_opts", {}).items()))
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
        """Short human name: ``tiny-arith grpo rtn W4A16``."""
        from harness.strategy import QuantSpec

        spec = QuantSpec(self.bits, self.act_bits, self.kv_bits).label if self.strategy != "none" else "bf16"
        parts = [self.model, self.trainer if self.trainer != "none" else "base", self.strategy, spec]
        return " ".join(parts)


def stable_hash(obj: object, length: int = 16) -> str:
    """Hash of a JSON-able object, independent of dict order."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]
