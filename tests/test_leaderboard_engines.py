"""The leaderboard with rows of two engines (tests/leaderboard_data.py ``build_engine_store``): the engine
shown per row in every output, latency figures tagged with the engine that measured them, per-engine fronts,
the accuracy-vs-latency plot, and the result store opened read-only through its public methods."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest
from leaderboard_data import GOOD, N, build_engine_store, build_store

from harness.base.errors import StoreError
from harness.leaderboard.generate import generate
from harness.runs.store import Store

HF_BF16, HF_W4, HF_W8 = ("hf", "none", "bf16"), ("hf", "rtn", "W4A16"), ("hf", "rtn", "W8A16")
VLLM_BF16, VLLM_W4 = ("vllm", "none", "bf16"), ("vllm", "rtn", "W4A16")


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("engines")
    out = tmp / "board"
    result = generate(build_engine_store(tmp / "results.db"), out)
    return out, result


def by_engine(rows: list[dict]) -> dict[tuple[str, str, str], dict]:
    return {(r["engine"], r["strategy"], r["bits"]): r for r in rows}


def test_two_engines_are_two_rows_each_with_its_engine(board):
    out, result = board
    rows = by_engine(result["rows"])
    assert set(rows) == {HF_BF16, HF_W4, HF_W8, VLLM_BF16, VLLM_W4}, "same config, two engines: two rows"
    assert json.loads((out / "leaderboard.json").read_text())["rows"] == result["rows"]
    assert result["meta"]["engines"] == ["hf", "vllm"]
    assert rows[HF_W4]["engine_version"] is None and rows[VLLM_BF16]["engine_version"] == "vllm 0.32.0"
    assert rows[HF_BF16]["engine_version"] == "transformers 4.57.1"
    assert rows[VLLM_W4]["quant_method"] == "compressed-tensors"
    assert rows[VLLM_W4]["kernels"] == ["CPUWNA16LinearKernel"] and rows[HF_W4]["kernels"] == []
    assert rows[HF_BF16]["kernels"] == ["Linear"]
    # latency figures carry the engine that measured them; ms/token from the decode speed, else the ITL
    assert rows[VLLM_BF16]["latency"]["engine"] == "vllm" and rows[HF_BF16]["latency"]["engine"] == "hf"
    assert rows[HF_BF16]["ms_per_token"] == pytest.approx(100.0)
    assert rows[VLLM_BF16]["ms_per_token"] == pytest.approx(10.0), "decode speed wins over the ITL"
    assert rows[VLLM_W4]["ms_per_token"] == pytest.approx(20.0)
    assert rows[HF_BF16]["latency"]["bs1_latency_p50_ms"] == 3200.0
    # an old run without latency: None everywhere, not 0
    assert rows[HF_W8]["ms_per_token"] is None and rows[HF_W8]["ttft_ms"] is None
    assert rows[HF_W8]["latency"]["bs1_decode_tokens_per_s"] is None


def test_baselines_and_fronts_stay_within_an_engine(board):
    _, result = board
    rows = by_engine(result["rows"])
    assert rows[VLLM_W4]["baseline"]["against_key"] == rows[VLLM_BF16]["key"]
    assert rows[VLLM_W4]["baseline"]["against_engine"] == "vllm"
    assert rows[HF_W4]["baseline"]["against_key"] == rows[HF_BF16]["key"]
    assert rows[VLLM_W4]["baseline"]["all"]["accuracy"]["diff"] == 0.0
    # latency: one front over both engines would hold vllm bf16 (10 ms/token, 90 %) alone
    latency_front = {k for k, r in rows.items() if r["latency_pareto"]}
    assert latency_front == {HF_BF16, HF_W4, VLLM_BF16}, "vllm W4 (20 ms, 90 %) loses to vllm bf16 only"
    # memory: vllm W4 (2.7 MB, 90 %) would beat every hf row on one shared front
    assert {k for k, r in rows.items() if r["pareto"]} == {HF_W4, HF_W8, VLLM_W4}
    assert "latency" in result["meta"]["latency_note"] and "per engine" in result["meta"]["latency_note"]
    assert "(base rtn W8A16) has no batch-1 decode speed" in result["meta"]["latency_note"]


def test_markdown_names_engines(board):
    out, _ = board
    md = (out / "leaderboard.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| # |"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells[5:7] == ["bits", "engine"]
    assert {"tok/s", "TTFT ms", "ms/token", "kernels", "latency Pareto"} <= set(cells)
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines()
            if line.startswith("| ") and not line.startswith("| # |")][:5]
    ttft, ms = cells.index("TTFT ms"), cells.index("ms/token")
    engine = cells.index("engine")
    by_cells = {(r[engine], r[4], r[5]): r for r in rows}
    assert by_cells[("vllm 0.32.0", "none", "bf16")][ttft] == "8.0 (vllm)"
    assert by_cells[("hf (transformers 4.57.1)", "none", "bf16")][ttft] == "40.0 (hf)"
    assert by_cells[("hf (transformers 4.57.1)", "none", "bf16")][ms] == "100.00 (hf)"
    assert by_cells[("hf (transformers 4.57.1)", "none", "bf16")][cells.index("kernels")] == "Linear"
    assert by_cells[("hf", "rtn", "W8A16")][ttft] == "-" and by_cells[("hf", "rtn", "W8A16")][ms] == "-"
    assert by_cells[("vllm 0.32.0", "rtn", "W4A16")][cells.index("kernels")] == \
        "compressed-tensors: CPUWNA16LinearKernel"
    assert "## Pareto front (accuracy against time per generated token at batch size 1)" in md
    assert re.search(r"- base \(tiny-arith, bf16, preset default, vllm, 60 problems\): .* at 10\.00 ms/token "
                     r"\[vllm, cpu, float32\]", md), "each front's rows name the front as the plot's legend does"
    assert "![accuracy against time per generated token at batch size 1, Pareto front circled]" \
           "(accuracy_vs_latency.svg) ([PNG](accuracy_vs_latency.png))" in md
    assert "(accuracy_vs_memory.svg) ([PNG](accuracy_vs_memory.png))" in md


def test_html_names_engines_and_embeds_both_plots(board):
    out, _ = board
    page = (out / "index.html").read_text()
    assert '<th data-type="text" scope="col">engine</th>' in page
    assert '<th data-type="num" scope="col">ms/token</th>' in page
    assert '<select data-field="engine" id="filter-engine">' in page
    assert '<option value="vllm">vllm</option>' in page
    assert 'data-v="8.0">8.0 <span class="nw">(vllm)</span></td>' in page
    assert 'data-v="40.0">40.0 <span class="nw">(hf)</span></td>' in page
    assert 'id="plot-memory"' in page and 'id="plot-latency"' in page
    assert 'id="plot-kl"' in page and 'id="plot-kl-memory"' in page
    assert page.count("data:image/png;base64,") == 4
    assert 'id="latency-note"' in page


def test_latency_plot_written_with_a_front_per_engine(board):
    out, result = board
    png, svg = out / "accuracy_vs_latency.png", out / "accuracy_vs_latency.svg"
    assert result["files"]["latency_png"] == str(png) and result["files"]["latency_svg"] == str(svg)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = svg.read_text()
    assert "ms per generated token at batch size 1" in text
    # the hf front joins two rows and is drawn; vllm's holds one row (circled), so the legend names no line for it
    assert "Pareto front (hf, cpu, float32)" in text and "Pareto front (vllm, cpu" not in text
    assert "base · vllm" in text and "base · hf" in text
    memory = (out / "accuracy_vs_memory.svg").read_text()
    assert "Pareto front (hf)" in memory and "Pareto front (vllm)" not in memory


def test_runs_without_latency_still_plot(tmp_path):
    """The store of tests/test_leaderboard.py has TTFT but no decode speed: the latency plot says so."""
    out = tmp_path / "b"
    result = generate(build_store(tmp_path / "r.db"), out)
    assert all(r["ms_per_token"] is None and not r["latency_pareto"] for r in result["rows"])
    assert all(r["engine"] == "hf" for r in result["rows"]), "runs made before engines: hf"
    assert "no complete run with a batch-1 decode speed yet" in (out / "accuracy_vs_latency.svg").read_text()
    assert "## Pareto front (accuracy against time per" not in (out / "leaderboard.md").read_text()
    assert "6 rows" in result["meta"]["latency_note"]


def test_baseline_filter_keeps_to_the_engine_unless_it_names_one(tmp_path):
    path = build_engine_store(tmp_path / "r.db")
    rows = by_engine(generate(path, tmp_path / "a", baseline="strategy=none")["rows"])
    assert rows[VLLM_W4]["baseline"]["against_engine"] == "vllm"
    out = tmp_path / "b"
    rows = by_engine(generate(path, out, baseline="engine=hf,strategy=none")["rows"])
    assert rows[VLLM_W4]["baseline"]["against_key"] == rows[HF_BF16]["key"]
    assert "| base (hf) |" in (out / "leaderboard.md").read_text(), "a comparison across engines says so"


def test_store_read_only(tmp_path):
    path = build_engine_store(tmp_path / "r.db")
    store = Store(path, read_only=True)
    try:
        run = next(r for r in store.list_runs() if r["config"].get("engine") == "vllm")
        scores = store.problem_scores(run["id"])
        assert len(scores["arith"]) == N and scores["arith"]["p00"] == (1.0, pytest.approx(1.1))
        assert sum(a for a, _ in scores["arith"].values()) == len(GOOD)
        first = store.samples(run["id"], limit=2)
        assert [s["problem_id"] for s in first] == ["p00", "p01"]
        assert len(store.samples(run["id"])) == N
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store.finish_run(run["id"], "failed")
    finally:
        store.close()
    with pytest.raises(StoreError, match="no result store"):
        Store(tmp_path / "nested" / "none.db", read_only=True)
    assert not (tmp_path / "nested").exists(), "a read-only open creates nothing"
    (tmp_path / "other.db").write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(StoreError, match="not a harness result store"):
        Store(tmp_path / "other.db", read_only=True)


def test_engine_options_are_part_of_the_row(tmp_path):
    from leaderboard_data import VLLM, add_run

    path = tmp_path / "r.db"
    store = Store(path)
    add_run(store, correct=GOOD, weight_bytes=13_000_000, engine="vllm", profile_extra=VLLM)
    add_run(store, correct=GOOD, weight_bytes=13_000_000, engine="vllm", engine_opts={"dtype": "float32"},
            profile_extra=VLLM)
    store.close()
    out = tmp_path / "b"
    rows = generate(path, out)["rows"]
    assert sorted(len(r["run_ids"]) for r in rows) == [1, 1], "other engine options: another row"
    assert "| vllm 0.32.0 [dtype=float32] |" in (out / "leaderboard.md").read_text()
