"""``harness benchmarks``: every registered benchmark with its splits, sizes and source."""

from __future__ import annotations

import json
from pathlib import Path

import click


def benchmark_rows(data_dir: Path | None) -> list[dict]:
    """One row per benchmark: name, plugin, splits with their sizes, source, any load error.

    With a data folder, sizes are counted by loading (and so validating) each
    file. Without one, benchmarks that would download (they declare ``hub``
    sources) show their published ``nominal_sizes`` instead, or "?" where
    that is not known: listing never touches the network.
    """
    from harness.base.errors import HarnessError
    from harness.core.plugin_manager import get_registry

    registry = get_registry()
    rows = []
    for name in registry.benchmarks.names():
        bench = registry.benchmarks.get(name)
        files: dict[str, str] = dict(getattr(bench, "files", {}) or {})
        nominal: dict[str, int] = dict(getattr(bench, "nominal_sizes", {}) or {})
        hub: dict = dict(getattr(bench, "hub", {}) or {})
        sizes: dict[str, int | None] = {}
        origin: dict[str, str] = {}
        errors: list[str] = []
        for split in bench.splits:
            if data_dir is None and (split in nominal or split in hub):
                sizes[split] = nominal.get(split)
                origin[split] = "published size (loads from the hub)" if split in nominal else "loads from the hub"
                continue
            if data_dir is not None and split in files and not (data_dir / files[split]).is_file():
                sizes[split], origin[split] = None, f"missing {data_dir / files[split]}"
                continue
            try:
                sizes[split] = len(bench.load(split, data_dir))
                origin[split] = str(data_dir / files[split]) if split in files and data_dir else "loaded"
            except HarnessError as exc:
                sizes[split], origin[split] = None, "error"
                errors.append(f"{split}: {exc}")
        rows.append(
            {
                "name": name,
                "plugin": registry.benchmarks.owners.get(name),
                "version": bench.version,
                "description": bench.description,
                "source": bench.source,
                "splits": sizes,
                "origin": origin,
                "error": "; ".join(errors) or None,
            }
        )
    return rows


@click.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              envvar="HARNESS_DATA_DIR", help="folder of benchmark JSONL files (env HARNESS_DATA_DIR)")
def benchmarks(as_json: bool, data_dir: Path | None) -> None:
    """List every benchmark with its splits, sizes and source."""
    rows = benchmark_rows(data_dir)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    from harness.cli.render import print_table

    title = "harness benchmarks" + (f" (data: {data_dir})" if data_dir else " (no --data-dir: published sizes)")
    table = Table(title=title)
    for col in ("benchmark", "splits", "source", "description"):
        table.add_column(col, overflow="fold")
    for r in rows:
        splits = ", ".join(
            f"{split} {size if size is not None else '[yellow]?[/yellow]'}" for split, size in r["splits"].items()
        )
        missing = [o for o in r["origin"].values() if o.startswith("missing")]
        note = "".join(f"\n[yellow]{m}[/yellow]" for m in missing)
        if r["error"]:
            note += f"\n[red]{r['error']}[/red]"
        table.add_row(r["name"], splits + note, r["source"], r["description"])
    print_table(table)
