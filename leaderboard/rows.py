"""Leaderboard rows from the result store: one per configuration, seeds pooled, with comparisons.

The store is opened read-only. A *row* is every complete run of one
configuration that differs only in its seed: its accuracy is the mean over
seeds of each problem's score, with a bootstrap interval over problems (the
unit a benchmark draws), and each seed's own figure beside it.

Comparisons are paired: two rows are compared on the problems both scored,
so the between-problem variance that two separate intervals carry cancels
(:func:`harness.metrics.paired_difference`). A row is compared with

- its *baseline*: by default the full-precision row (strategy ``none``) of
  the same model, trainer, training settings and evaluation settings; or the
  row a ``--baseline`` filter (``trainer=grpo,strategy=none``) or run id names;
- its *faithful twin*, when a sweep with a ``[faithful]`` table ran both forms
  of the row (the sweep records the twin's run id beside each run).

"all" pools every problem of every benchmark of a row, as the seed study
averages its per-problem rewards over its five benchmarks.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import RunConfig, stable_hash
from harness.errors import StoreError, UserError
from harness.store import Store

#: config fields that say how a row was quantized; the default baseline differs only in these
STRATEGY_FIELDS = ("strategy", "bits", "act_bits", "kv_bits", "strategy_opts", "calib")
#: config fields that say how a row was evaluated; rows compared by a filter share them
EVAL_FIELDS = ("model", "prompt", "sampling", "preset", "limit", "benchmarks")
VARIANT_RANK = {"": 0, "corrected": 0, "faithful": 1}
#: KV-cache tokens counted in a row's memory figure (``--context-tokens``): one long reasoning trace,
#: long enough that a 4-bit KV cache saves about as much as 4-bit weights do on a small model
DEFAULT_CONTEXT_TOKENS = 4096


class ReadOnlyStore(Store):
    """The result store opened read-only: the leaderboard can never change a result."""

    def __init__(self, path: Path | str):  # noqa: D107 - no migration, no write
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(
                f"no result store at {self.path}; run `harness run` or `harness sweep` first, or pass --store"
            )
        try:
            self.db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
            self.db.row_factory = sqlite3.Row
            tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a harness result store ({exc})") from None
        if "_migrations" not in tables or "runs" not in tables:
            raise StoreError(f"{self.path} is not a harness result store (tables: {', '.join(sorted(tables))})")

    def problem_scores(self, run_id: str) -> dict[str, dict[str, tuple[float, float]]]:
        """benchmark -> problem id -> (mean correct, mean reward) over the problem's samples."""
        out: dict[str, dict[str, tuple[float, float]]] = defaultdict(dict)
        rows = self.db.execute(
            """SELECT benchmark, problem_id, AVG(correct), AVG(reward) FROM samples
               WHERE run_id = ? GROUP BY benchmark, problem_id""",
            (run_id,),
        )
        for bench, pid, acc, reward in rows:
            out[bench][pid] = (float(acc), float(reward))
        return dict(out)

    def first_samples(self, run_id: str, n: int) -> list[dict]:
        if n <= 0:
            return []
        rows = self.db.execute(
            """SELECT benchmark, problem_id, sample, prompt, completion, predicted, reference, correct, reward
               FROM samples WHERE run_id = ? ORDER BY benchmark, problem_id, sample LIMIT ?""",
            (run_id, n),
        )
        return [dict(r) for r in rows]


