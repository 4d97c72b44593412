"""``accuracy_vs_memory.png`` / ``.svg``: the seed study's Figure 2 view, with the Pareto front."""

from __future__ import annotations

import textwrap
from collections import defaultdict
from pathlib import Path

from harness.leaderboard.rows import MemoryAxis, Row, eval_key, memory_axis

MARKERS = "osD^v<>pPX*h"


def plot(rows: list[Row], out_dir: Path, stem: str = "accuracy_vs_memory",
         axis: MemoryAxis | None = None) -> list[Path]:
    """Accuracy (all) against memory (``axis``: weights + one sequence's KV cache), one marker per trainer,
    the front as a step line: the x quantity is the one :func:`~.rows.mark_pareto` used."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axis = axis or memory_axis(rows, rows[0].context_tokens if rows else 0)
    points = [r for r in rows if axis.value(r) and r.overall.get("accuracy")]
    from matplotlib.ticker import FuncFormatter

    # svg text stays text (escaped by matplotlib's SVG writer), not paths
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
        trainers = sorted({r.trainer for r in points})
        marker = {t: MARKERS[i % len(MARKERS)] for i, t in enumerate(trainers)}
        for t in trainers:
            mine = [r for r in points if r.trainer == t]
            xs = [axis.value(r) / 1e6 for r in mine]
            ys = [r.overall["accuracy"]["value"] * 100 for r in mine]
            lo = [max(0.0, y - (r.overall["accuracy"].get("lo") or r.overall["accuracy"]["value"]) * 100)
                  for r, y in zip(mine, ys)]
            hi = [max(0.0, (r.overall["accuracy"].get("hi") or r.overall["accuracy"]["value"]) * 100 - y)
                  for r, y in zip(mine, ys)]
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt=marker[t], capsize=3, alpha=0.85,
                        label="base" if t == "none" else t)
        groups: dict[str, list[Row]] = defaultdict(list)
        for r in points:
            if r.pareto:
                groups[eval_key(r)].append(r)
        for i, front in enumerate(groups.values()):
            front.sort(key=axis.value)
            xs = [axis.value(r) / 1e6 for r in front]
            ys = [r.overall["accuracy"]["value"] * 100 for r in front]
            ax.step(xs, ys, where="post", color="black", linewidth=1, alpha=0.6,
                    label="Pareto front" if i == 0 else None)
            ax.scatter(xs, ys, s=160, facecolors="none", edgecolors="black", linewidths=1.2)
            for r, x, y in zip(front, xs, ys):
                text = r.name + (" (faithful)" if r.variant == "faithful" else "")
                # text from the store is plain text, never mathtext: a "$" in a name must not be parsed
                ax.annotate(text, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8, parse_math=False)
        ax.set_xscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(plain)
        # the note (why the KV cache is left out) is a second line of the label; store text stays plain text
        note = "\n" + textwrap.fill(axis.note, 110) if axis.note else ""
        ax.set_xlabel(axis.label + note, parse_math=False)
        ax.set_ylabel("accuracy, all benchmarks (%)")
        ax.set_title("accuracy against memory (circled: Pareto front)")
        ax.grid(True, which="both", alpha=0.3)
        if points:
            for text in ax.legend(fontsize=8, loc="best").get_texts():
                text.set_parse_math(False)
        else:
            ax.text(0.5, 0.5, "no complete run with weight bytes yet", ha="center", transform=ax.transAxes)
        fig.tight_layout()
        paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.svg"]
        for p in paths:
            fig.savefig(p, metadata={"Date": None} if p.suffix == ".svg" else None)
        plt.close(fig)
    return paths
