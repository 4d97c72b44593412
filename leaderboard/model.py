"""The leaderboard's data model: a complete run, and a row (every seed of one configuration).

A row's figures come from its runs' configs and profiles; a latency or
throughput figure is always read together with the engine that measured it
(:attr:`Row.latency_engine`), because an eager ``transformers`` loop and a
serving engine time the same checkpoint very differently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.core.config import RunConfig, field_default, stable_hash

#: config fields that say how a row was evaluated; rows compared by a filter share them
EVAL_FIELDS = ("model", "prompt", "sampling", "preset", "split", "limit", "benchmarks")
VARIANT_RANK = {"": 0, "corrected": 0, "faithful": 1}
#: KV-cache tokens counted in a row's memory figure (``--context-tokens``): one long reasoning trace,
#: long enough that a 4-bit KV cache saves about as much as 4-bit weights do on a small model
DEFAULT_CONTEXT_TOKENS = 4096
#: a row's divergence figures, each a field of its JSON (None where not measured, and for a reference row)
DIVERGENCE_FIELDS = ("kl_mean", "kl_p99", "top1_agree", "nll_delta", "flips")
#: the engine of every run stored before engines existed (eager ``transformers.generate``)
DEFAULT_ENGINE = field_default("engine")


def engine_of(config: dict) -> str:
    """The generation engine a run's config names (runs made before engines existed: ``hf``)."""
    return str(config.get("engine") or DEFAULT_ENGINE)


def hashed_config(config: dict) -> dict:
    """The fields of a config that change a result, the engine among them.

    The engine is added here even while :class:`~harness.core.config.RunConfig`
    does not know it (a store written by a newer harness), so rows of two
    engines never pool or compare as one; ``hf`` is left out, as the run id
    leaves out a field at the value every earlier run had, so the keys of
    stored rows stay what they were.
    """
    hashed = RunConfig.from_dict(config).hashed_dict()
    engine = engine_of(config)
    if engine != DEFAULT_ENGINE:
        hashed["engine"] = engine
    return hashed


def config_key(config: dict, drop: tuple[str, ...] = ("seed",)) -> str:
    """Hash of the fields that change a result, less ``drop``."""
    return stable_hash({k: v for k, v in hashed_config(config).items() if k not in drop})


def bits_label(config: dict) -> str:
    """``W4A16`` / ``W4A4KV4``; ``bf16`` for full precision (as in a run's label)."""
    from harness.core.strategy import QuantSpec

    if config.get("strategy", "none") == "none" or config.get("bits") is None:
        return "bf16"
    return QuantSpec(int(config["bits"]), int(config.get("act_bits", 16)), int(config.get("kv_bits", 16))).label


def default_name(config: dict) -> str:
    trainer = config.get("trainer", "none")
    parts = ["base" if trainer == "none" else trainer]
    if config.get("strategy", "none") != "none":
        parts += [config["strategy"], bits_label(config)]
    return " ".join(parts)


@dataclass
class Run:
    """One complete run, as the leaderboard needs it."""

    id: str
    label: str
    created: float
    config: dict
    tags: dict
    metrics: dict
    profile: dict
    scores: dict[str, dict[str, tuple[float, float]]]
    samples: list[dict]
    #: made by a strategy that declares itself a full-precision reference (``Strategy.is_reference``)
    reference: bool = False
    #: benchmark -> stored divergence from the reference run (``Store.divergence``; empty: none measured)
    divergence: dict[str, dict] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    @property
    def latency_engine(self) -> str:
        """The engine that took this run's latency figures (profiles before engines: the run's own)."""
        return str(self.profile.get("engine") or engine_of(self.config))

    @property
    def compute_dtype(self) -> str:
        """The dtype the engine computed in: the profile's, else the run's identity (``cpu:float32``; profiles
        before the dtype was recorded computed in that one)."""
        return str(self.profile.get("compute_dtype") or str(self.config.get("compute") or "cpu:float32").split(":")[-1])

    def overall(self) -> dict:
        """This seed's pooled accuracy and reward (no interval: the row carries that)."""
        scores = [s for problems in self.scores.values() for s in problems.values()]
        if not scores:
            return {"accuracy": None, "reward": None}
        return {"accuracy": sum(a for a, _ in scores) / len(scores),
                "reward": sum(r for _, r in scores) / len(scores)}


