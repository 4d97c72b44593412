"""What a new user reads: tables whole in a pipe, help for every option, help without reST markup,
allowed bit widths in --help, and latency and divergence in `harness show`."""

from __future__ import annotations

import io
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner
from leaderboard_data import GOOD, add_run
from rich.console import Console
from rich.table import Table

from harness.cli import COMMANDS, cli
from harness.cli.render import print_table
from harness.runs.store import Store

RESULT_HEADERS = ("benchmark", "accuracy % [95% CI]", "reward (paper)", "format %", "tokens / answer", "problems")
#: commands whose options are defined in the files this test covers
OWN_COMMANDS = ("run", "profile", "runs", "show", "sweep", "reproduce")


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def stored(tmp_path, monkeypatch):
    """A store with one run whose profile has latency and whose divergence is measured; 80 columns."""
    monkeypatch.setenv("COLUMNS", "80")
    store = Store(tmp_path / "r.db")
    rid = add_run(store, trainer="grpo", strategy="rtn", bits=4, correct=GOOD, weight_bytes=2_700_000,
                  label="tiny-arith grpo rtn W4A16 with a label long enough to wrap an 80-column table",
                  profile_extra={"bs1_decode_tokens_per_s": 50.0})
    store.set_divergence(rid, "arith", {
        "reference_run": "0123456789abcdef", "kl_mean": {"value": 0.01234, "lo": 0.01, "hi": 0.015},
        "top_k": None, "kl_p99": 0.2, "top1_agree": 0.97, "nll_delta": 0.001, "flips": {"lost": 2, "gained": 1}})
    store.close()
    return tmp_path / "r.db", rid


def _whole_in_one_line(text: str, phrase: str) -> bool:
    return any(phrase in line for line in text.splitlines())


# -- tables in a pipe ----------------------------------------------------------------------------------

def test_show_in_a_pipe_keeps_every_header_and_value_on_one_line(stored):
    path, rid = stored
    result = invoke("show", rid, "--store", str(path))
    assert result.exit_code == 0, result.output
    for phrase in (*RESULT_HEADERS, "90.0 [", "1.000 [0.9"):
        assert _whole_in_one_line(result.stdout, phrase), f"{phrase!r} split:\n{result.stdout}"
    assert "CI]" not in [line.strip(" ┃│") for line in result.stdout.splitlines()]


def test_show_prints_latency_and_divergence(stored):
    path, rid = stored
    out = invoke("show", rid, "--store", str(path)).stdout
    assert _whole_in_one_line(out, "latency at batch size 1: TTFT 5.0 ms, 20.00 ms per token")
    assert _whole_in_one_line(out, "arith divergence from 0123456789abcdef: KL 0.01234")
    assert _whole_in_one_line(out, "flips lost 2 / gained 1")


def test_runs_in_a_pipe_keeps_long_labels_whole(stored):
    path, rid = stored
    out = invoke("runs", "--store", str(path)).stdout
    assert _whole_in_one_line(out, f"{rid} │ tiny-arith grpo rtn W4A16 with a label long enough to wrap")


def test_a_terminal_keeps_its_width():
    table = Table(title="t")
    for col in RESULT_HEADERS:
        table.add_column(col, overflow="fold")
    table.add_row("arith", "52.0 [40.0, 60.0]", "0.620 [0.500, 0.700]", "100.0", "12.3", "60")
    out = io.StringIO()
    print_table(table, Console(file=out, force_terminal=True, width=60, color_system=None))
    assert max(len(line) for line in out.getvalue().splitlines()) <= 60
    piped = io.StringIO()
    print_table(table, Console(file=piped, width=60))
    assert _whole_in_one_line(piped.getvalue(), "accuracy % [95% CI]")


# -- help --------------------------------------------------------------------------------------------

def _commands():
    ctx = click.Context(cli)
    for name in sorted(COMMANDS):
        command = cli.get_command(ctx, name)
        yield [name], command
        if isinstance(command, click.Group):
            for sub in command.list_commands(ctx):
                yield [name, sub], command.get_command(ctx, sub)


@pytest.mark.parametrize("name", OWN_COMMANDS)
def test_every_option_says_what_it_does(name):
    command = cli.get_command(click.Context(cli), name)
    silent = [p.opts for p in command.params if isinstance(p, click.Option) and not p.help and not p.hidden]
    assert not silent, f"harness {name}: options without help: {silent}"


def test_help_has_no_rest_markup():
    """click prints docstrings and help as written: double backticks and roles would show raw."""
    for path, _ in [([], cli), *_commands()]:
        result = invoke(*path, "--help")
        assert result.exit_code == 0, (path, result.output)
        for markup in ("``", ":func:", ":class:", ":mod:", ":meth:"):
            assert markup not in result.output, f"harness {' '.join(path)} --help shows {markup}"


def test_bits_help_lists_each_strategys_widths_without_importing_torch():
    probe = ("import sys\n"
             "from click.testing import CliRunner\n"
             "from harness.cli import cli\n"
             "out = CliRunner().invoke(cli, ['run', '--help']).output\n"
             "print('torch' in sys.modules)\n"
             "print(' '.join(out.split()))\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    imported, text = proc.stdout.splitlines()[:2]
    assert imported == "False"
    bits = text[text.index("--bits"):text.index("--act-bits")]
    assert "allowed per strategy:" in bits and "rtn: 4, 8, 3, 2" in bits.replace("gptqmodel, rtn", "rtn")
    assert "none: 16" in bits


def test_bits_help_falls_back_to_a_pointer_when_the_registry_cannot_load(monkeypatch):
    from harness.cli import options
    from harness.core import plugin_manager

    def broken():
        raise RuntimeError("a plugin failed")

    monkeypatch.setattr(plugin_manager, "get_registry", broken)
    assert options.allowed_bits() == "each strategy's allowed widths: `harness plugins NAME`"
