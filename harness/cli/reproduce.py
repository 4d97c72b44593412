"""``harness reproduce NAME``: run a sweep shipped with the harness (``--list`` shows them)."""

from __future__ import annotations

import json

import click

from harness.cli.sweep import execute, sweep_options


@click.command()
@click.argument("name", required=False)
@click.option("--list", "list_", is_flag=True, help="list the shipped sweeps and exit")
@sweep_options
def reproduce(name, list_, **kw) -> None:
    """Reproduce a published table with a shipped sweep, e.g. rlquant-table1.

    Runs on tiny-arith by default and on any model with --model; --faithful
    switches to the reference code's exact settings (both sets of rows can
    live in one store, and the leaderboard pairs them).
    """
    from harness.base.errors import UserError
    from harness.sweeps.file import find_sweep, load_sweep, shipped_sweeps

    if list_:
        specs = [load_sweep(path) for _, path in sorted(shipped_sweeps().items())]
        if kw.get("as_json"):
            click.echo(json.dumps([
                {"name": s.name, "description": s.description, "faithful": s.faithful is not None, "file": s.source}
                for s in specs
            ], indent=2))
            return
        from rich.table import Table

        from harness.cli.render import print_table

        table = Table(title="shipped sweeps (harness reproduce NAME)")
        for col in ("name", "cells", "--faithful", "description"):
            table.add_column(col, overflow="fold")
        for s in specs:
            n = len(s.cells) + (_grid_size(s.grid) if s.grid else 0)
            table.add_row(s.name, str(n), "yes" if s.faithful is not None else "no", s.description)
        print_table(table)
        return
    if not name:
        raise UserError("name a sweep to reproduce (`harness reproduce --list` shows them)")
    execute(find_sweep(name), **kw)


def _grid_size(grid: dict) -> int:
    n = 1
    for values in grid.values():
        n *= len(values)
    return n
