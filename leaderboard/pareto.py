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
    """The x quantity of a front and of its plot (lower is better), and the score the front maximises."""

    stem: str
    #: x values are divided by this on the plot (bytes -> MB)
    scale: float
    plot_title: str
    empty_text: str

    def value(self, row: Row) -> float | None: ...
    def score(self, row: Row) -> float | None: ...
    def group(self, row: Row) -> str: ...
    def facets(self, row: Row) -> dict[str, str]: ...
    def label(self, log: bool) -> str: ...

    @property
    def title(self) -> str: ...
    @property
    def note(self) -> str: ...


def accuracy(row: Row) -> float | None:
    """The pooled accuracy of a row, the score of the accuracy fronts."""
    return (row.overall.get("accuracy") or {}).get("value")


def problems_facet(row: Row) -> str:
    return f"{row.n_problems} problems" if row.n_problems is not None else "problems unknown"


def problem_sets_note(rows: list[Row]) -> str:
    """Says that fronts are per problem set when the placed rows were scored on several; else ""."""
    sets: dict[str, str] = {}
    for row in rows:
        sets.setdefault(row.problem_set, str(row.n_problems if row.n_problems is not None else "?"))
    if len(sets) < 2:
        return ""
    counts = sorted(set(sets.values()), key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0))
    return (f"Rows were scored on {len(sets)} different problem sets ({' and '.join(counts)} problems): "
            "a front never mixes them (each has its own, named in the legend).")


def front_labels(fronts: list[list[Row]], axis: Axis) -> list[str]:
    """One label per front, naming only what tells the fronts apart ("" when there is one front)."""
    facets = [axis.facets(front[0]) for front in fronts]
    keys = [k for k in (facets[0] if facets else {}) if len({f.get(k) for f in facets}) > 1]
    labels = [", ".join(f[k] for k in keys) for f in facets]
    for label in set(labels):  # fronts alike in every facet (another prompt or sampling): numbered
        same = [i for i, other in enumerate(labels) if other == label]
        if len(same) > 1:
            for n, i in enumerate(same, 1):
                labels[i] = f"{label}, group {n}" if label else f"group {n}"
    return labels


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
    #: why fronts are split by problem set ("" when every row shares one)
    problem_sets: str = ""
    stem: str = "accuracy_vs_memory"
    scale: float = 1e6
    plot_title: str = "accuracy against memory (circled: Pareto front)"
    empty_text: str = "no complete run with weight bytes yet"

    def value(self, row: Row) -> float | None:
        return row.memory_bytes if self.with_kv else row.weight_bytes

    def score(self, row: Row) -> float | None:
        return accuracy(row)

    def group(self, row: Row) -> str:
        """Rows evaluated the same way (settings and engine) on the same problems."""
        return f"{eval_key(row)}|{row.problem_set}"

    def facets(self, row: Row) -> dict[str, str]:
        return {"engine": row.engine, "problems": problems_facet(row), "preset": f"preset {row.preset}"}

    @property
    def title(self) -> str:
        """What is counted, in words: ``weights + KV cache of one 4096-token sequence``."""
        return f"weights + KV cache of one {self.context_tokens}-token sequence" if self.with_kv else "weights"

    def label(self, log: bool) -> str:
        """The plot's x-axis label, naming the scale the plot chose."""
        return f"{self.title} (MB{', log scale' if log else ''})"

    @property
    def note(self) -> str:
        """Why the KV cache is left out and why fronts are split, or "" when neither applies."""
        return " ".join(p for p in (self.kv_note, self.problem_sets) if p)

    @property
    def kv_note(self) -> str:
        """Why the KV cache is left out of the memory figure ("" when it is counted)."""
        if self.with_kv:
            return ""
        if self.context_tokens == 0:
            return "KV cache left out (--context-tokens 0): memory is weights only."
        n = len(self.missing_kv)
        return (f"KV cache left out: {n} row{'s' if n != 1 else ''} ({_names(self.missing_kv)}) "
                f"{'have' if n != 1 else 'has'} no KV bytes per token (profiled before profiles recorded it), "
                "so memory is weights only for every row.")


def placed(rows: list[Row], axis: Axis) -> list[Row]:
    """The rows an axis can place: an x value and a score."""
    return [r for r in rows if axis.value(r) and axis.score(r) is not None]


