"""``harness tiny build``: rebuild tiny-arith from scratch with the project's recipe."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli.options import CreatablePath


@click.group()
def tiny() -> None:
    """The embedded default model, tiny-arith."""


@tiny.command()
@click.option("--out", type=CreatablePath(file_okay=False), default=None,
              help="output folder (default: the installed package's weights folder)")
@click.option("--steps", type=int, default=None, help="training steps (default: the shipped recipe's)")
@click.option("--seed", type=int, default=0, show_default=True)
def build(out, steps, seed) -> None:
    """Train tiny-arith deterministically (same seed, steps and threads: same weights)."""
    import json

    from harness import tiny as tiny_pkg
    from harness.tiny.recipe import TinyRecipe, build as build_model

    recipe = TinyRecipe(seed=seed)
    if steps is not None:
        recipe.steps = steps
    target = Path(out) if out else tiny_pkg.weights_dir()
    report = build_model(target, recipe)
    click.echo(json.dumps(report, indent=2))
