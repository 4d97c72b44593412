"""The leaderboard's divergence figures (tests/leaderboard_data.py ``build_divergence_store``): the JSON names,
the Markdown and HTML columns, how seeds and benchmarks pool, the KL-vs-memory front, problem counts that keep
fronts apart, and a store written before divergence was measured."""

from __future__ import annotations

import json
import sqlite3

import pytest
from leaderboard_data import KL_SEEDS, KL_W4, KL_W4_GPTQ, KL_W8, N, build_divergence_store, build_store, divergence

from harness.leaderboard.divergence import row_divergence, run_figures
from harness.leaderboard.generate import generate

FIELDS = ("kl_mean", "kl_p99", "top1_agree", "nll_delta", "flips")


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("divergence")
    out = tmp / "board"
    return out, generate(build_divergence_store(tmp / "results.db"), out)


def by_row(rows: list[dict]) -> dict[tuple, dict]:
    return {(r["engine"], r["bits"], r["options"], r["problems"]): r for r in rows}


W8, W4, W4_ASYM = ("hf", "W8A16", "", N), ("hf", "W4A16", "", N), ("hf", "W4A16", "symmetric=false", N)
W2, W3_SHORT, VLLM_W4 = ("hf", "W2A16", "", N), ("hf", "W3A16", "", 30), ("vllm", "W4A16", "", N)
REF, REF_SHORT = ("hf", "bf16", "", N), ("hf", "bf16", "", 30)


def _cells(md: str, header_start: str = "| # |") -> tuple[list[str], list[list[str]]]:
    lines = md.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    header = [c.strip() for c in lines[i].strip("|").split("|")]
    rows = []
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return header, rows


def test_json_rows_carry_the_divergence_fields(board):
    out, result = board
    rows = by_row(json.loads((out / "leaderboard.json").read_text())["rows"])
    assert rows == by_row(result["rows"])
    w8 = rows[W8]
    assert w8["kl_mean"]["value"] == pytest.approx(KL_W8)
    assert (w8["kl_mean"]["lo"], w8["kl_mean"]["hi"]) == (pytest.approx(KL_W8 * 0.75), pytest.approx(KL_W8 * 1.25))
    assert w8["kl_mean"]["interval"] == "bootstrap" and w8["kl_mean"]["top_k"] is None
    assert w8["kl_p99"] == pytest.approx(KL_W8 * 10) and w8["top1_agree"] == pytest.approx(0.99)
    assert w8["nll_delta"] == pytest.approx(KL_W8 / 2)
    assert w8["flips"]["lost"] == 1 and w8["flips"]["gained"] == 1 and w8["flips"]["problems"] == N
    assert w8["divergence"]["reference_runs"] == rows[REF]["run_ids"][:1]
    assert w8["divergence"]["benchmarks"]["arith"]["kl_mean"]["value"] == pytest.approx(KL_W8)
    # a reference row has no divergence of its own: every field None, and it says it is the reference
    for key in (REF, REF_SHORT):
        assert rows[key]["reference"] and all(rows[key][f] is None for f in FIELDS)
    assert not w8["reference"]
    # a server's top-k approximation says which k
    assert rows[VLLM_W4]["kl_mean"]["top_k"] == 20 and rows[VLLM_W4]["kl_mean"]["method"] == "top-20"


def test_several_seeds_give_their_mean_and_range(board):
    _, result = board
    w2 = by_row(result["rows"])[W2]
    assert w2["seeds"] == [0, 1, 2]
    kl = w2["kl_mean"]
    assert kl["value"] == pytest.approx(sum(KL_SEEDS) / 3)
    assert (kl["lo"], kl["hi"]) == (pytest.approx(min(KL_SEEDS)), pytest.approx(max(KL_SEEDS)))
    assert kl["interval"] == "seed range" and [s["value"] for s in kl["per_seed"]] == list(KL_SEEDS)
    assert w2["flips"]["lost"] == pytest.approx(28) and w2["flips"]["gained"] == pytest.approx(1)
    assert w2["kl_p99"] == pytest.approx(max(KL_SEEDS) * 10), "the largest seed's: an upper bound"


def test_markdown_shows_divergence_problems_seeds_and_tokens(board):
    out, _ = board
    md = (out / "leaderboard.md").read_text()
    header, rows = _cells(md)
    for name in ("seeds", "problems", "tokens / answer", "KL from reference (all)", "top-1 agree %",
                 "flips lost / gained", "KL p99", "NLL Δ", "KL Pareto"):
        assert name in header, name
    col = {name: header.index(name) for name in header}
    by_cells = {(r[col["engine"]], r[col["bits"]], r[col["options"]], r[col["problems"]]): r for r in rows}
    w2, w8 = by_cells[("hf", "W2A16", "-", "60")], by_cells[("hf", "W8A16", "-", "60")]
    assert w2[col["seeds"]] == "3 (0,1,2)" and w8[col["seeds"]] == "1 (seed 0)"
    assert w2[col["KL from reference (all)"]] == "0.2 {0.1–0.3}"
    assert w8[col["KL from reference (all)"]] == "0.002 [0.0015, 0.0025]"
    assert w8[col["top-1 agree %"]] == "99.00" and w8[col["flips lost / gained"]] == "1 / 1 of 60"
    assert w8[col["tokens / answer"]] == "7"
    assert by_cells[("vllm 0.32.0", "W4A16", "-", "60")][col["KL from reference (all)"]] == \
        "0.04 [0.03, 0.05] (top-20)"
    assert by_cells[("hf", "bf16", "-", "30")][col["KL from reference (all)"]] == "0 (reference)"
    assert "## Divergence from the reference, by benchmark" in md
    # one sentence per new column, and one per new plot
    for sentence in ("Seeds: how many seeds", "Problems: how many problems", "Tokens / answer: mean generated",
                     "KL from reference: mean KL", "range in braces", "Top-1 agree:", "Flips lost / gained:",
                     "KL Pareto:", "Accuracy against KL from the reference:", "KL from the reference against memory"):
        assert sentence in md, sentence
    assert "![accuracy against KL from the reference](accuracy_vs_kl.svg)" in md
    assert "(kl_vs_memory.svg) ([PNG](kl_vs_memory.png))" in md


