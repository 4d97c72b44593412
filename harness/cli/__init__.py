"""The ``harness`` command line.

Commands live one per module and are imported only when invoked, so
``harness --help`` never imports torch. User errors (:class:`harness.errors.UserError`)
become one line on stderr and exit status 2; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import importlib
import sys

import click

from harness import __version__
from harness.errors import HarnessError, UserError

#: command name -> "module:function" (lazy: imported on use)
COMMANDS = {
    "run": "harness.cli.run:run",
    "profile": "harness.cli.profile:profile",
    "plugins": "harness.cli.plugins:plugins",
    "runs": "harness.cli.runs:runs",
    "show": "harness.cli.runs:show",
    "tiny": "harness.cli.tiny:tiny",
    "benchmarks": "harness.cli.benchmarks:benchmarks",
    "leaderboard": "harness.cli.leaderboard:leaderboard",
    "sweep": "harness.cli.sweep:sweep",
    "reproduce": "harness.cli.reproduce:reproduce",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            raise _user_exit(exc) from None
        except HarnessError as exc:
            raise _user_exit(exc) from None


def _user_exit(exc: Exception) -> click.exceptions.Exit:
    click.echo(f"error: {exc}", err=True)
    return click.exceptions.Exit(2)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="harness")
@click.option("--threads", type=click.IntRange(min=1), default=None, envvar="HARNESS_THREADS", show_envvar=True,
              help="CPU threads for torch (default: torch's own choice). On a shared or small machine 1 is "
                   "often several times faster than oversubscribed OpenMP threads; profiles record it.")
def cli(threads: int | None) -> None:
    """Quantize RL-fine-tuned reasoning models and measure accuracy per byte and per millisecond."""
    if threads is not None:
        set_threads(threads)


def set_threads(threads: int) -> None:
    """Through the environment, so that torch (imported later, lazily) and every process this one
    starts (isolated sweep cells, Ray workers on this machine) use the same thread count."""
    import os

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "HARNESS_THREADS"):
        os.environ[var] = str(threads)
    if "torch" in sys.modules:  # already imported (an embedding program, the tests): tell it directly
        sys.modules["torch"].set_num_threads(threads)


def main() -> None:
    import warnings

    warnings.formatwarning = lambda message, category, *args, **kwargs: f"warning: {message}\n"
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("interrupted: every finished sample is stored; run the same command to resume", err=True)
        sys.exit(130)
