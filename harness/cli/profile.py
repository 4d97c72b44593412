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
@click.option("--requests", type=click.IntRange(min=1), default=5, show_default=True, help="timed requests at batch size 1")
@store_option
@cache_option
@click.option("--json", "as_json", is_flag=True, help="print the profile as one JSON object")
def profile(store, cache_dir, prompt_length, gen_length, requests, as_json, **kw) -> None:
    """Weight bytes, peak memory, KV cache, TTFT, tokens/s and latency of one configuration.

    Latency requests are greedy and of fixed length; the evaluation options
    only choose the prompts and the run the profile is stored under.
    """
    from rich.console import Console

    from harness.cache import ArtifactCache
    from harness.errors import UserError
    from harness.model import load_tokenizer
    from harness.pipeline import Runner, git_commit, plan, versions
    from harness.plugins import get_registry
    from harness.engine_stage import check_artifact, engine_settings
    from harness.profiling import LatencySettings
    from harness.prompts import get_template
    from harness.quiet import quiet_libraries
    from harness.store import Store

    quiet_libraries()
    console = Console(stderr=True)
    try:
        settings = LatencySettings(prompt_length=prompt_length, gen_length=gen_length,
                                   batch_size=kw.get("batch_size"), requests_bs1=requests)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    the_plan = plan(build_config(**kw), get_registry())
    config = the_plan.config  # with the strategy's default bits filled in, as `harness run` stores it
    if kw["device"] == "auto" and not the_plan.device.startswith("cuda"):
        console.print("note: CUDA is not available here; profiling on CPU (GPU memory figures are empty)")
    settings.gen_length = settings.gen_length or config.sampling.max_new_tokens

    db = Store(store)
    runner = Runner(db, ArtifactCache(cache_dir), console=console)
    run_id = config.run_id
    model_dir, artifacts = runner.materialize(the_plan, run_id)
    tokenizer = load_tokenizer(model_dir)
    template = get_template(config.prompt)
    prompts = [template.render(p.problem, tokenizer) for probs in the_plan.problems.values() for p in probs[:8]]
    console.print(f"[bold]profile[/bold] {config.label} on {the_plan.device}")
    check_artifact(the_plan, model_dir)
    engine_run = engine_settings(the_plan, console)
    engine_run.extra["log_dir"] = str(runner.cache.root / "logs")
    with the_plan.engine.start(model_dir, engine_run) as session:  # the engine measures what it serves
        result = session.profile(prompts, config, settings, {}, None, plan=the_plan, quant=artifacts.get("quant") or {})
    result["source"] = "harness profile"

    existing = db.get_run(run_id)
    if existing is None:
        db.start_run(run_id, config.label, config.to_dict(), versions(the_plan), git_commit())
        db.add_artifacts(run_id, artifacts)
        db.finish_run(run_id, "profiled")
    else:  # keep the evaluation's own figures (throughput, forward share); replace the rest
        old = db.profile(run_id) or {}
        result = {**result, **{k: v for k, v in old.items() if k.startswith("eval_") and v is not None}}
    db.set_profile(run_id, result)

    if as_json:
        click.echo(json.dumps({"run_id": run_id, "label": config.label, "profile": result}, indent=2))
    else:
        print_profile(run_id, config.label, result)


def print_profile(run_id: str, label: str, prof: dict) -> None:
    """A two-column table of the profile, in human units."""
    from rich.console import Console
    from rich.table import Table

    from harness.cli.render import fmt_bytes
    from harness.profiling import PROFILE_KEYS

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
    Console().print(table)