def test_html_shows_divergence_in_the_compact_view(board):
    out, _ = board
    page = (out / "index.html").read_text()
    for name in ("KL from reference (all)", "top-1 agree %", "flips lost / gained", "seeds", "problems"):
        assert f'<th data-type="num" scope="col">{name}</th>' in page, name
    for name in ("KL p99", "NLL Δ", "tokens / answer", "TTFT ms", "kernels", "trainer"):
        assert f'scope="col" class="more">{name}</th>' in page, name
    assert 'id="all-columns"' in page and '<table id="divergence">' in page
    assert f'data-v="{KL_W8!r}">0.002 <span class="nw">[0.0015, 0.0025]</span></td>' in page
    assert ">1 <span class=\"nw\">(seed 0)</span></td>" in page and ">3 <span class=\"nw\">(0,1,2)</span>" in page
    assert 'id="plot-kl"' in page and 'id="plot-kl-memory"' in page


def test_kl_front_separates_recipes_whose_accuracy_ties(board):
    _, result = board
    rows = by_row(result["rows"])
    w4, asym = rows[W4], rows[W4_ASYM]
    assert w4["all"]["accuracy"]["value"] == asym["all"]["accuracy"]["value"]
    assert w4["memory_bytes"] == asym["memory_bytes"]
    assert w4["pareto"] and asym["pareto"], "on the accuracy front the two recipes tie"
    assert KL_W4_GPTQ < KL_W4 and asym["kl_pareto"] and not w4["kl_pareto"], "the KL front tells them apart"
    on_front = {k for k, r in rows.items() if r["kl_pareto"]}
    # hf, 60 problems: W2 (least memory), asymmetric W4, W8 (least KL); the 30-problem row and the vllm
    # top-k row are each alone on their own front; reference rows are on none
    assert on_front == {W2, W4_ASYM, W8, W3_SHORT, VLLM_W4}


def test_rows_on_different_problem_sets_never_share_a_front(board):
    out, result = board
    rows = by_row(result["rows"])
    short = rows[W3_SHORT]
    assert short["problems"] == 30 and rows[W2]["problems"] == N
    # 100 % at the least memory, but on 30 problems: it pushes no 60-problem row off the front
    assert short["pareto"] and rows[W2]["pareto"] and rows[W4]["pareto"]
    note = result["meta"]["memory_note"]
    assert "2 different problem sets (30 and 60 problems)" in note and "never mixes them" in note
    md = (out / "leaderboard.md").read_text()
    assert "W3A16, preset default, hf, 30 problems): 100.0 [100.0, 100.0] % at 9.89 MB [hf, 30 problems]" in md
    assert note in md


def test_run_figures_pool_benchmarks_by_problems_and_tokens():
    a = divergence(0.01, "ref", problems=60, tokens=600, top1=0.9, lost=2, gained=1)
    b = divergence(0.05, "ref", problems=20, tokens=200, top1=0.5, lost=1, gained=0, top_k=20)
    pooled = run_figures({"a": a, "b": b})
    assert pooled["kl_mean"]["value"] == pytest.approx((0.01 * 60 + 0.05 * 20) / 80)
    lo = pooled["kl_mean"]["value"] - ((0.75 * 0.0025) ** 2 + (0.25 * 0.0125) ** 2) ** 0.5
    assert pooled["kl_mean"]["lo"] == pytest.approx(lo), "independent intervals combined"
    assert pooled["top1_agree"] == pytest.approx((0.9 * 600 + 0.5 * 200) / 800), "weighted by tokens"
    assert pooled["kl_p99"] == pytest.approx(0.5)
    assert pooled["flips"] == {"lost": 3, "gained": 1, "problems": 80, "lost_rate": 3 / 80, "gained_rate": 1 / 80}
    row = row_divergence([(0, {"a": a, "b": b})])
    assert row["kl_mean"]["interval"] == "combined" and row["kl_mean"]["method"] == "exact + top-20"
    assert set(row["benchmarks"]) == {"a", "b"} and row["benchmarks"]["b"]["kl_mean"]["method"] == "top-20"
    assert row_divergence([(0, {}), (1, {})]) is None
    partial = row_divergence([(0, {"a": a}), (1, {})])["kl_mean"]
    assert partial["seeds"] == [0] and partial["interval"] == "bootstrap", "the measured seed's own interval"
    unscored = {"kl_mean": None, "problems": 0, "tokens": 0}
    assert row_divergence([(0, {"a": unscored})]) is None, "no completion tokens: nothing to show"


def test_a_store_from_before_divergence_still_renders(tmp_path):
    path = build_store(tmp_path / "old.db")
    db = sqlite3.connect(path)
    db.execute("DROP TABLE divergence")
    db.execute("DELETE FROM _migrations WHERE name = 'm003_divergence'")
    db.commit()
    db.close()
    result = generate(path, tmp_path / "b")
    assert all(r["kl_mean"] is None and r["flips"] is None for r in result["rows"])
    assert "no quantized row with a divergence" in (tmp_path / "b" / "kl_vs_memory.svg").read_text()
