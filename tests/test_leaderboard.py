"""The leaderboard on a store of synthetic runs (tests/leaderboard_data.py): files, pooling of seeds,
paired differences, the faithful twin, the Pareto front, and escaping of every text from the store."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from leaderboard_data import BOLD_ROW, KV4, KV16, XSS, N, build_kv_store, build_store

from harness.cli import cli
from harness.core.config import RunConfig
from harness.leaderboard.generate import generate
from harness.leaderboard.html import json_for_script
from harness.leaderboard.rows import pareto_front


@pytest.fixture
def store_path(tmp_path) -> Path:
    return build_store(tmp_path / "results.db")


def by_name(rows: list[dict]) -> dict[tuple[str, str, str], dict]:
    return {(r["trainer"], r["strategy"], r["bits"] + ("/" + r["variant"] if r["variant"] else "")): r for r in rows}


def test_files_rows_and_seed_pooling(store_path, tmp_path):
    out = tmp_path / "board"
    result = generate(store_path, out)
    for name in ("leaderboard.md", "index.html", "accuracy_vs_memory.png", "accuracy_vs_memory.svg",
                 "leaderboard.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "accuracy_vs_memory.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "leaderboard.json").read_text())
    assert data["rows"] == result["rows"]
    rows = by_name(data["rows"])
    assert len(data["rows"]) == 6, "7 complete runs, the two GRPO seeds pooled; the running one left out"
    grpo = rows[("grpo", "none", "bf16")]
    assert grpo["seeds"] == [0, 1] and len(grpo["run_ids"]) == 2
    # seed-averaged per-problem scores: (54 + 55) / 2 correct of 60
    assert grpo["all"]["accuracy"]["value"] == pytest.approx(109 / 120)
    assert [p["accuracy"] for p in grpo["per_seed"]] == [pytest.approx(54 / 60), pytest.approx(55 / 60)]
    # the paper's reward metric sits beside accuracy: 1.1 correct, 0.1 formatted only
    base = rows[("none", "none", "bf16")]
    assert base["all"]["reward"]["value"] == pytest.approx((54 * 1.1 + 6 * 0.1) / 60)
    assert base["benchmarks"]["arith"]["accuracy"]["value"] == pytest.approx(0.9)
    lo, hi = base["benchmarks"]["arith"]["accuracy"]["lo"], base["benchmarks"]["arith"]["accuracy"]["hi"]
    assert lo < 0.9 < hi
    assert rows[("grpo", "rtn", "W4A16")]["ttft_ms"] is None and rows[("grpo", "rtn", "W8A16")]["ttft_ms"] == 5.0
    md = (out / "leaderboard.md").read_text()
    assert "| reward (all) |" in md and "arith acc %" in md and "TTFT ms" in md
    assert "| KV B/token | memory @4k tok |" in md


def test_paired_difference_against_default_baseline(store_path, tmp_path):
    rows = by_name(generate(store_path, tmp_path / "b")["rows"])
    rtn4 = rows[("grpo", "rtn", "W4A16")]["baseline"]
    rtn8 = rows[("grpo", "rtn", "W8A16")]["baseline"]
    assert rtn4["against"] == "grpo" and rtn8["against"] == "grpo"
    # 4-bit lost 27 of GRPO's problems and never gained one: negative and significant
    d4 = rtn4["all"]["accuracy"]
    assert d4["diff"] < 0 and d4["hi"] < 0 and d4["significant"]
    assert d4["n"] == N
    assert rtn4["all"]["reward"]["diff"] == pytest.approx(d4["diff"])  # a correct answer is worth 1 more reward
    # 8-bit equals seed 0 and differs from the seed mean only on problem 55: not significant
    d8 = rtn8["all"]["accuracy"]
    assert abs(d8["diff"]) < 0.02 and not d8["significant"]
    assert rows[("grpo", "none", "bf16")]["baseline"] is None, "full precision is the baseline, not compared"


def test_baseline_filter_and_run_id(store_path, tmp_path):
    rows = by_name(generate(store_path, tmp_path / "b", baseline="trainer=none,strategy=none")["rows"])
    grpo = rows[("grpo", "none", "bf16")]["baseline"]
    assert grpo["against"] == "base" and not grpo["all"]["accuracy"]["significant"]
    assert rows[("grpo", "rtn", "W4A16")]["baseline"]["all"]["accuracy"]["significant"]
    assert rows[("none", "none", "bf16")]["baseline"] is None, "a row is never its own baseline"
    rid = RunConfig(trainer="grpo", strategy="rtn", bits=4, limit=N).run_id
    rows = by_name(generate(store_path, tmp_path / "c", baseline=rid[:8])["rows"])
    d = rows[("none", "none", "bf16")]["baseline"]["all"]["accuracy"]
    assert d["diff"] > 0 and d["significant"]
    result = CliRunner().invoke(cli, ["leaderboard", "--store", str(store_path), "--out", str(tmp_path / "d"),
                                      "--baseline", "nosuchfield=1"])
    assert result.exit_code == 2 and "unknown field 'nosuchfield'" in result.output


def test_faithful_twin_paired(store_path, tmp_path):
    out = tmp_path / "b"
    rows = by_name(generate(store_path, out)["rows"])
    corrected = rows[("grpo", "rtn", "W2A16/corrected")]
    faithful = rows[("grpo", "rtn", "W2A16/faithful")]
    assert corrected["name"] == BOLD_ROW
    twin = corrected["twin"]
    assert twin["against_key"] == faithful["key"] and twin["against_variant"] == "faithful"
    # corrected solves 27, faithful 6 (a subset): corrected - faithful = +21/60, significant
    assert twin["all"]["accuracy"]["diff"] == pytest.approx(21 / 60, abs=1e-9)
    assert twin["all"]["accuracy"]["significant"]
    assert faithful["twin"] is None, "the pair is shown once, from the corrected side"
    md = (out / "leaderboard.md").read_text()
    assert "## Faithful vs corrected" in md and "+35.0" in md


def test_pareto_front_hand_made():
    points = [(1, 0.5), (2, 0.4), (2, 0.7), (3, 0.7), (4, 0.9), (4, 0.9), (0.5, 0.1)]
    # (2, .4) is beaten by (2, .7); (3, .7) by (2, .7); identical (4, .9) points both stay
    assert pareto_front(points) == [0, 2, 4, 5, 6]
    assert pareto_front([]) == []
    assert pareto_front([(1, 0.0)]) == [0]


def test_pareto_rows(store_path, tmp_path):
    rows = by_name(generate(store_path, tmp_path / "b")["rows"])
    on_front = {k for k, r in rows.items() if r["pareto"]}
    # every row has the same KV cache (KV16), so memory is weight bytes plus a constant.
    # Default-preset rows: 2.0 MB at 45 %, 4.3 MB at 90 % and GRPO's 13 MB at 90.8 % (the seed mean) beat
    # 2.7 MB at 45 % and the base model's 13 MB at 90 %; the faithful row was evaluated another way
    # (preset rlquant), so it is compared with no other row and is its own front
    assert on_front == {("grpo", "rtn", "W2A16/corrected"), ("grpo", "rtn", "W8A16"), ("grpo", "none", "bf16"),
                        ("grpo", "rtn", "W2A16/faithful")}


W4, W4KV4 = ("grpo", "rtn", "W4A16"), ("grpo", "rtn", "W4A16KV4")


def test_kv_cache_memory_moves_kv4_onto_the_front(tmp_path):
    out = tmp_path / "b"
    result = generate(build_kv_store(tmp_path / "kv.db"), out)
    rows = by_name(json.loads((out / "leaderboard.json").read_text())["rows"])
    kv16, kv4 = rows[W4], rows[W4KV4]
    assert (kv16["kv_bytes_per_token"], kv4["kv_bytes_per_token"]) == (KV16, KV4)
    assert kv16["weight_bytes"] == kv4["weight_bytes"] == 2_700_000
    assert kv16["all"]["accuracy"]["value"] == kv4["all"]["accuracy"]["value"]
    assert kv16["context_tokens"] == kv4["context_tokens"] == 4096
    assert kv16["memory_bytes"] == 2_700_000 + 4096 * KV16 and kv4["memory_bytes"] == 2_700_000 + 4096 * KV4
    # equal weights and accuracy: only the KV cache tells them apart, and the KV4 row wins
    assert kv4["pareto"] and not kv16["pareto"]
    assert result["meta"]["memory_axis"] == "weights + KV cache of one 4096-token sequence"
    assert result["meta"]["memory_note"] == ""
    md = (out / "leaderboard.md").read_text()
    assert "| weights | KV B/token | memory @4k tok | peak memory |" in md
    assert "| 2.70 MB | 512 | 4.80 MB |" in md and "| 2.70 MB | 2,048 | 11.09 MB |" in md
    assert "memory @4k tok: weights plus the KV cache of one 4096-token reasoning trace" in md
    assert "## Pareto front (accuracy against weights + KV cache of one 4096-token sequence)" in md
    page = (out / "index.html").read_text()
    assert '<th data-type="num" scope="col" class="more">KV B/token</th>' in page, "in the every-column view"
    assert '<th data-type="num" scope="col">memory @4k tok</th>' in page
    assert f'data-v="{float(2_700_000 + 4096 * KV4)!r}"' in page
    svg = (out / "accuracy_vs_memory.svg").read_text()
    # 4.80 to 11.09 MB is less than a decade: a linear axis, and its label says nothing of a log scale
    assert "weights + KV cache of one 4096-token sequence (MB)" in svg and "log scale" not in svg


def test_context_tokens_zero_is_weights_only(tmp_path):
    out = tmp_path / "b"
    result = CliRunner().invoke(cli, ["leaderboard", "--store", str(build_kv_store(tmp_path / "kv.db")),
                                      "--out", str(out), "--context-tokens", "0", "--json"])
    assert result.exit_code == 0, result.output
    rows = by_name(json.loads(result.stdout)["rows"])
    for key in (W4, W4KV4):
        assert rows[key]["memory_bytes"] == rows[key]["weight_bytes"] == 2_700_000
        assert rows[key]["context_tokens"] == 0
    assert rows[W4KV4]["kv_bytes_per_token"] == KV4, "the KV column still shows"
    assert rows[W4]["pareto"] and rows[W4KV4]["pareto"], "identical points: neither beats the other"
    meta = json.loads((out / "leaderboard.json").read_text())["meta"]
    assert meta["context_tokens"] == 0 and meta["memory_axis"] == "weights"
    assert "--context-tokens 0" in meta["memory_note"]
    assert "weights (MB)" in (out / "accuracy_vs_memory.svg").read_text()
    assert "| memory @0 tok |" in (out / "leaderboard.md").read_text()
    bad = CliRunner().invoke(cli, ["leaderboard", "--store", str(tmp_path / "kv.db"), "--out", str(out),
                                   "--context-tokens", "-1"])
    assert bad.exit_code == 2 and "--context-tokens must be >= 0" in bad.output


def test_run_without_kv_figure_falls_back_to_weights(tmp_path):
    out = tmp_path / "b"
    result = generate(build_kv_store(tmp_path / "kv.db", old_run=True), out)
    rows = by_name(result["rows"])
    old = rows[("grpo", "rtn", "W8A16")]
    assert old["kv_bytes_per_token"] is None and old["memory_bytes"] is None
    assert rows[W4KV4]["memory_bytes"] == 2_700_000 + 4096 * KV4, "the column keeps each row's own figure"
    # the front and the plot count weights alone for every row, rather than favour the row without a KV figure
    assert rows[W4]["pareto"] and rows[W4KV4]["pareto"] and not old["pareto"]
    note = result["meta"]["memory_note"]
    assert result["meta"]["memory_axis"] == "weights"
    assert note.startswith("KV cache left out: 1 row (grpo rtn W8A16) has no KV bytes per token")
    md = (out / "leaderboard.md").read_text()
    assert note in md and "## Pareto front (accuracy against weights)" in md
    assert "KV cache left out" in (out / "index.html").read_text()
    svg = (out / "accuracy_vs_memory.svg").read_text()
    assert "weights (MB)" in svg and "KV cache left out" in svg


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.scripts: list[tuple[dict, str]] = []
        self._in_script: dict | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "script":
            self._in_script = dict(attrs)
            self.scripts.append((self._in_script, ""))

    def handle_data(self, data):
        if self._in_script is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = None


def test_html_escapes_store_text(store_path, tmp_path):
    out = tmp_path / "b"
    generate(store_path, out, n_samples=2)
    page = (out / "index.html").read_text()
    assert XSS not in page and "<b>STE</b>" not in page and "<b>bold</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;STE&lt;/b&gt; 8-bit" in page
    parsed = _Collect()
    parsed.feed(page)
    # exactly two script elements: the JSON data and the page's own code; no <b> element anywhere
    assert [a.get("type") for a, _ in parsed.scripts] == ["application/json", None]
    assert "b" not in parsed.tags
    data = json.loads(parsed.scripts[0][1])
    assert any(XSS in s["completion"] for r in data["rows"] for s in r["samples"])
    # no external resource: no src/href to another origin, images inline
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "Content-Security-Policy" in page
    svg = (out / "accuracy_vs_memory.svg").read_text()
    assert "<b>STE" not in svg and "&lt;b&gt;STE" in svg
    md = (out / "leaderboard.md").read_text()
    assert "<b>" not in md and "&lt;b&gt;STE&lt;/b&gt;" in md


def test_json_for_script_cannot_break_out():
    text = json_for_script({"a": "</script><script>alert(1)</script>", "b": "&amp; <!--"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"a": "</script><script>alert(1)</script>", "b": "&amp; <!--"}


def test_cli_and_missing_store(store_path, tmp_path):
    result = CliRunner().invoke(cli, ["leaderboard", "--store", str(store_path), "--out", str(tmp_path / "o"),
                                      "--json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["rows"]) == 6
    missing = CliRunner().invoke(cli, ["leaderboard", "--store", str(tmp_path / "none.db"),
                                       "--out", str(tmp_path / "o2")])
    assert missing.exit_code == 2 and "no result store" in missing.output
    assert not (tmp_path / "none.db").exists(), "the leaderboard never creates a store"


def test_store_is_not_written(store_path, tmp_path):
    before = store_path.read_bytes()
    generate(store_path, tmp_path / "b")
    assert store_path.read_bytes() == before


def test_a_run_two_sweeps_share_is_a_row_of_each(tmp_path):
    from leaderboard_data import N

    from harness.runs.store import Store

    path = build_store(tmp_path / "results.db")
    store = Store(path)
    shared = RunConfig(trainer="grpo", strategy="rtn", bits=8, limit=N).run_id
    for sweep in ("first", "second"):
        store.tag_sweep(shared, {"sweep": sweep, "row": f"row of {sweep}", "order": 0, "variant": "", "twin": None})
    store.close()

    assert [r["name"] for r in generate(path, tmp_path / "a", sweep="first")["rows"]] == ["row of first"]
    assert [r["name"] for r in generate(path, tmp_path / "b", sweep="second")["rows"]] == ["row of second"]
    # runs tagged before per-sweep tags existed ("sweep" only) are still found by their sweep
    assert {r["variant"] for r in generate(path, tmp_path / "c", sweep="t")["rows"]} == {"corrected", "faithful"}
    # no --sweep: every run, a shared one named by the sweep that tagged it last
    assert "row of second" in {r["name"] for r in generate(path, tmp_path / "d")["rows"]}
    result = CliRunner().invoke(cli, ["leaderboard", "--store", str(path), "--out", str(tmp_path / "e"),
                                      "--sweep", "nope"])
    assert result.exit_code == 2
    assert "'nope'" in result.output and "sweeps here: first, second, t" in result.output
    # merging stores keeps every sweep's tags of a run both hold
    from harness.runs.transfer import export_run, import_run

    source, merged = Store(path), Store(tmp_path / "merged.db")
    import_run(merged, export_run(source, shared))
    merged.tag_sweep(shared, {"sweep": "third", "row": "row of third", "order": 0, "variant": "", "twin": None})
    import_run(merged, export_run(source, shared))
    assert set(merged.get_run(shared)["artifacts"]["sweeps"]) == {"first", "second", "third"}
