"""The divergence plots: ``accuracy_vs_kl`` and ``kl_vs_memory``, as PNG and SVG.

Accuracy against KL asks whether moving further from the reference's
distribution costs answers; KL against memory, with its Pareto front, tells
apart recipes whose accuracy ties, which a few hundred problems often cannot.
Reference rows have a KL of 0 by definition, which no log axis can show: they
are left out of both, and the accuracy plot draws each one's accuracy as a
dotted line instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.leaderboard.model import Row
from harness.leaderboard.pareto import KLMemoryAxis, accuracy, front_labels, front_members
from harness.leaderboard.plot import (
    MARKERS,
    draw_fronts,
    errors,
    finish,
    merge_labels,
    point_texts,
    pyplot,
    row_text,
    save,
    scatter_series,
    series_name,
    set_scale,
    with_note,
)

ACCURACY_STEM = "accuracy_vs_kl"
KL_LABEL = "KL from the full-precision reference (nats per token, mean over problems"
REFERENCE_NOTE = "Reference rows (KL 0) are left out; the dotted lines are their accuracies."


def _approximated(rows: list[Row]) -> str:
    """Which k the top-k approximations used, for the label ("" when every KL is exact)."""
    methods = sorted({str(r.divergence["method"]) for r in rows if r.divergence["method"] != "exact"})
    if not methods:
        return ""
    return (f"Marked ({', '.join(methods)}): KL approximated from the server's k most likely tokens "
            "per position, not the whole vocabulary.")


def _texts(rows: list[Row], engines: bool) -> dict[str, str]:
    """Each point's annotation, with the top-k of an approximated KL."""
    texts = point_texts(rows, engines)
    for r in rows:
        if r.divergence["method"] != "exact":
            texts[r.key] += f" ({r.divergence['method']})"
    return texts


def references(rows: list[Row], points: list[Row]) -> dict[float, list[str]]:
    """Accuracy (%) -> the names of the reference rows the plotted rows were measured against
    (references of one accuracy share a line)."""
    by_run = {run: r for r in rows if r.is_reference for run in r.run_ids}
    engines = len({r.engine for r in points}) > 1
    out: dict[float, list[str]] = {}
    for r in points:
        for run in r.divergence.get("reference_runs") or []:
            ref = by_run.get(run)
            if ref is None or accuracy(ref) is None:
                continue
            names = out.setdefault(accuracy(ref) * 100, [])
            if row_text(ref, engines) not in names:
                names.append(row_text(ref, engines))
    return out


def measured(rows: list[Row]) -> list[Row]:
    """The rows an accuracy-vs-KL plot places: a KL (never a reference row) and an accuracy."""
    return [r for r in rows if r.kl is not None and not r.is_reference and accuracy(r) is not None]


def accuracy_kl_figure(rows: list[Row]) -> Any:
    """Accuracy (all) against KL from the reference, both with their intervals."""
    plt = pyplot()
    points = measured(rows)
    engines = len({r.engine for r in points}) > 1
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
    series = sorted({series_name(r, engines) for r in points})
    for i, name in enumerate(series):
        mine = [r for r in points if series_name(r, engines) == name]
        xs, ys = [r.kl for r in mine], [accuracy(r) * 100 for r in mine]
        ax.errorbar(xs, ys, xerr=errors([r.divergence["kl_mean"] for r in mine], xs, 1.0),
                    yerr=errors([r.overall["accuracy"] for r in mine], ys, 100.0),
                    fmt=MARKERS[i % len(MARKERS)], capsize=3, alpha=0.85, label=name)
    texts = _texts(points, engines)
    # neighbours along x alternate above and below their point, so close names do not print over each other
    placed = sorted(points, key=lambda r: (r.kl, accuracy(r)))
    for i, (name, point) in enumerate(merge_labels([(texts[r.key], (r.kl, accuracy(r) * 100)) for r in placed])):
        ax.annotate(name, point, textcoords="offset points", xytext=(6, 6 if i % 2 == 0 else -12), fontsize=8,
                    parse_math=False)
    drawn = references(rows, points)
    for i, (level, names) in enumerate(drawn.items()):
        ax.axhline(level, color="grey", linestyle=":", linewidth=1,
                   label="reference (KL 0)" if i == 0 else "_nolegend_")
        ax.annotate(f"{', '.join(names)} (reference)", (1.0, level), xycoords=("axes fraction", "data"),
                    textcoords="offset points", xytext=(-4, 3), ha="right", fontsize=8, color="grey",
                    parse_math=False)
    log = set_scale(ax, "x", [r.kl for r in points])
    note = " ".join(p for p in (REFERENCE_NOTE if drawn else "", _approximated(points)) if p)
    ax.set_xlabel(with_note(KL_LABEL + (", log scale)" if log else ")"), note), parse_math=False)
    ax.set_ylabel("accuracy, all benchmarks (%)")
    ax.set_title("accuracy against divergence from the reference")
    finish(fig, ax, bool(points), "no quantized row with a divergence from its reference yet")
    return fig


def kl_memory_figure(rows: list[Row], axis: KLMemoryAxis) -> Any:
    """KL from the reference against memory, with the front of the rows no other beats on both."""
    fig, ax, points, engines = scatter_series(rows, axis, lambda r: r.kl, lambda r: r.divergence["kl_mean"], 1.0)
    fronts = front_members(rows, axis)
    texts = _texts(points, engines)
    draw_fronts(ax, fronts, front_labels(fronts, axis), lambda r: axis.value(r) / axis.scale, lambda r: r.kl,
                lambda r: texts[r.key])
    x_log = set_scale(ax, "x", [axis.value(r) / axis.scale for r in points])
    y_log = set_scale(ax, "y", [r.kl for r in points])
    note = " ".join(p for p in ("Reference rows (KL 0) are left out.", axis.note, _approximated(points)) if p)
    ax.set_xlabel(with_note(axis.label(x_log), note), parse_math=False)
    ax.set_ylabel(KL_LABEL.replace(", mean over problems", "") + (", log scale)" if y_log else ")"))
    ax.set_title(axis.plot_title)
    finish(fig, ax, bool(points), axis.empty_text)
    return fig


def plot_kl(rows: list[Row], out_dir: Path, axis: KLMemoryAxis) -> list[Path]:
    """Write ``accuracy_vs_kl`` and ``kl_vs_memory`` (PNG and SVG each)."""
    return save(accuracy_kl_figure(rows), out_dir, ACCURACY_STEM) + save(kl_memory_figure(rows, axis), out_dir,
                                                                          axis.stem)
