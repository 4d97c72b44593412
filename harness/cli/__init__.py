"""The ``harness`` command line.

Commands live one per module and are imported only when invoked, so
``harness --help`` never imports torch. User errors (:class:`harness.base.errors.UserError`)
become one line on stderr and exit status 2; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import importlib
import sys

import click

from harness import __version__
from harness.base.errors import HarnessError, UserError

#: command name -> "module:function" (lazy: imported on use)
COMMANDS = {
    "run": "harness.cli.run:run",
    "profile": "harness.cli.profile:profile",
    "plugins": "harness.cli.plugins:plugins",
    "runs": "harness.cli.runs:runs",
    "show": "harness.cli.runs:show",
    "compare": "harness.cli.compare:compare",
    "export": "harness.cli.export:export",
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
              help="CPU threads for torch (default: the cores this process may use, by CPU affinity and "
                   "cgroup quota, less those other processes are running on, re-read before each generation "
                   "batch and training step, so another job cannot stall a run; see harness/base/threads.py). "
                   "Profiles record it.")
def cli(threads: int | None) -> None:
    """Quantize RL-fine-tuned reasoning models and measure accuracy per byte and per millisecond."""
    set_threads(threads)


def set_threads(threads: int | None) -> None:
    """Through the environment, so that torch (imported later, lazily) and every process this one
    starts (isolated sweep cells, Ray workers on this machine) use the same choice."""
    from harness.base.threads import configure

    configure(threads)


#: what Ctrl-C prints before exit status 130
INTERRUPTED = "interrupted: every finished sample is stored; run the same command to resume"


def main(args: list[str] | None = None) -> None:
    """The ``harness`` entry point: exit 0, 1 (a run or cell failed), 2 (bad input), 130 (Ctrl-C) or 143 (SIGTERM).

    Click's standalone mode turns Ctrl-C into ``Aborted!`` and exit 1, so the
    command runs outside it and the exits are made here.
    """
    import warnings

    from harness.base.signals import stop_like_ctrl_c

    warnings.formatwarning = lambda message, category, *args, **kwargs: f"warning: {message}\n"
    stop_like_ctrl_c()  # SIGTERM and SIGHUP: the Ctrl-C path, exit 128 + signal
    try:
        code = cli.main(args=args, prog_name="harness", standalone_mode=False)
    except KeyboardInterrupt as exc:
        code = _interrupted(exc)
    except click.exceptions.Abort as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):  # what click makes of Ctrl-C
            code = _interrupted(exc.__cause__)
        else:
            click.echo("Aborted!", err=True)
            code = 1
    except click.exceptions.ClickException as exc:  # usage errors: one line, exit 2
        exc.show()
        code = exc.exit_code
    sys.exit(code if isinstance(code, int) else 0)


def _interrupted(exc: KeyboardInterrupt) -> int:
    from harness.base.signals import Terminated, exit_status

    line = INTERRUPTED.replace("interrupted", f"stopped by {exc}", 1) if isinstance(exc, Terminated) else INTERRUPTED
    click.echo(line, err=True)
    return exit_status(exc)
