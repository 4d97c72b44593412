"""``harness plugins``: what every installed plugin registered, and what failed to load;
``harness plugins NAME``: what one strategy, trainer or benchmark declares, with its options."""

from __future__ import annotations

import json

import click


@click.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def plugins(name: str | None, as_json: bool) -> None:
    """List installed plugins with what they register; with NAME, show that strategy's (trainer's,
    benchmark's) bit widths, phase, needs and options with their help text."""
    from harness.plugins import get_registry, plugin_listing

    registry = get_registry()
    if name is not None:
        from harness.plugin_info import describe

        entries = describe(registry, name)
        if as_json:
            click.echo(json.dumps(entries, indent=2))
        else:
            for entry in entries:
                _print_entry(entry)
        return
    rows = plugin_listing(registry.manager, registry)  # type: ignore[attr-defined]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    _print_table(rows, list(registry.kinds()))


def _print_table(rows: list[dict], kinds: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="harness plugins")
    table.add_column("plugin", no_wrap=True, min_width=max(len(r["name"]) for r in rows) if rows else None)
    sources = [_source(r) for r in rows]
    table.add_column("from", no_wrap=True, min_width=max(map(len, sources), default=4))
    for kind in kinds:  # one name a line, each column as wide as its longest name: nothing is cut short
        longest = max((len(n) for r in rows for n in r.get(kind, [])), default=0)
        table.add_column(kind, no_wrap=True, min_width=max(longest, len(kind)))
    table.add_column("status", overflow="fold")
    for r, source in zip(rows, sources):
        status = "[red]failed: " + _escape(r["error"]) + "[/red]" if r["error"] else "ok"
        if r["unavailable"]:
            status = "; ".join(f"[yellow]{n} unavailable: {_escape(why)}[/yellow]" for n, why in r["unavailable"].items())
        table.add_row(
            r["name"],
            source,
            *("\n".join(r.get(kind, [])) for kind in kinds),
            status,
        )
    Console(width=_width(table)).print(table)


def _source(row: dict) -> str:
    from harness.plugins import DISTRIBUTION

    return "built-in" if row["distribution"] == DISTRIBUTION else f"{row['distribution'] or '?'} {row['version'] or ''}".strip()


def _width(table) -> int | None:
    """The terminal's width, or wider when the table's unbreakable columns need it (a pipe or a
    CI log has no width to respect, and a name cut to ``olympiadben…`` is useless)."""
    import shutil

    need = sum((c.min_width or 0) + 3 for c in table.columns) + 24
    return max(shutil.get_terminal_size((80, 24)).columns, need)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _print_entry(entry: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    if "error" in entry:
        console.print(f"plugin {entry['name']}: failed: {entry['error']}", markup=False)
        return
    console.print(f"[bold]{entry['kind']} {entry['name']}[/bold] (plugin {entry['plugin']})")
    if entry["description"]:
        console.print(entry["description"], markup=False)
    for key, value in entry["declares"].items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        console.print(f"  {key.replace('_', ' ')}: {shown or '-'}", markup=False)
    if entry["unavailable"]:
        console.print(f"  unavailable: {entry['unavailable']}", markup=False)
    if not entry["options"]:
        console.print("  options: none")
        return
    table = Table(title=f"{entry['name']} options (--{'strategy' if entry['kind'] == 'strategy' else entry['kind']}-opt KEY=VALUE)")
    for col in ("option", "type", "default", "help"):
        table.add_column(col, overflow="fold")
    for opt in entry["options"]:
        table.add_row(opt["name"], opt["type"], repr(opt["default"]), opt["help"])
    console.print(table)
