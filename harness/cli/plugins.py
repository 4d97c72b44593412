"""``harness plugins``: what every installed plugin registered, and what failed to load;
``harness plugins NAME``: what one strategy, trainer, benchmark, engine or format declares, with its options."""

from __future__ import annotations

import json
from collections.abc import Iterable

import click


@click.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def plugins(name: str | None, as_json: bool) -> None:
    """List installed plugins with what they register; with NAME, show what that strategy (trainer,
    benchmark, engine, format...) declares: bit widths, phase, needs, formats, and options with their help."""
    from harness.core.plugin_manager import get_registry, plugin_listing

    registry = get_registry()
    if name is not None:
        from harness.core.plugin_info import describe

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
    """One "registers" column (a line per kind) instead of a column per kind, and every column at
    least as wide as its longest word: lines wrap between names, never inside one."""
    from rich.console import Console
    from rich.table import Table

    sources = [_source(r) for r in rows]
    registers = ["\n".join(f"{kind}: {', '.join(r[kind])}" for kind in kinds if r.get(kind)) for r in rows]
    table = Table(title="harness plugins")
    table.add_column("plugin", no_wrap=True, min_width=_longest_word(r["name"] for r in rows))
    table.add_column("from", min_width=_longest_word(sources))
    table.add_column("registers", min_width=_longest_word(registers))
    table.add_column("status", min_width=12, overflow="fold")  # reasons may hold long words (a pip command)
    for r, source, registered in zip(rows, sources, registers):
        status = "[red]failed: " + _escape(r["error"]) + "[/red]" if r["error"] else "ok"
        if r["unavailable"]:
            status = "; ".join(f"[yellow]{n} unavailable: {_escape(why)}[/yellow]"
                               for n, why in r["unavailable"].items())
        table.add_row(r["name"], source, registered, status)
    console = Console()
    if not console.is_terminal:  # a pipe or a CI log has no width to keep to: never squeeze a name
        console = Console(width=max(console.width, sum((c.min_width or 0) + 3 for c in table.columns) + 1))
    console.print(table)


def _longest_word(texts: Iterable[str]) -> int:
    """The widest unbreakable piece of ``texts``: a name with the comma that follows it in a list."""
    return max((len(word) for text in texts for word in text.split()), default=4)


def _source(row: dict) -> str:
    from harness.core.plugin_manager import DISTRIBUTION

    if row["distribution"] == DISTRIBUTION:
        return "built-in"
    return f"{row['distribution'] or '?'} {row['version'] or ''}".strip()


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
    table = Table(title=f"{entry['name']} options (--{entry['kind']}-opt KEY=VALUE)")
    for col in ("option", "type", "default", "help"):
        table.add_column(col, overflow="fold")
    for opt in entry["options"]:
        table.add_row(opt["name"], opt["type"], repr(opt["default"]), opt["help"])
    console.print(table)
