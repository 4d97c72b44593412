"""``harness runs`` and ``harness show``: read the store, never write it."""

from __future__ import annotations

import json

import click

from harness.cli.options import store_option


@click.command()
@store_option
@click.option("--json", "as_json", is_flag=True,
              help="print a JSON list instead of a table: run id, label, status and accuracy per benchmark")
def runs(store, as_json) -> None:
    """List stored runs with their headline accuracy."""
    from harness.runs.store import Store

    s = Store(store)
    rows = []
    for r in s.list_runs():
        metrics = s.metrics(r["id"])
        rows.append({
            "run_id": r["id"], "label": r["label"], "status": r["status"],
            "accuracy": {b: m.get("accuracy", {}).get("value") for b, m in metrics.items()},
        })
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    from harness.cli.render import print_table

    table = Table(title=f"runs in {s.path}")
    for col in ("run", "label", "status", "accuracy"):
        table.add_column(col)
    for r in rows:
        acc = ", ".join(f"{b} {v * 100:.1f}%" for b, v in r["accuracy"].items() if v is not None)
        table.add_row(r["run_id"], r["label"], r["status"], acc)
    print_table(table)


@click.command()
@click.argument("run_id")
@store_option
@click.option("--samples", "n_samples", type=int, default=0, help="also print the first N stored samples")
@click.option("--json", "as_json", is_flag=True,
              help="print one JSON object (config, metrics, profile, divergence, versions) instead of text")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "lm-eval"]), default=None,
              help="text (default), json (as --json) or lm-eval (lm-evaluation-harness's results JSON)")
def show(run_id, store, n_samples, as_json, fmt) -> None:
    """Show one run: config, metrics, profile (RUN_ID may be a unique prefix)."""
    from harness.runs.results import run_result
    from harness.runs.store import Store

    s = Store(store)
    if fmt == "lm-eval":
        from harness.reports.lm_eval_format import for_store

        click.echo(json.dumps(for_store(s, run_id)[0], indent=2, default=str, ensure_ascii=False))
        return
    as_json = as_json or fmt == "json"
    result = run_result(s, run_id, detail=True)
    rid = result["run_id"]
    if n_samples:
        result["samples"] = s.samples(rid)[:n_samples]
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
        return
    from rich.console import Console

    from harness.cli.render import print_result

    console = Console()
    print_result(result, console)
    from harness.cli.curve import print_curve

    print_curve(result.get("curve") or [], console)
    console.print_json(json.dumps({"config": result["config"], "versions": result["versions"]}, default=str))
    for sample in result.get("samples", []):
        console.print(f"[bold]{sample['benchmark']}/{sample['problem_id']}[/bold] correct={sample['correct']}")
        console.print(sample["completion"], markup=False)
