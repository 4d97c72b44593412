"""The training curve of a run as a short table (``harness show``).

A run stores every logged step (reward, loss, TRL's token ``entropy`` of the
sampled completions, an in-training strategy's own figures such as qerl's
``aqn/noise_scale``, and with quantized rollouts the mismatch between the
rollout and the trained policy under TRL's ``sampling/...`` names). The
table shows a handful of evenly spaced steps, the first and last always
among them, so a 100-step run fits on a screen; ``harness show --json`` has
them all.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from harness.cli.render import print_table

#: curve keys shown, in this order, when the run logged them
COLUMNS = (
    ("reward", "reward"),
    ("loss", "loss"),
    ("entropy", "entropy"),
    ("aqn/noise_scale", "noise scale"),
    ("completions/mean_length", "length"),
    # quantized rollouts (harness.trainers.rollouts): how far the sampling policy is from the trained one
    ("sampling/sampling_logp_difference/mean", "logp diff"),
    ("sampling/kl_rollout_train", "KL(rollout||train)"),
    ("sampling/importance_sampling_ratio/min", "IS ratio min"),
    ("sampling/importance_sampling_ratio/max", "IS ratio max"),
    ("sampling/clipped_fraction", "clipped"),
    ("sampling/effective_sample_size", "ESS"),
    ("step_time", "s/step"),
)


def sampled_steps(curve: list[dict], rows: int) -> list[dict]:
    """At most ``rows`` points of ``curve``, evenly spaced, first and last included."""
    if len(curve) <= rows:
        return list(curve)
    picks = sorted({round(i * (len(curve) - 1) / (rows - 1)) for i in range(rows)})
    return [curve[i] for i in picks]


def print_curve(curve: list[dict], console: Console, rows: int = 11) -> None:
    """The curve's shown columns at a few steps; nothing when the run did not train."""
    if not curve:
        return
    shown = [(key, title) for key, title in COLUMNS if any(key in point for point in curve)]
    table = Table(title=f"training curve ({len(curve)} logged steps; all in --json)")
    table.add_column("step", justify="right")
    for _, title in shown:
        table.add_column(title, justify="right")
    for point in sampled_steps(curve, rows):
        table.add_row(str(point.get("step", "")), *(_fmt(point.get(key)) for key, _ in shown))
    print_table(table, console)


def _fmt(value) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return f"{value:.3g}" if abs(value) < 1e-2 and value != 0 else f"{value:.4f}"