# -- runs and rows ------------------------------------------------------------------------------


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

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))


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
    pareto: bool = False
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
    def run_ids(self) -> list[str]:
        return [r.id for r in self.runs]

    @property
    def options(self) -> str:
        """Trainer and strategy options as ``key=value``, the part of a row its name leaves out."""
        parts = [f"{k}={v}" for k, v in sorted((self.config.get("trainer_opts") or {}).items())]
        parts += [f"{k}={v}" for k, v in sorted((self.config.get("strategy_opts") or {}).items())]
        return " ".join(parts)

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

    def sort_key(self) -> tuple:
        order = self.tags.get("order")
        return (self.model, 0 if self.tags.get("sweep") else 1, str(self.tags.get("sweep") or ""),
                VARIANT_RANK.get(self.variant, 2), order if isinstance(order, int) else 10**6, self.name)

    def to_json(self, n_samples: int = 0) -> dict:
        return {
            "key": self.key, "name": self.name, "model": self.model, "trainer": self.trainer,
            "strategy": self.strategy, "bits": self.bits, "preset": self.preset, "variant": self.variant,
            "sweep": self.tags.get("sweep"), "options": self.options, "seeds": self.seeds, "run_ids": self.run_ids,
            "benchmarks": self.benchmarks, "all": self.overall,
            "per_seed": [
                {"seed": r.seed, "run_id": r.id, **_run_overall(r)} for r in self.runs
            ],
            "weight_bytes": self.weight_bytes, "fp_bytes": self.profile("fp_bytes"),
            "kv_bytes_per_token": self.kv_bytes_per_token, "context_tokens": self.context_tokens,
            "memory_bytes": self.memory_bytes,
            "peak_memory_bytes": self.peak_memory_bytes, "tokens_per_s": self.tokens_per_s,
            "ttft_ms": self.ttft_ms, "pareto": self.pareto, "baseline": self.baseline, "twin": self.twin,
            "samples": [s for r in self.runs[:1] for s in r.samples[:n_samples]],
        }


def bits_label(config: dict) -> str:
    """``W4A16`` / ``W4A4KV4``; ``bf16`` for full precision (as in a run's label)."""
    from harness.strategy import QuantSpec

    if config.get("strategy", "none") == "none" or config.get("bits") is None:
        return "bf16"
    return QuantSpec(int(config["bits"]), int(config.get("act_bits", 16)), int(config.get("kv_bits", 16))).label


def sweep_tags(artifacts: dict) -> dict[str, dict]:
    """The sweeps a run is a row of, by name (stores written before ``sweeps`` have only ``sweep``)."""
    tags = dict(artifacts.get("sweeps") or {})
    latest = artifacts.get("sweep") or {}
    if latest.get("sweep") and latest["sweep"] not in tags:
        tags[latest["sweep"]] = latest
    return tags


def load_runs(store: ReadOnlyStore, n_samples: int = 3, sweep: str | None = None) -> list[Run]:
    """Every complete run (of ``sweep`` only, named as that sweep names it, when given), with its
    metrics, profile, per-problem scores and first samples."""
    runs = []
    seen: set[str] = set()
    for r in store.list_runs():
        if r["status"] != "complete":
            continue
        artifacts = r.get("artifacts") or {}
        by_sweep = sweep_tags(artifacts)
        seen.update(by_sweep)
        if sweep is not None and sweep not in by_sweep:
            continue
        runs.append(Run(
            id=r["id"], label=r["label"], created=r["created"], config=r["config"],
            tags=by_sweep[sweep] if sweep is not None else artifacts.get("sweep") or {},
            metrics=store.metrics(r["id"]),
            profile=store.profile(r["id"]) or {}, scores=store.problem_scores(r["id"]),
            samples=store.first_samples(r["id"], n_samples),
        ))
    if sweep is not None and not runs:
        known = ", ".join(sorted(seen)) or "none (no run in this store was made by a sweep)"
        raise UserError(f"no complete run in {store.path} belongs to sweep {sweep!r}; sweeps here: {known}")
    return runs


def config_key(config: dict, drop: tuple[str, ...] = ("seed",)) -> str:
    """Hash of the fields that change a result, less ``drop``."""
    hashed = RunConfig.from_dict(config).hashed_dict()
    return stable_hash({k: v for k, v in hashed.items() if k not in drop})


def build_rows(runs: list[Run]) -> list[Row]:
    """Group runs by configuration less the seed, and score each group."""
    groups: dict[str, list[Run]] = defaultdict(list)
    for run in sorted(runs, key=lambda r: (r.seed, r.created)):
        groups[config_key(run.config)].append(run)
    rows = [Row(key=key, runs=members) for key, members in groups.items()]
    for row in rows:
        row.name = row.tags.get("row") or default_name(row.config)
        _score(row)
    rows.sort(key=Row.sort_key)
    return rows


def default_name(config: dict) -> str:
    trainer = config.get("trainer", "none")
    parts = ["base" if trainer == "none" else trainer]
    if config.get("strategy", "none") != "none":
        parts += [config["strategy"], bits_label(config)]
    return " ".join(parts)


def _stat(values: list[float], seed: int = 0) -> dict:
    from harness.metrics import mean_ci

    value, lo, hi = mean_ci(values, seed=seed)
    return {"value": value, "lo": lo, "hi": hi}


