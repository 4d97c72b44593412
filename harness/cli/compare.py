"""``harness compare RUN_A RUN_B``: the paired difference, flips, levels and divergence of B from A."""

from __future__ import annotations

import json

import click

from harness.cli.options import cache_option, store_option


@click.command()
@click.argument("run_a")
@click.argument("run_b")
@store_option
@cache_option
@click.option("--json", "as_json", is_flag=True, help="print the comparison as one JSON object")
def compare(run_a: str, run_b: str, store: str | None, cache_dir: str | None, as_json: bool) -> None:
    """Compare stored run RUN_B with RUN_A (its baseline) on the problems both answered.

    Prints the paired accuracy difference (B - A) with its 95% interval, the
    answers that flipped, the difference per level, and how far B's next-token
    distribution moved from A's (read from the store when A is B's reference,
    else computed from the two models)."""
    from rich.console import Console

    from harness.reports.compare import compare_runs
    from harness.runs.cache import ArtifactCache
    from harness.runs.store import Store

    console = Console(stderr=True)
    db = Store(store)
    try:
        report = compare_runs(db, ArtifactCache(cache_dir), run_a, run_b, console=console)
    finally:
        db.close()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    print_comparison(report)


def print_comparison(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from harness.cli.render import divergence_line, print_table

    console = Console()
    a, b = report["a"], report["b"]
    table = Table(title=f"B {b['run_id']} ({b['label']}) against A {a['run_id']} ({a['label']})")
    for col in ("benchmark", "A %", "B %", "B - A, points [95% CI]", "lost", "gained", "problems"):
        table.add_column(col, overflow="fold")
    for bench, r in report["benchmarks"].items():
        d, f = r["difference"], r["flips"]
        table.add_row(bench, f"{r['accuracy_a'] * 100:.1f}", f"{r['accuracy_b'] * 100:.1f}",
                      f"{d['value'] * 100:+.1f} [{d['lo'] * 100:+.1f}, {d['hi'] * 100:+.1f}]"
                      + (" *" if d["significant"] else ""), str(f["lost"]), str(f["gained"]), str(d["problems"]))
    print_table(table, console)
    for bench, r in report["benchmarks"].items():
        levels = ", ".join(f"L{k} {v['difference'] * 100:+.0f}" for k, v in r["by_level"].items())
        console.print(f"  {bench} by level (B - A, points): {levels}")
        if r["divergence"]:
            console.print("  " + divergence_line(bench, r["divergence"]))
