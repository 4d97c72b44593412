"""The Pareto fronts: accuracy against memory, and accuracy against latency.

An *axis* says what a row's x value is, which rows share one front (rows
evaluated the same way; for latency also measured by the same engine on the
same device) and how the plot labels it. A front compares only rows of one
group, so a faster engine never pushes another engine's rows off a front.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Protocol

from harness.leaderboard.model import DEFAULT_CONTEXT_TOKENS, Row, eval_key


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: less or equal x (cost) and more or equal accuracy.

    ``points`` are (cost, accuracy). A point is dominated when another has
    cost <= and accuracy >= with one of them strict; identical points do
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


class Axis(Protocol):
    """The x quantity of a front and of its plot (lower is better)."""

    stem: str
    #: x values are divided by this on the plot (bytes -> MB)
    scale: float
    plot_title: str
    empty_text: str

    def value(self, row: Row) -> float | None: ...
    def group(self, row: Row) -> str: ...
    def group_label(self, row: Row) -> str: ...

    @property
    def title(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def note(self) -> str: ...


def _names(names: tuple[str, ...]) -> str:
    n = len(names)
    return ", ".join(names[:5]) + (f" and {n - 5} more" if n > 5 else "")


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
    stem: str = "accuracy_vs_memory"
    scale: float = 1e6
    plot_title: str = "accuracy against memory (circled: Pareto front)"
    empty_text: str = "no complete run with weight bytes yet"

    def value(self, row: Row) -> float | None:
        return row.memory_bytes if self.with_kv else row.weight_bytes

    def group(self, row: Row) -> str:
        return eval_key(row)

    def group_label(self, row: Row) -> str:
        return row.engine

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
        return (f"KV cache left out: {n} row{'s' if n != 1 else ''} ({_names(self.missing_kv)}) "
                f"{'have' if n != 1 else 'has'} no KV bytes per token (profiled before profiles recorded it), "
                "so memory is weights only for every row.")


def placed(rows: list[Row], axis: Axis) -> list[Row]:
    """The rows an axis can place: an x value and an accuracy."""
    return [r for r in rows if axis.value(r) and r.overall.get("accuracy")]


def memory_axis(rows: list[Row], context_tokens: int = DEFAULT_CONTEXT_TOKENS) -> MemoryAxis:
    """Count the KV cache on the axis when ``context_tokens`` > 0 and every placeable row has a KV figure."""
    weighed = [r for r in rows if r.weight_bytes and r.overall.get("accuracy")]
    missing = tuple(dict.fromkeys(r.name for r in weighed if r.kv_bytes_per_token is None))
    return MemoryAxis(context_tokens, with_kv=context_tokens > 0 and not missing, missing_kv=missing)


@dataclass(frozen=True)
class LatencyAxis:
    """Time per generated token at batch size 1 (:attr:`Row.ms_per_token`), the latency plot's x axis.

    Why this figure: a reasoning model's answer is thousands of tokens, so
    what a user waits for is about the trace length times the time per
    token; time to first token and the profile's short fixed-length request
    are a small part of it, and the request latency depends on the
    profile's request length. Batch 1, because the batched phase runs at the
    run's batch size, which is not part of a run's identity (two runs of one
    row may have used different ones), and because one user's wait is the
    quantity a deployment choice is made on. Fronts are drawn per engine and
    device: latencies two engines (or two machines) measured are never
    compared on one front.
    """

    missing: tuple[str, ...] = ()
    #: several engines or devices on one board: fronts and legend name them
    mixed: bool = False
    stem: str = "accuracy_vs_latency"
    scale: float = 1.0
    plot_title: str = "accuracy against latency (circled: Pareto front of each engine)"
    empty_text: str = "no complete run with a batch-1 decode speed yet"

    def value(self, row: Row) -> float | None:
        return row.ms_per_token

    def group(self, row: Row) -> str:
        return f"{eval_key(row)}|{row.latency_engine}|{row.device}"

    def group_label(self, row: Row) -> str:
        return f"{row.latency_engine}, {row.device}" if row.device else row.latency_engine

    @property
    def title(self) -> str:
        return "time per generated token at batch size 1"

    @property
    def label(self) -> str:
        return "ms per generated token at batch size 1 (median decode, log scale)"

    @property
    def note(self) -> str:
        """Which rows have no latency figure, and that fronts are per engine; "" when neither applies."""
        parts = []
        if self.mixed:
            parts.append("Latency fronts are drawn per engine and device (named in the legend): "
                         "latencies of different engines or machines are not compared.")
        if self.missing:
            n = len(self.missing)
            parts.append(f"{n} row{'s' if n != 1 else ''} ({_names(self.missing)}) "
                         f"{'have' if n != 1 else 'has'} no batch-1 decode speed in the profile "
                         "(profiled before it was recorded, or not profiled), so the latency plot leaves "
                         f"{'them' if n != 1 else 'it'} out.")
        return " ".join(parts)


def latency_axis(rows: list[Row]) -> LatencyAxis:
    """The latency axis of these rows: which have no latency figure, and whether engines or devices mix."""
    scored = [r for r in rows if r.overall.get("accuracy")]
    missing = tuple(dict.fromkeys(r.name + (" (faithful)" if r.variant == "faithful" else "")
                                  for r in scored if r.ms_per_token is None))
    timed = [r for r in scored if r.ms_per_token is not None]
    mixed = len({(r.latency_engine, r.device) for r in timed}) > 1
    return LatencyAxis(missing=missing, mixed=mixed)


def front_members(rows: list[Row], axis: Axis) -> list[list[Row]]:
    """The rows of each front (one per group), as :func:`pareto_front` marks them."""
    by_group: dict[str, list[Row]] = defaultdict(list)
    for row in placed(rows, axis):
        by_group[axis.group(row)].append(row)
    fronts = []
    for members in by_group.values():
        points = [(axis.value(r), r.overall["accuracy"]["value"]) for r in members]
        fronts.append([members[i] for i in pareto_front(points)])
    return fronts


def mark_pareto(rows: list[Row], axis: MemoryAxis | None = None) -> None:
    """Mark each row on the accuracy-vs-memory front of the rows evaluated the same way."""
    axis = axis or memory_axis(rows, rows[0].context_tokens if rows else DEFAULT_CONTEXT_TOKENS)
    for front in front_members(rows, axis):
        for row in front:
            row.pareto = True


def mark_latency_pareto(rows: list[Row], axis: LatencyAxis | None = None) -> None:
    """Mark each row on the accuracy-vs-latency front of its engine, device and evaluation."""
    for front in front_members(rows, axis or latency_axis(rows)):
        for row in front:
            row.latency_pareto = True
