"""``harness run``: train (optionally), quantize, evaluate, profile, store."""

from __future__ import annotations

import contextlib
import json
import sys

import click

from harness.cli.options import build_config, cache_option, engine_options, eval_options, model_options, store_option


@click.command()
@model_options
@eval_options
@engine_options
@store_option
@cache_option
@click.option("--force", is_flag=True,
              help="evaluate again even if this exact run is stored: its samples, metrics and profile are "
                   "discarded first; cached trained and quantized models are reused")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object (run id, config, metrics)")
def run(store, cache_dir, force, as_json, **kw) -> None:
    """Run one configuration end to end; an interrupted run resumes where it stopped."""
    from harness.runs.opening import opened_run

    # Libraries print to stdout; with --json, stdout carries the JSON object alone.
    with opened_run(build_config(**kw), store, cache_dir) as run, \
            contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
        result = run.runner.run(run.plan, force=force)
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
    else:
        from harness.cli.render import print_result

        print_result(result)