def _score(row: Row) -> None:
    """Per-benchmark and pooled accuracy and reward of a row, from its runs' per-problem scores."""
    per_problem: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for run in row.runs:
        for bench, problems in run.scores.items():
            for pid, score in problems.items():
                per_problem[f"{bench}/{pid}"].append(score)
    row.scores = {
        k: (sum(a for a, _ in v) / len(v), sum(r for _, r in v) / len(v)) for k, v in sorted(per_problem.items())
    }
    benches = sorted({b for run in row.runs for b in run.metrics} | {k.split("/", 1)[0] for k in row.scores})
    for bench in benches:
        keys = [k for k in row.scores if k.split("/", 1)[0] == bench]
        if len(row.runs) == 1 and "accuracy" in row.runs[0].metrics.get(bench, {}):
            # one run: the store's own figures (the same numbers `harness show` prints)
            m = row.runs[0].metrics[bench]
            entry = {"accuracy": m["accuracy"], "reward": m.get("reward"),
                     "problems": int((m.get("problems") or {}).get("value") or len(keys))}
        elif keys:
            entry = {"accuracy": _stat([row.scores[k][0] for k in keys]),
                     "reward": _stat([row.scores[k][1] for k in keys]), "problems": len(keys)}
        else:
            continue
        entry["per_seed"] = [(r.metrics.get(bench, {}).get("accuracy") or {}).get("value") for r in row.runs]
        row.benchmarks[bench] = entry
    if row.scores:
        row.overall = {"accuracy": _stat([a for a, _ in row.scores.values()]),
                       "reward": _stat([r for _, r in row.scores.values()]), "problems": len(row.scores)}
    elif row.benchmarks:  # no stored samples: the mean of the benchmarks, without an interval
        accs = [b["accuracy"]["value"] for b in row.benchmarks.values()]
        rews = [b["reward"]["value"] for b in row.benchmarks.values() if b.get("reward")]
        row.overall = {"accuracy": {"value": sum(accs) / len(accs), "lo": None, "hi": None},
                       "reward": {"value": sum(rews) / len(rews), "lo": None, "hi": None} if rews else None,
                       "problems": sum(b["problems"] for b in row.benchmarks.values())}


def _run_overall(run: Run) -> dict:
    scores = [s for problems in run.scores.values() for s in problems.values()]
    if not scores:
        return {"accuracy": None, "reward": None}
    return {"accuracy": sum(a for a, _ in scores) / len(scores), "reward": sum(r for _, r in scores) / len(scores)}


# -- the Pareto front ---------------------------------------------------------------------------


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: less or equal memory and more or equal accuracy.

    ``points`` are (memory, accuracy). A point is dominated when another has
    memory <= and accuracy >= with one of them strict; identical points do
    not dominate each other, so both stay on the front.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best = float("-inf")
    last: tuple[float, float] | None = None
    for i in order:
        x, y = points[i]
        if y > best or (last is not None and (x, y) == last):
            front.append(i)
            best, last = max(best, y), (x, y)
    return sorted(front)


@dataclass(frozen=True)
class MemoryAxis:
    """The memory quantity of the Pareto front and the plot's x axis.

    Weights plus the KV cache of one ``context_tokens``-token sequence when
    every row that can be placed has a KV figure; otherwise weights alone for
    every row (``missing_kv`` names the rows that forced it), because a front
    that counts the KV cache for some rows and not for others would favour
    the rows profiled before KV bytes were recorded.
    """

    context_tokens: int = DEFAULT_CONTEXT_TOKENS
    with_kv: bool = True
    missing_kv: tuple[str, ...] = ()

    def value(self, row: Row) -> float | None:
        return row.memory_bytes if self.with_kv else row.weight_bytes

    @property
    def title(self) -> str:
        """What is counted, in words: ``weights + KV cache of one 4096-token sequence``."""
        return f"weights + KV cache of one {self.context_tokens}-token sequence" if self.with_kv else "weights"

    @property
    def label(self) -> str:
        """The plot's x-axis label."""
        return f"{self.title} (MB, log scale)"

    @property
    def note(self) -> str:
        """Why the KV cache is left out, or "" when it is counted."""
        if self.with_kv:
            return ""
        if self.context_tokens == 0:
            return "KV cache left out (--context-tokens 0): memory is weights only."
        n = len(self.missing_kv)
        names = ", ".join(self.missing_kv[:5]) + (f" and {n - 5} more" if n > 5 else "")
        return (f"KV cache left out: {n} row{'s' if n != 1 else ''} ({names}) "
                f"{'have' if n != 1 else 'has'} no KV bytes per token (profiled before profiles recorded it), "
                "so memory is weights only for every row.")


