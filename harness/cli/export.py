"""``harness export``: a stored run's model as a folder that transformers and vLLM load."""

from __future__ import annotations

import click

from harness.cli.options import cache_option, store_option


@click.command()
@click.argument("run_id")
@click.argument("out_dir", type=click.Path(file_okay=True, dir_okay=True))
@store_option
@cache_option
@click.option("--force", is_flag=True, help="replace OUT_DIR when it holds an earlier export")
def export(run_id, out_dir, store, cache_dir, force) -> None:
    """Write run RUN_ID's evaluated model into OUT_DIR (RUN_ID may be a unique prefix).

    The folder holds the model with its tokenizer and chat template, the quantization recipe
    (harness-run.json, recipe.yaml where llmcompressor made it), a model card (README.md) and the
    results and per-sample rows in lm-evaluation-harness's shapes. Written whole or not at all."""
    from pathlib import Path

    from harness.reports.export import export_run
    from harness.runs.cache import ArtifactCache
    from harness.runs.store import Store

    report = export_run(Store(store, read_only=True), ArtifactCache(cache_dir), run_id, Path(out_dir), force=force)
    click.echo(f"exported run {report.run_id} ({report.label}) to {report.out_dir}: {len(report.files)} files, "
               f"{report.bytes / 1e6:.1f} MB, format {report.artifact_format}, in {report.seconds:.1f} s")
    if report.caveat:
        click.echo(f"warning: {report.caveat}", err=True)