@dataclass
class Row:
    """Every complete run of one configuration (seeds pooled)."""

    key: str
    runs: list[Run]
    name: str = ""
    benchmarks: dict[str, dict] = field(default_factory=dict)
    overall: dict = field(default_factory=dict)
    #: "bench/problem id" -> (accuracy, reward), averaged over seeds
    scores: dict[str, tuple[float, float]] = field(default_factory=dict)
    baseline: dict | None = None
    twin: dict | None = None
    #: on the accuracy-vs-memory front
    pareto: bool = False
    #: on the accuracy-vs-latency front (of the rows one engine measured on one device)
    latency_pareto: bool = False
    #: on the KL-vs-memory front (less memory and less divergence from the reference both better)
    kl_pareto: bool = False
    #: the seeds' divergence from the reference, pooled (:func:`harness.leaderboard.divergence.row_divergence`)
    divergence: dict | None = None
    #: KV-cache tokens counted in :attr:`memory_bytes`
    context_tokens: int = DEFAULT_CONTEXT_TOKENS

    @property
    def config(self) -> dict:
        return self.runs[0].config

    @property
    def tags(self) -> dict:
        return self.runs[0].tags

    @property
    def model(self) -> str:
        return str(self.config.get("model", ""))

    @property
    def trainer(self) -> str:
        return str(self.config.get("trainer", "none"))

    @property
    def strategy(self) -> str:
        return str(self.config.get("strategy", "none"))

    @property
    def is_reference(self) -> bool:
        """A full-precision reference row (its strategy's ``is_reference``): what others pair against."""
        return self.runs[0].reference

    @property
    def bits(self) -> str:
        return bits_label(self.config)

    @property
    def preset(self) -> str:
        return str(self.config.get("preset", "default"))

    @property
    def variant(self) -> str:
        return str(self.tags.get("variant") or "")

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]

    @property
    def n_problems(self) -> int | None:
        """Problems the row's pooled accuracy covers (every benchmark)."""
        n = self.overall.get("problems")
        return None if n is None else int(n)

    @property
    def problem_set(self) -> str:
        """Hash of the problems the row was scored on: rows with different ones never share a front,
        even with the same ``--limit`` (a benchmark file that changed, a run cut short)."""
        if self.scores:
            return stable_hash(sorted(self.scores))
        return stable_hash(sorted((b, e.get("problems")) for b, e in self.benchmarks.items()))

    @property
    def tokens_per_answer(self) -> float | None:
        """Mean generated tokens per answer (sample), over benchmarks and seeds (the store's ``mean_tokens``)."""
        per_run = []
        for run in self.runs:
            parts = [(m["mean_tokens"]["value"], (m.get("samples") or {}).get("value") or 1)
                     for m in run.metrics.values() if (m.get("mean_tokens") or {}).get("value") is not None]
            if parts:
                per_run.append(sum(v * w for v, w in parts) / sum(w for _, w in parts))
        return sum(per_run) / len(per_run) if per_run else None

    @property
    def kl(self) -> float | None:
        """The row's mean KL from its reference (None for a reference row or one without divergence)."""
        return (self.divergence or {}).get("kl_mean", {}).get("value")

    @property
    def run_ids(self) -> list[str]:
        return [r.id for r in self.runs]

    @property
    def options(self) -> str:
        """Trainer and strategy options as ``key=value``, the part of a row its name leaves out."""
        parts = [f"{k}={v}" for k, v in sorted((self.config.get("trainer_opts") or {}).items())]
        parts += [f"{k}={v}" for k, v in sorted((self.config.get("strategy_opts") or {}).items())]
        return " ".join(parts)

    # -- the engine ---------------------------------------------------------------------------
    @property
    def engine(self) -> str:
        """The engine that generated the row's samples (part of the row's identity)."""
        return engine_of(self.config)

    @property
    def latency_engine(self) -> str:
        """The engine that measured the latency and throughput figures (``hf+vllm`` if seeds differ)."""
        return "+".join(dict.fromkeys(r.latency_engine for r in self.runs))

    @property
    def compute_dtype(self) -> str:
        """The dtype the latency figures were computed in (``float32/bfloat16`` if seeds differ)."""
        return "/".join(dict.fromkeys(r.compute_dtype for r in self.runs))

    def _profile_text(self, key: str) -> str | None:
        values = [str(r.profile[key]) for r in self.runs if r.profile.get(key)]
        return "/".join(dict.fromkeys(values)) or None

    @property
    def engine_version(self) -> str | None:
        return self._profile_text("engine_version")

    @property
    def engine_label(self) -> str:
        """``vllm 0.32.0``, ``hf (transformers 4.57.1)``: the engine, its version when the profile recorded
        it, and the engine options (``--engine-opt``), which are part of the row's identity."""
        version, engine = self.engine_version, self.engine
        if not version:
            label = engine
        elif version.split(" ", 1)[0] == engine:
            label = version
        else:
            label = f"{engine} ({version})" if " " in version else f"{engine} {version}"
        opts = self.config.get("engine_opts") or {}
        return label + (f" [{' '.join(f'{k}={v}' for k, v in sorted(dict(opts).items()))}]" if opts else "")

    @property
    def quant_method(self) -> str | None:
        """The quantization method the engine loaded the checkpoint with (as the engine reported it)."""
        return self._profile_text("quant_method")

    @property
    def kernels(self) -> list[str]:
        """Kernel names the engine reported loading, over every seed's run, in order of first mention."""
        names = [str(k) for r in self.runs for k in (r.profile.get("kernels") or [])]
        return list(dict.fromkeys(names))

    @property
    def device(self) -> str:
        return "/".join(dict.fromkeys(str(r.profile.get("device")) for r in self.runs if r.profile.get("device")))

    # -- figures --------------------------------------------------------------------------------
    def profile(self, key: str) -> float | None:
        """Mean over seeds of one profile figure (None when no run has it)."""
        values = [r.profile.get(key) for r in self.runs if isinstance(r.profile.get(key), (int, float))]
        return sum(values) / len(values) if values else None

    @property
    def weight_bytes(self) -> float | None:
        return self.profile("weight_bytes")

    @property
    def kv_bytes_per_token(self) -> float | None:
        """KV-cache bytes per token at the run's KV bit width (None for runs profiled before it was recorded)."""
        return self.profile("kv_bytes_per_token")

    @property
    def memory_bytes(self) -> float | None:
        """Weights plus the KV cache of one ``context_tokens``-token sequence.

        Weight bytes alone hide what KV-cache quantization saves; a long
        reasoning trace holds its whole KV cache beside the weights, so this
        is the figure that shows KV4 against KV16. None when the run has no
        KV figure (and ``context_tokens`` is not 0): a guess would mislead.
        """
        weights = self.weight_bytes
        if weights is None or self.context_tokens == 0:
            return weights
        kv = self.kv_bytes_per_token
        return None if kv is None else weights + self.context_tokens * kv

    @property
    def peak_memory_bytes(self) -> float | None:
        """Peak memory while evaluating: GPU when the run had one, else resident memory."""
        for key in ("eval_peak_gpu_bytes", "eval_peak_rss_bytes", "peak_rss_bytes"):
            value = self.profile(key)
            if value:
                return value
        return None

    @property
    def tokens_per_s(self) -> float | None:
        return self.profile("eval_tokens_per_s")

    @property
    def ttft_ms(self) -> float | None:
        return self.profile("bs1_ttft_ms")

    @property
    def ms_per_token(self) -> float | None:
        """Time per generated token at batch size 1, after the first (the latency plot's x axis).

        From the median decode speed at batch 1 (``1000 / bs1_decode_tokens_per_s``); a
        profile that only has the streamed inter-token latency (``bs1_itl_p50_ms``) gives
        that, the same quantity measured per token. None when the run has neither.
        """
        speed = self.profile("bs1_decode_tokens_per_s")
        if speed:
            return 1000.0 / speed
        return self.profile("bs1_itl_p50_ms")

    @property
    def latency(self) -> dict:
        """Every latency and throughput figure of the row, with the engine that measured them."""
        keys = ("bs1_ttft_ms", "bs1_decode_tokens_per_s", "bs1_itl_p50_ms", "bs1_latency_p50_ms",
                "bs1_latency_p95_ms", "batch_size", "batch_ttft_ms", "batch_decode_tokens_per_s",
                "batch_latency_p50_ms", "batch_latency_p95_ms", "eval_tokens_per_s")
        return {"engine": self.latency_engine, "device": self.device or None, "compute_dtype": self.compute_dtype,
                "ms_per_token": self.ms_per_token,
                **{k: self.profile(k) for k in keys}}

    def sort_key(self) -> tuple:
        order = self.tags.get("order")
        return (self.model, 0 if self.tags.get("sweep") else 1, str(self.tags.get("sweep") or ""),
                VARIANT_RANK.get(self.variant, 2), order if isinstance(order, int) else 10**6, self.name,
                self.engine)

    def to_json(self, n_samples: int = 0) -> dict:
        div = self.divergence or {}
        return {
            "key": self.key, "name": self.name, "model": self.model, "trainer": self.trainer,
            "strategy": self.strategy, "bits": self.bits, "preset": self.preset, "variant": self.variant,
            "engine": self.engine, "engine_version": self.engine_version, "quant_method": self.quant_method,
            "kernels": self.kernels,
            "sweep": self.tags.get("sweep"), "options": self.options, "seeds": self.seeds, "run_ids": self.run_ids,
            "benchmarks": self.benchmarks, "all": self.overall,
            "per_seed": [
                {"seed": r.seed, "run_id": r.id, **r.overall()} for r in self.runs
            ],
            "weight_bytes": self.weight_bytes, "fp_bytes": self.profile("fp_bytes"),
            "kv_bytes_per_token": self.kv_bytes_per_token, "context_tokens": self.context_tokens,
            "memory_bytes": self.memory_bytes,
            "peak_memory_bytes": self.peak_memory_bytes, "tokens_per_s": self.tokens_per_s,
            "ttft_ms": self.ttft_ms, "ms_per_token": self.ms_per_token, "latency": self.latency,
            "pareto": self.pareto, "latency_pareto": self.latency_pareto, "kl_pareto": self.kl_pareto,
            "problems": self.n_problems, "tokens_per_answer": self.tokens_per_answer, "reference": self.is_reference,
            **{k: div.get(k) for k in DIVERGENCE_FIELDS},
            "divergence": {k: v for k, v in div.items() if k not in DIVERGENCE_FIELDS} or None,
            "baseline": self.baseline, "twin": self.twin,
            "samples": [s for r in self.runs[:1] for s in r.samples[:n_samples]],
        }


def eval_key(row: Row) -> str:
    """Rows with the same key were evaluated the same way (their accuracies compare): same settings, same engine."""
    hashed = hashed_config(row.config)
    fields = {k: hashed.get(k) for k in EVAL_FIELDS if k not in ("model", "split")}
    for k in ("engine", "split"):  # present only when not the default (hf, test): keys of other rows unchanged
        if k in hashed:
            fields[k] = hashed[k]
    return stable_hash(fields)
