"""``harness profile``: memory and latency of one configuration, without evaluating it.

The model comes from the same cached stages as ``harness run`` (so a profile
after a run quantizes nothing), and the profile is stored under that run's id:
``harness show`` then has accuracy and speed side by side. When the run does
not exist yet, a run record with status ``profiled`` holds it; a later
``harness run`` of the same configuration evaluates it and replaces the
profile with its own (which includes evaluation throughput).
"""

from __future__ import annotations

import json

import click

from harness.cli.options import build_config, cache_option, engine_options, eval_options, model_options, store_option


@click.command()
@model_options
@eval_options
@engine_options
@click.option("--prompt-length", type=click.IntRange(min=1), default=None,
              help="prompt tokens per latency request (default: median of the benchmark's prompts)")
@click.option("--gen-length", type=click.IntRange(min=1), default=None,
              help="tokens generated per latency request, EOS ignored (default: --max-new-tokens)")
@click.option("--requests", type=click.IntRange(min=1), default=5, show_default=True,
              help="timed requests at batch size 1")
@store_option
@cache_option
@click.option("--json", "as_json", is_flag=True, help="print the profile as one JSON object")
def profile(store, cache_dir, prompt_length, gen_length, requests, as_json, **kw) -> None:
    """Weight bytes, peak memory, KV cache, TTFT, tokens/s and latency of one configuration.

    Latency requests are greedy and of fixed length; the evaluation options
    only choose the prompts and the run the profile is stored under.
    """
    from rich.console import Console

    from harness.base.errors import UserError
    from harness.runs.opening import opened_run
    from harness.toolkit.profiling import LatencySettings

    console = Console(stderr=True)
    try:
        settings = LatencySettings(prompt_length=prompt_length, gen_length=gen_length,
                                   batch_size=kw.get("batch_size"), requests_bs1=requests)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    with opened_run(build_config(**kw), store, cache_dir, console) as run:
        config = run.plan.config  # with the strategy's default bits filled in, as `harness run` stores it
        if kw["device"] == "auto" and not run.plan.device.startswith("cuda"):
            console.print("note: CUDA is not available here; profiling on CPU (GPU memory figures are empty)")
        settings.gen_length = settings.gen_length or config.sampling.max_new_tokens
        result = run.runner.profile(run.plan, settings)
        run_id = config.run_id

    if as_json:
        click.echo(json.dumps({"run_id": run_id, "label": config.label, "profile": result}, indent=2))
    else:
        print_profile(run_id, config.label, result)


def print_profile(run_id: str, label: str, prof: dict) -> None:
    """A two-column table of the profile, in human units."""
    from rich.table import Table

    from harness.cli.render import fmt_bytes, print_table
    from harness.toolkit.profile_keys import PROFILE_KEYS

    table = Table(title=f"profile of {run_id}: {label}")
    for col in ("figure", "value", "meaning"):
        table.add_column(col)
    for key, (unit, meaning) in PROFILE_KEYS.items():
        value = prof.get(key)
        if value is None:
            continue
        if unit == "bytes":
            text = fmt_bytes(value)
        elif isinstance(value, float):
            text = f"{value:.3g}" if unit in ("", "s") else f"{value:,.1f} {unit}"
        else:
            text = f"{value} {unit}".strip()
        table.add_row(key, text, meaning)
    print_table(table)
