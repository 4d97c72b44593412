"""The plots: ``accuracy_vs_memory`` (the seed study's Figure 2 view) and ``accuracy_vs_latency``,
each as PNG and SVG with its Pareto fronts.

One drawing for both: an axis (:mod:`.pareto`) gives the x value, the
groups that each have a front, and the labels, so the plot shows exactly
the fronts that :func:`~.pareto.mark_pareto` and
:func:`~.pareto.mark_latency_pareto` marked.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from harness.leaderboard.model import Row
from harness.leaderboard.pareto import Axis, LatencyAxis, MemoryAxis, front_members, latency_axis, memory_axis, placed

MARKERS = "osD^v<>pPX*h"
LINESTYLES = ("-", "--", ":", "-.")


def plot(rows: list[Row], out_dir: Path, stem: str = "accuracy_vs_memory",
         axis: MemoryAxis | None = None) -> list[Path]:
    """Accuracy (all) against memory (``axis``: weights + one sequence's KV cache), one marker per trainer,
    the front as a step line: the x quantity is the one :func:`~.pareto.mark_pareto` used."""
    axis = axis or memory_axis(rows, rows[0].context_tokens if rows else 0)
    return draw(rows, out_dir, axis, stem)


def plot_latency(rows: list[Row], out_dir: Path, axis: LatencyAxis | None = None) -> list[Path]:
    """Accuracy (all) against time per generated token at batch 1, one front per engine and device."""
    axis = axis or latency_axis(rows)
    return draw(rows, out_dir, axis, axis.stem)


def _series(row: Row, engines: bool) -> str:
    name = "base" if row.trainer == "none" else row.trainer
    return f"{name} · {row.engine}" if engines else name


def draw(rows: list[Row], out_dir: Path, axis: Axis, stem: str) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.svg``: every placeable row with its interval, the fronts circled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    points = placed(rows, axis)
    engines = len({r.engine for r in points}) > 1
    # svg text stays text (escaped by matplotlib's SVG writer), not paths
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
        series = sorted({_series(r, engines) for r in points})
        marker = {s: MARKERS[i % len(MARKERS)] for i, s in enumerate(series)}
        for name in series:
            mine = [r for r in points if _series(r, engines) == name]
            xs = [axis.value(r) / axis.scale for r in mine]
            ys = [r.overall["accuracy"]["value"] * 100 for r in mine]
            lo = [max(0.0, y - (r.overall["accuracy"].get("lo") or r.overall["accuracy"]["value"]) * 100)
                  for r, y in zip(mine, ys)]
            hi = [max(0.0, (r.overall["accuracy"].get("hi") or r.overall["accuracy"]["value"]) * 100 - y)
                  for r, y in zip(mine, ys)]
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt=marker[name], capsize=3, alpha=0.85, label=name)
        fronts = front_members(rows, axis)
        labels = list(dict.fromkeys(axis.group_label(f[0]) for f in fronts))
        named: set[str] = set()
        for front in fronts:
            front.sort(key=axis.value)
            group = axis.group_label(front[0])
            label = None
            if group not in named:
                named.add(group)
                label = "Pareto front" + (f" ({group})" if len(labels) > 1 else "")
            xs = [axis.value(r) / axis.scale for r in front]
            ys = [r.overall["accuracy"]["value"] * 100 for r in front]
            ax.step(xs, ys, where="post", color="black", linewidth=1, alpha=0.6, label=label,
                    linestyle=LINESTYLES[labels.index(group) % len(LINESTYLES)])
            ax.scatter(xs, ys, s=160, facecolors="none", edgecolors="black", linewidths=1.2)
            for r, x, y in zip(front, xs, ys):
                text = r.name + (" (faithful)" if r.variant == "faithful" else "")
                text += f" · {r.engine}" if engines else ""
                # text from the store is plain text, never mathtext: a "$" in a name must not be parsed
                ax.annotate(text, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8, parse_math=False)
        ax.set_xscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(plain)
        # the note (why the KV cache is left out, which rows have no latency) is a second line of the label
        note = "\n" + textwrap.fill(axis.note, 110) if axis.note else ""
        ax.set_xlabel(axis.label + note, parse_math=False)
        ax.set_ylabel("accuracy, all benchmarks (%)")
        ax.set_title(axis.plot_title)
        ax.grid(True, which="both", alpha=0.3)
        if points:
            for text in ax.legend(fontsize=8, loc="best").get_texts():
                text.set_parse_math(False)
        else:
            ax.text(0.5, 0.5, axis.empty_text, ha="center", transform=ax.transAxes)
        fig.tight_layout()
        paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.svg"]
        for p in paths:
            fig.savefig(p, metadata={"Date": None} if p.suffix == ".svg" else None)
        plt.close(fig)
    return paths
