"""The plots: ``accuracy_vs_memory`` (the seed study's Figure 2 view) and ``accuracy_vs_latency``,
each as PNG and SVG with its Pareto fronts, and the drawing they share with :mod:`.kl_plot`.

One drawing for both: an axis (:mod:`.pareto`) gives the x value, the
groups that each have a front, and the labels, so the plot shows exactly
the fronts that :func:`~.pareto.mark_pareto` and
:func:`~.pareto.mark_latency_pareto` marked. The figure is built apart from
its files (:func:`accuracy_figure`), so a test can read its axes and artists.

Two promises a reader relies on: an axis is log scale only when its values
span at least a decade, and its label says which scale it is; and the legend
names a front only when its line is drawn, which takes two distinct points.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.leaderboard.model import Row
from harness.leaderboard.pareto import (
    Axis,
    LatencyAxis,
    MemoryAxis,
    accuracy,
    front_labels,
    front_members,
    latency_axis,
    memory_axis,
    placed,
)

MARKERS = "osD^v<>pPX*h"
LINESTYLES = ("-", "--", ":", "-.")
#: the label of the circles around a front's rows (underscored: never in the legend)
CIRCLE = "_front"
#: a log axis only when the largest value is at least this many times the smallest
DECADE = 10.0


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only backend (imported here: ``harness --help`` stays fast)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def log_scale(values: list[float]) -> bool:
    """Whether values need a log axis: positive and spanning a decade or more.

    A log axis over a narrow span (10.244 to 10.256 MB) looks linear and
    only mislabels it; a linear one shows the same points honestly.
    """
    positive = [v for v in values if v is not None and v > 0]
    return len(positive) >= 2 and max(positive) / min(positive) >= DECADE


def _minor_label(value: float, _: object) -> str:
    """Label the 2s and 5s between decades, plainly; the other minor ticks stay unlabelled."""
    if value <= 0:
        return ""
    mantissa = value / 10 ** math.floor(math.log10(value))
    return f"{value:g}" if abs(mantissa - 2) < 1e-6 or abs(mantissa - 5) < 1e-6 else ""


def set_scale(ax: Any, which: str, values: list[float]) -> bool:
    """Set the x or y axis to log or linear by :func:`log_scale`, with plain numbers; returns whether log."""
    from matplotlib.ticker import FuncFormatter

    log = log_scale(values)
    (ax.set_xscale if which == "x" else ax.set_yscale)("log" if log else "linear")
    target = ax.xaxis if which == "x" else ax.yaxis
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    if log:
        target.set_minor_formatter(FuncFormatter(_minor_label))
    return log


def with_note(label: str, note: str) -> str:
    """An axis label with a note (why rows are left out, how fronts split) as its next lines."""
    return label + ("\n" + textwrap.fill(note, 110) if note else "")


def series_name(row: Row, engines: bool) -> str:
    """The legend series of a row: its trainer, with the engine when several are on the plot."""
    name = "base" if row.trainer == "none" else row.trainer
    return f"{name} · {row.engine}" if engines else name


def row_text(row: Row, engines: bool) -> str:
    """A point's annotation: the row's name, its variant and (several engines) its engine."""
    return row.name + (" (faithful)" if row.variant == "faithful" else "") + (f" · {row.engine}" if engines else "")


def point_texts(rows: list[Row], engines: bool) -> dict[str, str]:
    """Row key -> its annotation: :func:`row_text`, with the row's options where two rows would read
    alike, and its problem count where the rows were scored on different problem sets."""
    texts = {r.key: row_text(r, engines) for r in rows}
    alike = [t for t in texts.values() if list(texts.values()).count(t) > 1]
    several = len({r.problem_set for r in rows}) > 1
    for r in rows:
        if texts[r.key] in alike and r.options:
            texts[r.key] += f" ({r.options})"
        if several:
            texts[r.key] += f" · {r.n_problems} problems"
    return texts


def errors(stats: list[dict], values: list[float], scale: float) -> list[list[float]]:
    """``[below, above]`` error-bar lengths from ``{"value", "lo", "hi"}`` (no interval: none)."""
    lo = [max(0.0, v - (s.get("lo") if s.get("lo") is not None else s["value"]) * scale)
          for s, v in zip(stats, values)]
    hi = [max(0.0, (s.get("hi") if s.get("hi") is not None else s["value"]) * scale - v)
          for s, v in zip(stats, values)]
    return [lo, hi]


def draw_fronts(ax: Any, fronts: list[list[Row]], labels: list[str], x: Callable[[Row], float],
                y: Callable[[Row], float], text: Callable[[Row], str]) -> None:
    """Circle and annotate every front's rows; draw its step line, named in the legend, when it joins at
    least two distinct points (a one-point front has no line, so the legend must not name one)."""
    for i, (front, label) in enumerate(zip(fronts, labels)):
        front = sorted(front, key=x)
        xs, ys = [x(r) for r in front], [y(r) for r in front]
        ax.scatter(xs, ys, s=160, facecolors="none", edgecolors="black", linewidths=1.2, label=CIRCLE)
        if len(set(zip(xs, ys))) >= 2:
            ax.step(xs, ys, where="post", color="black", linewidth=1, alpha=0.6,
                    label="Pareto front" + (f" ({label})" if label else ""), linestyle=LINESTYLES[i % len(LINESTYLES)])
        for name, (px, py) in merge_labels([(text(r), (px, py)) for r, px, py in zip(front, xs, ys)]):
            # text from the store is plain text, never mathtext: a "$" in a name must not be parsed
            ax.annotate(name, (px, py), textcoords="offset points", xytext=(6, 6), fontsize=8, parse_math=False)


def merge_labels(labelled: list[tuple[str, tuple[float, float]]]) -> list[tuple[str, tuple[float, float]]]:
    """One label per point: rows at the very same place (two GGUF types llama.cpp wrote as the same file)
    are named together, ``A = B``, instead of printing one name over the other. First-seen order is kept."""
    names: dict[tuple[float, float], list[str]] = {}
    for name, point in labelled:
        if name not in names.setdefault(point, []):
            names[point].append(name)
    return [(_joined(group), point) for point, group in names.items()]


def _joined(names: list[str]) -> str:
    """``A · engine = B · engine`` written ``A = B · engine``: the shared tail (after " · ") once."""
    heads, tails = zip(*(name.partition(" · ")[::2] for name in names))
    if len(set(tails)) == 1 and tails[0]:
        return f"{' = '.join(heads)} · {tails[0]}"
    return " = ".join(names)


def finish(fig: Any, ax: Any, has_points: bool, empty_text: str) -> None:
    """The legend (plain text) when anything is drawn, else a line saying why the plot is empty."""
    ax.grid(True, which="both", alpha=0.3)
    if has_points:
        for text in ax.legend(fontsize=8, loc="best").get_texts():
            text.set_parse_math(False)
    else:
        ax.text(0.5, 0.5, empty_text, ha="center", transform=ax.transAxes)
    fig.tight_layout()


def save(fig: Any, out_dir: Path, stem: str) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.svg`` and close the figure."""
    import matplotlib

    plt = pyplot()
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.svg"]
    # svg text stays text (escaped by matplotlib's SVG writer), not paths
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        for p in paths:
            fig.savefig(p, metadata={"Date": None} if p.suffix == ".svg" else None)
    plt.close(fig)
    return paths


