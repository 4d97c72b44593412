"""Bad input at the CLI edge: one line, exit status 2, no traceback, nothing written."""

from __future__ import annotations

import sqlite3

import pytest
from click.testing import CliRunner

from harness.cli import cli


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["run", "--strategy", "nope"], "unknown strategy 'nope'"),
        (["run", "--strategy", "rtm"], "Did you mean 'rtn'"),
        (["run", "--trainer", "nope"], "unknown trainer 'nope'"),
        (["run", "--benchmarks", "arith,nope"], "unknown benchmark 'nope'"),
        (["run", "--strategy", "rtn", "--bits", "5"], "does not support bits 5; supported: 4, 8, 3, 2"),
        (["run", "--strategy", "none", "--act-bits", "4"], "does not support activation bits 4"),
        (["run", "--strategy", "rtn", "--strategy-opt", "group_size=abc"], "group_size='abc' is not a valid int"),
        (["run", "--strategy", "rtn", "--strategy-opt", "nope=1"], "has no option 'nope'"),
        (["run", "--strategy", "rtn", "--strategy-opt", "novalue"], "expects key=value"),
        (["run", "--model", "./does/not/exist"], "neither tiny-arith, an existing directory"),
        (["run", "--prompt", "nope"], "unknown prompt template 'nope'"),
        (["run", "--limit", "0"], "--limit must be >= 1"),
        (["run", "--trainer-opt", "lr=1"], "--trainer-opt given without --trainer"),
        (["show", "deadbeef"], "no run 'deadbeef'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, expected, tmp_path):
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "Traceback" not in result.output
    # nothing half-written: no artifact was created
    assert not (tmp_path / "cache" / "artifacts").exists()


def test_store_that_is_not_a_harness_database(tmp_path):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE customers (id INTEGER)")
    result = invoke("runs", "--store", str(other))
    assert result.exit_code == 2
    assert "not a harness result store" in result.output
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite at all" * 100)
    result = invoke("runs", "--store", str(garbage))
    assert result.exit_code == 2
    assert "not a harness result store" in result.output


def test_help_is_fast_and_lists_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    for cmd in ("run", "plugins", "runs", "show"):
        assert cmd in result.output


def test_plugins_json_lists_builtins():
    import json

    result = invoke("plugins", "--json")
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert rows["none"]["strategies"] == ["none"]
    assert rows["rtn"]["strategies"] == ["rtn"]
    assert rows["arith"]["benchmarks"] == ["arith"]


def test_threads_option_reaches_torch_and_child_processes(monkeypatch):
    import os

    import torch

    before = torch.get_num_threads()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "HARNESS_THREADS"):
        monkeypatch.delenv(var, raising=False)
    try:
        result = CliRunner().invoke(cli, ["--threads", "1", "plugins", "--json"])
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 1
        assert os.environ["OMP_NUM_THREADS"] == os.environ["HARNESS_THREADS"] == "1"
        bad = CliRunner().invoke(cli, ["--threads", "0", "plugins"])
        assert bad.exit_code == 2 and "0 is not in the range" in bad.output
    finally:
        torch.set_num_threads(before)