def memory_axis(rows: list[Row], context_tokens: int = DEFAULT_CONTEXT_TOKENS) -> MemoryAxis:
    """Count the KV cache on the axis when ``context_tokens`` > 0 and every placeable row has a KV figure."""
    placed = [r for r in rows if r.weight_bytes and r.overall.get("accuracy")]
    missing = tuple(dict.fromkeys(r.name for r in placed if r.kv_bytes_per_token is None))
    return MemoryAxis(context_tokens, with_kv=context_tokens > 0 and not missing, missing_kv=missing)


def mark_pareto(rows: list[Row], axis: MemoryAxis | None = None) -> None:
    """Mark each row on the accuracy-vs-memory front of the rows evaluated the same way."""
    axis = axis or memory_axis(rows, rows[0].context_tokens if rows else DEFAULT_CONTEXT_TOKENS)
    by_eval: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        if axis.value(row) and row.overall.get("accuracy"):
            by_eval[eval_key(row)].append(row)
    for members in by_eval.values():
        points = [(axis.value(r), r.overall["accuracy"]["value"]) for r in members]
        for i in pareto_front(points):
            members[i].pareto = True


def eval_key(row: Row) -> str:
    """Rows with the same key were evaluated the same way (their accuracies compare)."""
    hashed = RunConfig.from_dict(row.config).hashed_dict()
    return stable_hash({k: hashed.get(k) for k in EVAL_FIELDS if k != "model"})


# -- comparisons --------------------------------------------------------------------------------


def compare(row: Row, other: Row, kind: str) -> dict | None:
    """Paired difference ``row - other`` in accuracy and reward, pooled and per benchmark."""
    from harness.metrics import paired_difference

    def diffs(keys_filter) -> dict | None:
        a = {k: v for k, v in row.scores.items() if keys_filter(k)}
        b = {k: v for k, v in other.scores.items() if keys_filter(k)}
        if not set(a) & set(b):
            return None
        out = {}
        for i, metric in enumerate(("accuracy", "reward")):
            d = paired_difference({k: v[i] for k, v in a.items()}, {k: v[i] for k, v in b.items()})
            out[metric] = {"diff": d.diff, "lo": d.lo, "hi": d.hi, "significant": d.significant, "n": d.n}
        return out

    pooled = diffs(lambda k: True)
    if pooled is None:
        return None
    benches = sorted({k.split("/", 1)[0] for k in row.scores})
    per_bench = {b: d for b in benches if (d := diffs(lambda k, b=b: k.split("/", 1)[0] == b)) is not None}
    return {"kind": kind, "against": other.name, "against_key": other.key, "against_variant": other.variant,
            "against_run_ids": other.run_ids, "all": pooled, "benchmarks": per_bench}


def _hashed(row: Row) -> dict:
    return RunConfig.from_dict(row.config).hashed_dict()


def default_baseline(row: Row, rows: list[Row]) -> Row | None:
    """The full-precision row that differs from ``row`` only in how it was quantized."""
    if row.strategy == "none":
        return None
    mine = {k: v for k, v in _hashed(row).items() if k not in (*STRATEGY_FIELDS, "seed")}
    candidates = [
        r for r in rows
        if r.strategy == "none" and {k: v for k, v in _hashed(r).items() if k not in (*STRATEGY_FIELDS, "seed")} == mine
    ]
    candidates.sort(key=lambda r: (bool(r.config.get("strategy_opts")), r.sort_key()))
    return candidates[0] if candidates else None


@dataclass(frozen=True)
class Baseline:
    """``--baseline``: a run id (prefix), a ``key=value,...`` filter, or None for the default."""

    run_id: str | None = None
    filters: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, spec: str | None) -> Baseline:
        if not spec:
            return cls()
        if "=" not in spec:
            return cls(run_id=spec.strip())
        pairs = []
        for part in spec.split(","):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise UserError(f"--baseline expects a run id or key=value[,key=value...], got {spec!r}")
            pairs.append((key.strip(), value.strip()))
        return cls(filters=tuple(pairs))

    @property
    def is_default(self) -> bool:
        return self.run_id is None and not self.filters

    def describe(self) -> str:
        if self.run_id:
            return f"run {self.run_id}"
        if self.filters:
            return ", ".join(f"{k}={v}" for k, v in self.filters)
        return "the full-precision row of the same model, trainer and settings"


