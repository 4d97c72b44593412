"""``harness plugins``: what every installed plugin registered, and what failed to load."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def plugins(as_json: bool) -> None:
    """List installed plugins with the strategies, trainers and benchmarks they register."""
    from harness.plugins import get_registry, plugin_listing

    registry = get_registry()
    rows = plugin_listing(registry.manager, registry)  # type: ignore[attr-defined]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="harness plugins")
    for col in ("plugin", "from", "strategies", "trainers", "benchmarks", "status"):
        table.add_column(col)
    for r in rows:
        status = "[red]failed: " + r["error"] + "[/red]" if r["error"] else "ok"
        if r["unavailable"]:
            status = "; ".join(f"[yellow]{n} unavailable: {why}[/yellow]" for n, why in r["unavailable"].items())
        table.add_row(
            r["name"],
            "built-in" if r["distribution"] == "quant-rl-harness" else f"{r['distribution'] or '?'} {r['version'] or ''}",
            ", ".join(r["strategies"]),
            ", ".join(r["trainers"]),
            ", ".join(r["benchmarks"]),
            status,
        )
    Console().print(table)
