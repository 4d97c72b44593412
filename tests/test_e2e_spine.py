"""End to end on tiny-arith: quantize, evaluate, store, list, and compare rows honestly."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from harness.cli import cli


def run_json(*args) -> dict:
    result = CliRunner().invoke(cli, ["run", *args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.slow
def test_rtn4_none_rtn8_on_arith():
    none = run_json("--strategy", "none", "--limit", "100")
    rtn8 = run_json("--strategy", "rtn", "--bits", "8", "--limit", "100")
    rtn4 = run_json("--strategy", "rtn", "--bits", "4", "--limit", "100")
    a_none = none["metrics"]["arith"]["accuracy"]
    a_rtn8 = rtn8["metrics"]["arith"]["accuracy"]
    a_rtn4 = rtn4["metrics"]["arith"]["accuracy"]
    for a in (a_none, a_rtn8, a_rtn4):
        assert 0.0 <= a["lo"] <= a["value"] <= a["hi"] <= 1.0
    # 8-bit RTN is within the bootstrap interval of full precision
    assert a_none["lo"] <= a_rtn8["value"] <= a_none["hi"]
    assert a_none["value"] > 0.2, "tiny-arith must solve a fair share of arith"
    # the paper's reward metric sits beside accuracy
    assert {"accuracy", "reward", "format_rate"} <= set(rtn4["metrics"]["arith"])
    # weight bytes as stored: 4-bit < 8-bit < full precision
    wb = {k: r["profile"]["weight_bytes"] for k, r in (("none", none), ("rtn8", rtn8), ("rtn4", rtn4))}
    assert wb["rtn4"] < wb["rtn8"] < wb["none"]
    assert rtn4["config"]["bits"] == 4

    listed = CliRunner().invoke(cli, ["runs", "--json"], catch_exceptions=False)
    ids = {r["run_id"] for r in json.loads(listed.output)}
    assert {none["run_id"], rtn8["run_id"], rtn4["run_id"]} <= ids

    # the same config again is the same run: nothing recomputed
    again = run_json("--strategy", "rtn", "--bits", "4", "--limit", "100")
    assert again["run_id"] == rtn4["run_id"]
    assert again["metrics"] == rtn4["metrics"]


@pytest.mark.slow
def test_show_has_config_versions_and_samples():
    r = run_json("--limit", "5")
    shown = CliRunner().invoke(cli, ["show", r["run_id"][:8], "--samples", "2", "--json"], catch_exceptions=False)
    data = json.loads(shown.output)
    assert data["versions"]["transformers"].startswith("5.")
    assert data["config"]["model"] == "tiny-arith"
    assert len(data["samples"]) == 2 and data["samples"][0]["prompt"]