def row_value(row: Row, key: str) -> str | None:
    """A row field for a ``--baseline`` filter: a column (model, trainer, bits, row...) or a config key."""
    columns = {"row": row.name, "name": row.name, "model": row.model, "trainer": row.trainer,
               "strategy": row.strategy, "preset": row.preset, "variant": row.variant,
               "sweep": str(row.tags.get("sweep") or "")}
    if key in columns:
        return columns[key]
    if key == "bits":
        return row.bits
    head, _, tail = key.partition(".")
    value: Any = row.config.get(head)
    if tail:
        value = (value or {}).get(tail) if isinstance(value, dict) else None
    return None if value is None else str(value)


def _matches(row: Row, key: str, value: str) -> bool:
    got = row_value(row, key)
    if key == "bits":
        return value in (got, str(row.config.get("bits")))
    return got == value


def find_baselines(rows: list[Row], spec: Baseline) -> dict[str, Row]:
    """Row key -> its baseline row, for every row that has one (never itself)."""
    known = {"row", "name", "model", "trainer", "strategy", "preset", "variant", "sweep", "bits"}
    if spec.filters:
        for key, _ in spec.filters:
            head = key.split(".", 1)[0]
            if key not in known and not any(head in r.config for r in rows):
                raise UserError(
                    f"--baseline: unknown field {key!r}; use one of {', '.join(sorted(known))} or a config key "
                    "such as strategy_opts.variant"
                )
    out: dict[str, Row] = {}
    if spec.run_id:
        target = [r for r in rows if any(rid.startswith(spec.run_id) for rid in r.run_ids)]
        if not target:
            raise UserError(f"--baseline: no complete run {spec.run_id!r} in the store; `harness runs` lists them")
        if len(target) > 1:
            raise UserError(f"--baseline: run id prefix {spec.run_id!r} matches {len(target)} rows; give more of it")
        base = target[0]
        for row in rows:
            if row is not base and row.model == base.model:
                out[row.key] = base
        return out
    for row in rows:
        if spec.is_default:
            base = default_baseline(row, rows)
        else:
            named = {k.split(".", 1)[0] for k, _ in spec.filters}
            context = [k for k in EVAL_FIELDS if k not in named]
            mine = _hashed(row)
            candidates = [
                r for r in rows
                if r is not row and all(_matches(r, k, v) for k, v in spec.filters)
                and all(_hashed(r).get(k) == mine.get(k) for k in context)
            ]
            base = min(candidates, key=Row.sort_key) if candidates else None
        if base is not None and base is not row:
            out[row.key] = base
    return out


def attach_comparisons(rows: list[Row], spec: Baseline) -> None:
    """Fill ``row.baseline`` and, for corrected rows with a stored faithful twin, ``row.twin``."""
    for key, base in find_baselines(rows, spec).items():
        row = next(r for r in rows if r.key == key)
        row.baseline = compare(row, base, "baseline")
    by_run = {rid: r for r in rows for rid in r.run_ids}
    for row in rows:
        if row.variant != "corrected":
            continue
        twins = {by_run[t].key: by_run[t] for run in row.runs if (t := run.tags.get("twin")) in by_run}
        if twins:
            twin = next(iter(twins.values()))
            row.twin = compare(row, twin, "faithful twin")


def leaderboard_rows(store: ReadOnlyStore, baseline: Baseline = Baseline(), n_samples: int = 3,
                     context_tokens: int = DEFAULT_CONTEXT_TOKENS, sweep: str | None = None) -> list[Row]:
    """Everything the leaderboard shows, from one read of the store."""
    if context_tokens < 0:
        raise UserError(f"--context-tokens must be >= 0, got {context_tokens}")
    rows = build_rows(load_runs(store, n_samples, sweep))
    for row in rows:
        row.context_tokens = context_tokens
    mark_pareto(rows, memory_axis(rows, context_tokens))
    attach_comparisons(rows, baseline)
    return rows
