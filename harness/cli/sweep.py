"""``harness sweep CONFIG.toml``: run a grid of cells, skipping those already stored."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from harness.cli.options import cache_option, store_option

if TYPE_CHECKING:  # the command imports them when it runs, so `harness --help` stays quick
    from rich.console import Console

    from harness.sweeps.file import SweepSpec
    from harness.sweeps.sweep import SweepReport


def sweep_options(f: Callable) -> Callable:
    """What ``sweep`` and ``reproduce`` share: overrides of every cell, and how to run them."""
    for opt in reversed([
        click.option("--model", default=None, help="run every cell on this model (tiny-arith, a hub id or a path)"),
        click.option("--seeds", type=int, default=None, help="run every cell with seeds 0..N-1"),
        click.option("--limit", type=int, default=None, help="first N problems of each benchmark"),
        click.option("--faithful", is_flag=True,
                     help="apply the sweep's [faithful] table: the reference code's exact settings"),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="set a cell field in every cell, e.g. max_steps=5 (value read as TOML; repeatable)"),
        click.option("--engine", default=None,
                     help="generation engine of every cell (hf, vllm, openai); same as --set engine=NAME"),
        click.option("--engine-url", default=None, help="server address for --engine openai (not part of run ids)"),
        click.option("--vllm-python", "engine_python", default=None, help="Python of the vLLM environment"),
        click.option("--executor", default="local", show_default=True,
                     help="where cells run: an executor plugin (`harness plugins` lists them; local, ray, ...)"),
        click.option("--executor-opt", "executor_opts", multiple=True, metavar="KEY=VALUE",
                     help="executor option (repeatable), e.g. isolate=false (local), address=auto or shards=4 "
                          "(ray); `harness plugins NAME` lists an executor's options"),
        click.option("--dry-run", is_flag=True, help="plan and list the cells, run nothing"),
        click.option("--json", "as_json", is_flag=True, help="print the sweep report as JSON"),
        store_option,
        cache_option,
    ]):
        f = opt(f)
    return f


@click.command()
@click.argument("config", metavar="CONFIG.toml")
@sweep_options
def sweep(config, **kw) -> None:
    """Run every cell of a sweep file; re-running it runs only what is missing.

    Every cell is resolved and planned before the first one starts: cells
    whose values are wrong refuse the whole sweep, one "error:" line each,
    exit status 2, and nothing runs (--dry-run shows the same refusal). A
    cell that fails while running is listed with its error at the end and the
    others go on; the exit status is then 1, and 130 when interrupted (143 by SIGTERM).
    """
    from harness.sweeps.file import find_sweep

    execute(find_sweep(config), **kw)


def execute(
    spec: SweepSpec, *, model: str | None, seeds: int | None, limit: int | None, faithful: bool,
    sets: tuple[str, ...], executor: str, executor_opts: tuple[str, ...], dry_run: bool, as_json: bool,
    store: str | None, cache_dir: str | None, engine: str | None = None, engine_url: str | None = None,
    engine_python: str | None = None,
) -> None:
    """Plan, run and report one sweep (the body of ``sweep`` and ``reproduce``)."""
    from rich.console import Console

    from harness.base.errors import UserError
    from harness.base.options import parse_kv
    from harness.base.quiet import quiet_libraries
    from harness.core.plugin_manager import get_registry
    from harness.runs.store import Store
    from harness.sweeps.cells import CellsRefused, Overrides, prepare
    from harness.sweeps.sweep import SweepReport, run_sweep

    quiet_libraries()
    if faithful and spec.faithful is None:
        raise UserError(f"sweep {spec.name!r} has no [faithful] table, so --faithful has nothing to apply")
    registry = get_registry()
    chosen = registry.executors.get(executor)
    options = chosen.make_options(parse_kv(executor_opts, "--executor-opt"))
    chosen.check(options)
    engine_sets = [f"{k}={v}" for k, v in (("engine", engine), ("engine_url", engine_url),
                                           ("engine_python", engine_python)) if v]
    overrides = Overrides(model=model, seeds=seeds, limit=limit, faithful=faithful, sets=(*sets, *engine_sets))
    the_store = Store(store)
    console = Console(stderr=True)
    # cells that run on a Ray cluster are checked against its devices there, not against this machine's
    try:
        cells = prepare(spec, overrides, registry, the_store, check_device=chosen.runs_here,
                        auto_device=chosen.auto_device(options))
    except CellsRefused as exc:  # one error line per bad cell, as the CLI prints a single one
        for line in exc.lines:
            click.echo(f"error: {line}", err=True)
        sys.exit(2)
    if dry_run:
        report = SweepReport(spec.name, cells)
    else:
        report = run_sweep(spec.name, cells, the_store, cache_dir, chosen.start(options, console), console=console)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        print_report(report, console=Console())
    if report.interrupted:
        click.echo("interrupted: finished cells are stored; run the same command to go on", err=True)
        sys.exit(report.exit_code_if_interrupted)
    if report.failed:
        sys.exit(1)


def print_report(report: SweepReport, console: Console) -> None:
    """The cells as a table, the counts, then each failed cell's error on its own line."""
    from rich.table import Table

    from harness.cli.render import print_table

    colours = {"done": "green", "stored": "cyan", "failed": "red", "pending": "yellow", "duplicate": "dim"}
    table = Table(title=f"sweep {report.name}")
    for col in ("#", "row", "seed", "variant", "run", "state", "s"):
        table.add_column(col, no_wrap=col in ("run", "state"))
    for c in report.cells:
        colour = colours.get(c.state, "white")
        table.add_row(
            str(c.index + 1), c.row, str(c.seed), c.variant or "-", c.run_id or "-", f"[{colour}]{c.state}[/{colour}]",
            f"{c.seconds:.0f}" if c.seconds else "",
        )
    print_table(table, console)
    counts = report.to_dict()["counts"]
    console.print(
        f"{len(report.cells)} cells: {counts['done']} run, {counts['stored']} already stored, "
        f"{counts['failed']} failed, {counts['pending']} not run"
        + (f", {counts['duplicate']} duplicate" if counts["duplicate"] else "")
        + (f" in {report.seconds:.0f} s" if report.seconds else ""),
        highlight=False,
    )
    for c in report.failed:
        console.print(f"[red]failed[/red] cell {c.index + 1} ({c.row}): ", end="", highlight=False)
        console.print(c.error, markup=False, highlight=False)
