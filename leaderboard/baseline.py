"""What each row is compared with: its baseline (``--baseline``) and its faithful twin.

A row is compared with

- its *baseline*: by default the full-precision row (strategy ``none``) of
  the same model, trainer, training settings, evaluation settings and engine;
  or the row a ``--baseline`` filter (``trainer=grpo,strategy=none``) or run
  id names (a filter keeps to the row's own engine unless it names one);
- its *faithful twin*, when a sweep with a ``[faithful]`` table ran both forms
  of the row (the sweep records the twin's run id beside each run).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.base.errors import UserError
from harness.core.config import STRATEGY_FIELDS
from harness.leaderboard.model import EVAL_FIELDS, Row, hashed_config
from harness.leaderboard.stats import compare

#: row columns a ``--baseline`` filter can name besides config keys
COLUMNS = ("row", "name", "model", "trainer", "strategy", "preset", "variant", "sweep", "bits", "engine")


def _hashed(row: Row) -> dict:
    return hashed_config(row.config)


def default_baseline(row: Row, rows: list[Row]) -> Row | None:
    """The full-precision row that differs from ``row`` only in how it was quantized."""
    if row.is_reference:
        return None
    mine = {k: v for k, v in _hashed(row).items() if k not in (*STRATEGY_FIELDS, "seed")}
    candidates = [
        r for r in rows
        if r.is_reference and {k: v for k, v in _hashed(r).items() if k not in (*STRATEGY_FIELDS, "seed")} == mine
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
        return "the full-precision row of the same model, trainer, settings and engine"


def row_value(row: Row, key: str) -> str | None:
    """A row field for a ``--baseline`` filter: a column (model, trainer, bits, row...) or a config key."""
    columns = {"row": row.name, "name": row.name, "model": row.model, "trainer": row.trainer,
               "strategy": row.strategy, "preset": row.preset, "variant": row.variant,
               "sweep": str(row.tags.get("sweep") or ""), "engine": row.engine}
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
    if spec.filters:
        for key, _ in spec.filters:
            head = key.split(".", 1)[0]
            if key not in COLUMNS and not any(head in r.config for r in rows):
                raise UserError(
                    f"--baseline: unknown field {key!r}; use one of {', '.join(sorted(COLUMNS))} or a config key "
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
                and ("engine" in named or r.engine == row.engine)
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