def memory_axis(rows: list[Row], context_tokens: int = DEFAULT_CONTEXT_TOKENS) -> MemoryAxis:
    """Count the KV cache on the axis when ``context_tokens`` > 0 and every placeable row has a KV figure."""
    weighed = [r for r in rows if r.weight_bytes and accuracy(r) is not None]
    missing = tuple(dict.fromkeys(r.name for r in weighed if r.kv_bytes_per_token is None))
    return MemoryAxis(context_tokens, with_kv=context_tokens > 0 and not missing, missing_kv=missing,
                      problem_sets=problem_sets_note(weighed))


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
    quantity a deployment choice is made on. Fronts are drawn per engine,
    device and compute dtype: latencies two engines (or two machines, or
    fp32 and bf16 arithmetic) measured are never compared on one front.
    """

    missing: tuple[str, ...] = ()
    #: several engines, devices or dtypes on one board: fronts and legend name them
    mixed: bool = False
    problem_sets: str = ""
    stem: str = "accuracy_vs_latency"
    scale: float = 1.0
    plot_title: str = "accuracy against latency (circled: Pareto front of each engine)"
    empty_text: str = "no complete run with a batch-1 decode speed yet"

    def value(self, row: Row) -> float | None:
        return row.ms_per_token

    def score(self, row: Row) -> float | None:
        return accuracy(row)

    def group(self, row: Row) -> str:
        return f"{eval_key(row)}|{row.problem_set}|{row.latency_engine}|{row.device}|{row.compute_dtype}"

    def group_label(self, row: Row) -> str:
        """The engine that timed the row, the device it ran on and the dtype it computed in."""
        return ", ".join(part for part in (row.latency_engine, row.device, row.compute_dtype) if part)

    def facets(self, row: Row) -> dict[str, str]:
        return {"timed by": self.group_label(row), "problems": problems_facet(row), "preset": f"preset {row.preset}"}

    @property
    def title(self) -> str:
        return "time per generated token at batch size 1"

    def label(self, log: bool) -> str:
        return f"ms per generated token at batch size 1 (median decode{', log scale' if log else ''})"

    @property
    def note(self) -> str:
        """Which rows have no latency figure, and how fronts are split; "" when neither applies."""
        parts = []
        if self.mixed:
            parts.append("Latency fronts are drawn per engine, device and compute dtype (named in the legend): "
                         "latencies of different engines, machines or dtypes are not compared.")
        if self.missing:
            n = len(self.missing)
            parts.append(f"{n} row{'s' if n != 1 else ''} ({_names(self.missing)}) "
                         f"{'have' if n != 1 else 'has'} no batch-1 decode speed in the profile "
                         "(profiled before it was recorded, or not profiled), so the latency plot leaves "
                         f"{'them' if n != 1 else 'it'} out.")
        if self.problem_sets:
            parts.append(self.problem_sets)
        return " ".join(parts)


def latency_axis(rows: list[Row]) -> LatencyAxis:
    """The latency axis of these rows: which have no latency figure, and whether engines or devices mix."""
    scored = [r for r in rows if accuracy(r) is not None]
    missing = tuple(dict.fromkeys(r.name + (" (faithful)" if r.variant == "faithful" else "")
                                  for r in scored if r.ms_per_token is None))
    timed = [r for r in scored if r.ms_per_token is not None]
    mixed = len({(r.latency_engine, r.device, r.compute_dtype) for r in timed}) > 1
    return LatencyAxis(missing=missing, mixed=mixed, problem_sets=problem_sets_note(timed))


@dataclass(frozen=True)
class KLMemoryAxis:
    """Memory (as the accuracy front counts it) against the KL from the reference, lower both better.

    Where accuracy ties (a few hundred problems cannot tell two 4-bit recipes
    apart), the divergence still can: this front keeps the rows no other row
    beats on both memory and KL. KL is measured from each model's own
    reference, so a front holds one model's rows, and one method (exact or a
    top-k approximation), besides one evaluation and problem set. Reference
    rows (KL 0 by definition) are left out.
    """

    memory: MemoryAxis = MemoryAxis()
    problem_sets: str = ""
    stem: str = "kl_vs_memory"
    scale: float = 1e6
    plot_title: str = "KL from the reference against memory (circled: Pareto front)"
    empty_text: str = "no quantized row with a divergence from its reference yet"

    def value(self, row: Row) -> float | None:
        return None if row.is_reference else self.memory.value(row)

    def score(self, row: Row) -> float | None:
        """Minus the KL: the front keeps the highest score, the lowest divergence."""
        return None if row.kl is None else -row.kl

    def group(self, row: Row) -> str:
        return f"{self.memory.group(row)}|{row.model}|{(row.divergence or {}).get('method')}"

    def facets(self, row: Row) -> dict[str, str]:
        return {"model": row.model, **self.memory.facets(row), "KL": f"KL {(row.divergence or {}).get('method')}"}

    @property
    def title(self) -> str:
        return f"KL from the reference against {self.memory.title}"

    def label(self, log: bool) -> str:
        return self.memory.label(log)

    @property
    def note(self) -> str:
        """Why the KV cache is left out and how fronts are split ("" when neither applies)."""
        return " ".join(p for p in (self.memory.kv_note, self.problem_sets) if p)


def kl_memory_axis(rows: list[Row], memory: MemoryAxis) -> KLMemoryAxis:
    """The KL-vs-memory axis, on the memory figure ``memory`` counts."""
    axis = KLMemoryAxis(memory)
    return KLMemoryAxis(memory, problem_sets=problem_sets_note(placed(rows, axis)))


def front_members(rows: list[Row], axis: Axis) -> list[list[Row]]:
    """The rows of each front (one per group), as :func:`pareto_front` marks them."""
    by_group: dict[str, list[Row]] = defaultdict(list)
    for row in placed(rows, axis):
        by_group[axis.group(row)].append(row)
    fronts = []
    for members in by_group.values():
        points = [(axis.value(r), axis.score(r)) for r in members]
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


def mark_kl_pareto(rows: list[Row], axis: KLMemoryAxis) -> None:
    """Mark each row on the KL-vs-memory front of its model, evaluation and KL method."""
    for front in front_members(rows, axis):
        for row in front:
            row.kl_pareto = True