def scatter_series(rows: list[Row], axis: Any, y_of: Any, interval_of: Any, scale: float) -> tuple:
    """A fresh figure with every placeable row of ``axis`` drawn at (x, ``y_of(row)``) with its interval
    (``interval_of(row)`` times ``scale``), one marker per series; (figure, axes, rows drawn, several engines)."""
    plt = pyplot()
    points = placed(rows, axis)
    engines = len({r.engine for r in points}) > 1
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
    for i, name in enumerate(sorted({series_name(r, engines) for r in points})):
        mine = [r for r in points if series_name(r, engines) == name]
        xs, ys = [axis.value(r) / axis.scale for r in mine], [y_of(r) for r in mine]
        ax.errorbar(xs, ys, yerr=errors([interval_of(r) for r in mine], ys, scale),
                    fmt=MARKERS[i % len(MARKERS)], capsize=3, alpha=0.85, label=name)
    return fig, ax, points, engines


def accuracy_figure(rows: list[Row], axis: Axis) -> Any:
    """Accuracy (all) against the axis's x: every placeable row with its interval, the fronts circled."""
    fig, ax, points, engines = scatter_series(rows, axis, lambda r: accuracy(r) * 100,
                                              lambda r: r.overall["accuracy"], 100.0)
    fronts = front_members(rows, axis)
    texts = point_texts(points, engines)
    draw_fronts(ax, fronts, front_labels(fronts, axis), lambda r: axis.value(r) / axis.scale,
                lambda r: accuracy(r) * 100, lambda r: texts[r.key])
    log = set_scale(ax, "x", [axis.value(r) / axis.scale for r in points])
    ax.set_xlabel(with_note(axis.label(log), axis.note), parse_math=False)
    ax.set_ylabel("accuracy, all benchmarks (%)")
    ax.set_title(axis.plot_title)
    finish(fig, ax, bool(points), axis.empty_text)
    return fig


def plot(rows: list[Row], out_dir: Path, stem: str = "accuracy_vs_memory",
         axis: MemoryAxis | None = None) -> list[Path]:
    """Accuracy (all) against memory (``axis``: weights + one sequence's KV cache), one marker per trainer,
    the front as a step line: the x quantity is the one :func:`~.pareto.mark_pareto` used."""
    axis = axis or memory_axis(rows, rows[0].context_tokens if rows else 0)
    return save(accuracy_figure(rows, axis), out_dir, stem)


def plot_latency(rows: list[Row], out_dir: Path, axis: LatencyAxis | None = None) -> list[Path]:
    """Accuracy (all) against time per generated token at batch 1, one front per engine and device."""
    axis = axis or latency_axis(rows)
    return save(accuracy_figure(rows, axis), out_dir, axis.stem)
