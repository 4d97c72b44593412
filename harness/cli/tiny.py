"""``harness tiny build``: rebuild an embedded model (tiny-arith, tiny-reason) from scratch."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli.options import CreatablePath
from harness.tiny import MODELS, NAME


@click.group()
def tiny() -> None:
    """The embedded models: tiny-arith (the default) and tiny-reason."""


@tiny.command()
@click.option("--model", "name", default=NAME, show_default=True,
              help=f"embedded model to build ({', '.join(MODELS)})")
@click.option("--out", type=CreatablePath(file_okay=False), default=None,
              help="output folder (default: the installed package's weights folder of --model)")
@click.option("--steps", type=int, default=None, help="training steps (default: the shipped recipe's)")
@click.option("--seed", type=int, default=0, show_default=True)
def build(name, out, steps, seed) -> None:
    """Train an embedded model deterministically (same seed, steps and threads: same weights)."""
    import json

    from harness import tiny as tiny_pkg
    from harness.runs.tiny_recipe import build as build_model
    from harness.runs.tiny_recipe import recipe_for

    model = tiny_pkg.get(name)
    target = Path(out) if out else model.weights_dir()
    report = build_model(target, recipe_for(model, seed=seed, steps=steps))
    click.echo(json.dumps(report, indent=2))
