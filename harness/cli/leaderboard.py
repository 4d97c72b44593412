"""``harness leaderboard``: render the result store as Markdown, HTML, a plot and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import click

from harness.cli.options import CreatablePath, store_option
from harness.leaderboard.destination import DEFAULT_OUT, PUBLISHED


@click.command()
@store_option
@click.option("--out", "out_dir", type=CreatablePath(file_okay=False), default=DEFAULT_OUT, show_default=True,
              help="folder to write leaderboard.md, index.html, leaderboard.json and the plots "
                   "(accuracy and KL against memory, accuracy against KL; .png and .svg) "
                   f"(the repository's published leaderboard is regenerated only with --out {PUBLISHED})")
@click.option("--force", is_flag=True,
              help="write into --out even when it holds files the generator did not write (they are kept; "
                   "files of the generator's names are replaced)")
@click.option("--baseline", default=None, metavar="RUN_ID|KEY=VALUE,...",
              help="what each row is compared with: a run id, or a filter such as trainer=grpo,strategy=none "
                   "(default: the full-precision row of the same model, trainer and settings)")
@click.option("--samples", "n_samples", type=int, default=3, show_default=True,
              help="sample generations shown per row in the HTML page")
@click.option("--context-tokens", type=int, default=4096, show_default=True, metavar="N",
              help="KV-cache tokens counted in each row's memory figure and on the plot's x axis (one long "
                   "reasoning trace, so KV-cache quantization shows); 0: weights only")
@click.option("--sweep", default=None, metavar="NAME",
              help="only the runs of this sweep, with its row names (a run several sweeps share is a row of each)")
@click.option("--title", default="Leaderboard", show_default=True)
@click.option("--note", default="", help="a paragraph written under the title (e.g. the command that made the runs)")
@click.option("--json", "as_json", is_flag=True, help="print the rows as JSON")
def leaderboard(store, out_dir, force, baseline, n_samples, context_tokens, sweep, title, note, as_json) -> None:
    """Render every complete run in the store; seeds of one configuration form one row."""
    from harness.base.errors import UserError
    from harness.leaderboard.destination import check_destination
    from harness.leaderboard.generate import FILES, generate
    from harness.runs.store import default_store_path

    if n_samples < 0:
        raise UserError(f"--samples must be >= 0, got {n_samples}")
    check_destination(out_dir, FILES, force=force)
    result = generate(store or default_store_path(), out_dir, baseline=baseline, n_samples=n_samples,
                      title=title, note=note, context_tokens=context_tokens, sweep=sweep)
    if as_json:
        click.echo(json.dumps({"files": result["files"], "rows": result["rows"]}, indent=2))
        return
    from rich.console import Console

    from harness.leaderboard.text import diff_points, pct, reward, size

    console = Console()
    for r in result["rows"]:
        delta = r["baseline"]["all"]["accuracy"] if r["baseline"] else None
        console.print(
            f"{r['name']}{' (faithful)' if r['variant'] == 'faithful' else ''} · {r['model']} · {r['bits']}: "
            f"acc {pct(r['all'].get('accuracy'))} %, reward {reward(r['all'].get('reward'))}, "
            f"{size(r['weight_bytes'])}, memory {size(r['memory_bytes'])}"
            + (f", Δ {diff_points(delta)} pp" if delta else ""),
            markup=False, highlight=False,
        )
    names = sorted(Path(p).name for p in result["files"].values())
    console.print(f"{len(result['rows'])} rows written to {out_dir}/: {', '.join(names)}", markup=False)
