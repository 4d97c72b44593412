"""Training curves of a sweep's rows on one figure: one panel per logged key, seeds pooled per row.

The leaderboard compares where runs end; a study such as ``qerl`` also asks
how they got there (does quantization noise raise the policy's entropy while
it trains?). Every run stores its per-step trainer logs (``harness show
--json`` has them); this draws chosen keys of them for the rows of one sweep:
each seed as a faint line, the mean over seeds as a bold one, optionally
smoothed by a trailing moving average (per-step GRPO figures are noisy).

    python -m harness.reports.training_curves --store r.db --sweep qerl --key entropy --key reward \\
        --key aqn/noise_scale --log-y aqn/noise_scale --exact aqn/noise_scale --smooth 10 \\
        --out studies/qerl/training_curves
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import click

from harness.core.status import RunStatus

#: row -> seed -> [(step, value)]
Curves = dict[str, dict[int, list[tuple[int, float]]]]


def sweep_curves(store_path: Path | str, sweep: str, key: str) -> Curves:
    """``key`` of every complete run of ``sweep``, by the sweep's row name and the run's seed."""
    from harness.base.errors import UserError
    from harness.leaderboard.reader import sweep_tags
    from harness.runs.store import Store

    store = Store(store_path, read_only=True)
    try:
        out: Curves = defaultdict(dict)
        order: dict[str, int] = {}
        for run in store.list_runs():
            tags = sweep_tags(run.get("artifacts") or {}).get(sweep)
            if run["status"] != RunStatus.COMPLETE or tags is None:
                continue
            points = [(int(p["step"]), float(p[key])) for p in store.curve(run["id"]) if key in p]
            row = str(tags.get("row") or run["label"])
            order.setdefault(row, int(tags.get("order") or 0))
            if points:
                out[row][int(run["config"].get("seed", 0))] = points
    finally:
        store.close()
    if not order:
        raise UserError(f"no complete run of sweep {sweep!r} in {store_path}")
    return {row: dict(out.get(row, {})) for row in sorted(order, key=order.get)}


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over ``window`` points (fewer at the start); ``window`` 1 = unchanged."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def mean_curve(seeds: dict[int, list[tuple[int, float]]]) -> tuple[list[int], list[float]]:
    """The mean over seeds at each step every seed logged."""
    by_step: dict[int, list[float]] = defaultdict(list)
    for points in seeds.values():
        for step, value in points:
            by_step[step].append(value)
    steps = sorted(s for s, v in by_step.items() if len(v) == len(seeds))
    return steps, [sum(by_step[s]) / len(by_step[s]) for s in steps]


def per_run_means(seeds: dict[int, list[tuple[int, float]]]) -> dict[int, float]:
    """Each seed's mean over the steps it logged (a run's average mismatch, its mean seconds per step)."""
    return {seed: sum(v for _, v in points) / len(points) for seed, points in seeds.items() if points}


def summary_table(panels: dict[str, Curves]) -> str:
    """A markdown table, one line per row: for each key the mean over a run's steps, averaged over the seeds,
    with the seeds' range in brackets, so a page can quote the figures its plot draws."""
    rows = list(dict.fromkeys(row for curves in panels.values() for row in curves))
    head = ["row", "seeds", *panels]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells, seeds_seen = [], set()
        for curves in panels.values():
            means = per_run_means(curves.get(row, {}))
            seeds_seen |= set(means)
            if not means:
                cells.append("-")
                continue
            values = list(means.values())
            mid = sum(values) / len(values)
            cells.append(_num(mid) + (f" [{_num(min(values))}, {_num(max(values))}]" if len(values) > 1 else ""))
        lines.append(f"| {row} | {','.join(map(str, sorted(seeds_seen))) or '-'} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _num(value: float) -> str:
    return f"{value:.3g}" if value != 0 and abs(value) < 0.01 else f"{value:.4g}"


def plot(panels: dict[str, Curves], out: Path, smooth: int = 1, log_y: tuple[str, ...] = (),
         exact: tuple[str, ...] = (), title: str = "") -> list[Path]:
    """One panel per key, one colour per row; writes ``out``.png and .svg. Keys in ``exact`` (a
    schedule, whose steps are the point) are never smoothed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 3.2 * len(panels)), sharex=True, squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (key, curves) in zip(axes[:, 0], panels.items()):
        window = 1 if key in exact else smooth
        for i, (row, seeds) in enumerate(curves.items()):
            if not seeds:
                continue
            colour = colours[i % len(colours)]
            for points in seeds.values():
                ax.plot([s for s, _ in points], moving_average([v for _, v in points], window),
                        color=colour, alpha=0.25, linewidth=0.8)
            steps, mean = mean_curve(seeds)
            ax.plot(steps, moving_average(mean, window), color=colour, linewidth=2,
                    label=f"{row} (mean of {len(seeds)} seed{'s' if len(seeds) != 1 else ''})")
        ax.set_ylabel(key + (f"\n({window}-step moving average)" if window > 1 else ""))
        if key in log_y:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[-1, 0].set_xlabel("optimizer step")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix in (".png", ".svg"):
        path = out.with_suffix(suffix)
        fig.savefig(path, dpi=120)
        written.append(path)
    plt.close(fig)
    return written


@click.command()
@click.option("--store", "store_path", required=True, type=click.Path(dir_okay=False), help="result store")
@click.option("--sweep", required=True, help="the sweep whose rows are drawn, under its row names")
@click.option("--key", "keys", multiple=True, required=True, help="a logged key, e.g. entropy (repeatable)")
@click.option("--log-y", multiple=True, help="keys drawn on a log scale (e.g. aqn/noise_scale)")
@click.option("--smooth", type=click.IntRange(min=1), default=1, show_default=True,
              help="trailing moving average over N steps")
@click.option("--exact", multiple=True, help="keys never smoothed (a schedule, e.g. aqn/noise_scale)")
@click.option("--title", default="")
@click.option("--out", required=True, type=click.Path(), help="output path without suffix (.png and .svg)")
@click.option("--table", "table_keys", multiple=True,
              help="also write OUT.md: per row, each of these keys' mean over a run's steps, averaged over seeds "
                   "(repeatable; need not be drawn)")
def main(store_path, sweep, keys, log_y, smooth, exact, title, out, table_keys) -> None:
    """Draw the training curves of a sweep's rows."""
    panels = {key: sweep_curves(store_path, sweep, key) for key in keys}
    for path in plot(panels, Path(out), smooth=smooth, log_y=tuple(log_y), exact=tuple(exact), title=title):
        click.echo(str(path))
    if table_keys:
        path = Path(out).with_suffix(".md")
        path.write_text(summary_table({key: sweep_curves(store_path, sweep, key) for key in table_keys}))
        click.echo(str(path))


if __name__ == "__main__":
    import sys

    from harness.base.errors import UserError

    try:
        main.main(standalone_mode=False)
    except UserError as exc:  # bad input: one line, exit 2, as the harness CLI does
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
