"""The columns of the main table, defined once for the Markdown and the HTML renderings.

Each column says its header, its text, the value it sorts by, and whether the
HTML page shows it in its compact view (``main``): the page must fit a
1400-pixel window, so the columns a reader compares rows by stay, and the
rest (how a row was made, secondary figures) appear on request. Markdown
shows every column.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from harness.leaderboard.model import Row
from harness.leaderboard.text import (
    diff_points,
    flips,
    kernels,
    kl,
    kl_value,
    measured_by,
    memory_header,
    number,
    pct,
    reward,
    seeds,
    share,
    signed,
    size,
)


@dataclass(frozen=True)
class Column:
    header: str
    text: Callable[[Row], str]
    #: the value a click on the header sorts by; None: the text, alphabetically
    sort: Callable[[Row], object] | None = None
    #: shown in the HTML page's compact view
    main: bool = True
    #: a CSS class for a cell (a significant difference is bold)
    css: Callable[[Row], str] | None = None

    @property
    def numeric(self) -> bool:
        return self.sort is not None


def row_name(row: Row) -> str:
    return row.name + (" (faithful)" if row.variant == "faithful" else "")


def against(comparison: dict, row: Row) -> str:
    """The row a comparison is against, with its engine when that is not the row's own."""
    engine = comparison.get("against_engine")
    return comparison["against"] + (f" ({engine})" if engine and engine != row.engine else "")


def _acc(row: Row, bench: str | None = None) -> dict:
    source = row.overall if bench is None else row.benchmarks.get(bench, {})
    return source.get("accuracy") or {}


def _div(row: Row, key: str) -> object:
    return (row.divergence or {}).get(key)


def _kl_text(row: Row) -> str:
    """The row's KL; when only some seeds were measured, how many (the figure is theirs alone)."""
    stat = _div(row, "kl_mean")
    text = kl(stat, row.is_reference)
    measured = len((stat or {}).get("seeds") or [])
    return text + (f" ({measured} of {len(row.seeds)} seeds)" if stat and measured < len(row.seeds) else "")


def _delta(row: Row) -> dict | None:
    return row.baseline["all"]["accuracy"] if row.baseline else None


def _latency(figure: Callable[[Row], float | None], fmt: Callable[[float | None], str]) -> Callable[[Row], str]:
    return lambda r: measured_by(fmt(figure(r)), r.latency_engine)


def columns(rows: list[Row], context_tokens: int) -> list[Column]:
    """Every column of the main table, in order (one accuracy column per benchmark)."""
    benches = sorted({b for r in rows for b in r.benchmarks})
    names = [row_name(r) for r in rows]
    alike = {n for n in names if names.count(n) > 1}
    return [
        # two rows of one name (recipes that differ in an option) name the option, which is outside the compact view
        Column("row", lambda r: row_name(r) + (f" ({r.options})" if row_name(r) in alike and r.options else "")),
        Column("model", lambda r: r.model),
        Column("trainer", lambda r: r.trainer, main=False),
        Column("strategy", lambda r: r.strategy, main=False),
        Column("bits", lambda r: r.bits),
        Column("engine", lambda r: r.engine_label),
        Column("dtype", lambda r: r.compute_dtype, main=False),
        Column("options", lambda r: r.options or "-", main=False),
        Column("preset", lambda r: r.preset, main=False),
        Column("seeds", lambda r: seeds(r.seeds), lambda r: len(r.seeds)),
        Column("problems", lambda r: number(r.n_problems, 0), lambda r: r.n_problems),
        Column("accuracy % (all)", lambda r: pct(_acc(r)), lambda r: _acc(r).get("value")),
        Column("reward (all)", lambda r: reward(r.overall.get("reward")),
               lambda r: (r.overall.get("reward") or {}).get("value"), main=False),
        # one benchmark: its column repeats "all", so the compact view leaves it out
        *[Column(f"{b} acc %", lambda r, b=b: pct(_acc(r, b)), lambda r, b=b: _acc(r, b).get("value"),
                 main=len(benches) > 1) for b in benches],
        Column("KL from reference (all)", _kl_text,
               lambda r: 0.0 if r.is_reference else r.kl),
        Column("top-1 agree %", lambda r: share(_div(r, "top1_agree"), r.is_reference),
               lambda r: 1.0 if r.is_reference else _div(r, "top1_agree")),
        Column("flips lost / gained", lambda r: flips(_div(r, "flips")),
               lambda r: (_div(r, "flips") or {}).get("lost")),
        Column("KL p99", lambda r: kl_value(_div(r, "kl_p99")), lambda r: _div(r, "kl_p99"), main=False),
        Column("NLL Δ", lambda r: signed(_div(r, "nll_delta")), lambda r: _div(r, "nll_delta"), main=False),
        Column("tokens / answer", lambda r: number(r.tokens_per_answer, 0), lambda r: r.tokens_per_answer,
               main=False),
        Column("weights", lambda r: size(r.weight_bytes), lambda r: r.weight_bytes, main=False),
        Column("KV B/token", lambda r: number(r.kv_bytes_per_token, 0), lambda r: r.kv_bytes_per_token, main=False),
        Column(memory_header(context_tokens), lambda r: size(r.memory_bytes), lambda r: r.memory_bytes),
        Column("peak memory", _latency(lambda r: r.peak_memory_bytes, size), lambda r: r.peak_memory_bytes,
               main=False),
        Column("tok/s", _latency(lambda r: r.tokens_per_s, lambda x: number(x, 0)), lambda r: r.tokens_per_s,
               main=False),
        Column("TTFT ms", _latency(lambda r: r.ttft_ms, lambda x: number(x, 1)), lambda r: r.ttft_ms, main=False),
        Column("ms/token", _latency(lambda r: r.ms_per_token, lambda x: number(x, 2)), lambda r: r.ms_per_token),
        Column("kernels", lambda r: kernels(r.quant_method, r.kernels), main=False),
        Column("Δ acc vs baseline (pp)", lambda r: diff_points(_delta(r)),
               lambda r: (_delta(r) or {}).get("diff"), css=lambda r: "sig" if (_delta(r) or {}).get("significant")
               else ""),
        Column("baseline", lambda r: against(r.baseline, r) if r.baseline else "-", main=False),
        Column("Pareto", lambda r: "yes" if r.pareto else "", lambda r: int(r.pareto)),
        Column("KL Pareto", lambda r: "yes" if r.kl_pareto else "", lambda r: int(r.kl_pareto), main=False),
        Column("latency Pareto", lambda r: "yes" if r.latency_pareto else "", lambda r: int(r.latency_pareto),
               main=False),
    ]
