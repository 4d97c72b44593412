"""Sweeps: the file format, the shipped Table 1, and real sweeps on tiny-arith (stored, skipped, failed, resumed)."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.base.errors import UserError
from harness.cli import cli
from harness.core.executor import Job
from harness.runs.store import Store
from harness.sweeps.cells import Overrides, cell_config, expand
from harness.sweeps.file import find_sweep, load_sweep
from harness.sweeps.sweep import run_cell

TABLE1_ROWS = ["base", "GRPO", "Dr. GRPO", "STE 8-bit", "PTQ bnb 8-bit", "PTQ AWQ 8-bit", "QLoRA 4-bit",
               "PTQ bnb 4-bit", "PTQ AWQ 4-bit"]


@pytest.fixture
def tiny():
    from harness.base.model import resolve_model

    try:
        resolve_model("tiny-arith")
    except UserError as exc:
        pytest.skip(f"tiny-arith is not built: {exc}")


def write(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def sweep_json(*args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(cli, ["sweep", *args, "--json"], catch_exceptions=False)
    return result.exit_code, json.loads(result.stdout)


# -- the file format (no model needed) ----------------------------------------------------------


def test_table1_rows_and_faithful_settings():
    spec = find_sweep("rlquant-table1")
    corrected = expand(spec)
    faithful = expand(spec, Overrides(faithful=True))
    assert [c["row"] for c in corrected] == TABLE1_ROWS == [c["row"] for c in faithful]
    assert {c["variant"] for c in corrected} == {"corrected"} and {c["variant"] for c in faithful} == {"faithful"}
    cfg = {c["row"]: cell_config(c["cell"]) for c in corrected}
    fcfg = {c["row"]: cell_config(c["cell"]) for c in faithful}
    # corrected: the project's default evaluation and every plugin's own defaults
    assert all(c.preset == "default" and c.model == "tiny-arith" for c in cfg.values())
    assert cfg["STE 8-bit"].strategy_opts == () and cfg["QLoRA 4-bit"].strategy_opts == ()
    # faithful: the reference code's settings, each only where its plugin runs
    assert all(c.preset == "rlquant" and c.prompt == "raw" and c.sampling.max_new_tokens == 512
               for c in fcfg.values())
    assert dict(fcfg["STE 8-bit"].strategy_opts) == {"variant": "reference"}
    assert dict(fcfg["QLoRA 4-bit"].strategy_opts) == {"eval_mode": "adapter"}
    assert dict(fcfg["PTQ AWQ 8-bit"].strategy_opts) == dict(fcfg["PTQ AWQ 4-bit"].strategy_opts) != {}
    assert dict(fcfg["Dr. GRPO"].trainer_opts)["loss_type"] == "grpo"
    assert "loss_type" not in dict(fcfg["GRPO"].trainer_opts)
    assert fcfg["PTQ bnb 8-bit"].strategy_opts == ()
    # trainer options reach only the cells with a trainer (a base cell with one would be refused)
    assert cfg["base"].trainer_opts == () and dict(cfg["GRPO"].trainer_opts)["levels"] == "1,2"
    # each cell's twin is the other form of the same row
    for c, f in zip(corrected, faithful):
        assert cell_config(c["twin"]).run_id == cell_config(f["cell"]).run_id
        assert cell_config(f["twin"]).run_id == cell_config(c["cell"]).run_id


def test_grid_seeds_and_command_line_overrides(tmp_path):
    path = write(tmp_path, """
name = "grid"
[defaults]
benchmarks = "arith"
limit = 50
[grid]
strategy = ["rtn"]
bits = [4, 8]
act_bits = [16, 8]
[[cell]]
row = "fp"
seeds = [3, 4]
[strategy_opts.rtn]
group_size = 0
""")
    spec = load_sweep(path)
    cells = expand(spec)
    assert len(cells) == 4 + 2
    configs = [cell_config(c["cell"]) for c in cells]
    assert {(c.bits, c.act_bits) for c in configs[:4]} == {(4, 16), (4, 8), (8, 16), (8, 8)}
    assert all(dict(c.strategy_opts) == {"group_size": "0"} for c in configs[:4])
    assert [c.seed for c in configs[4:]] == [3, 4] and configs[4].strategy_opts == ()
    assert all(c.limit == 50 and c.benchmarks == ("arith",) for c in configs)
    over = expand(spec, Overrides(model="org/other", seeds=3, limit=5, sets=("max_new_tokens=32", "prompt=plain")))
    assert len(over) == 5 * 3
    c = cell_config(over[0]["cell"])
    assert (c.model, c.limit, c.sampling.max_new_tokens, c.prompt) == ("org/other", 5, 32, "plain")
    assert sorted({cell_config(o["cell"]).seed for o in over}) == [0, 1, 2]
    assert all(o["twin"] is None and o["variant"] == "" for o in over)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[cell]]\nstrategi = 'rtn'\n", "unknown key 'strategi'"),
        ("[defaults]\nstratgy = 'rtn'\n[[cell]]\n", "[defaults]: unknown key 'stratgy'; allowed: act_bits,"),
        ("[[cell]]\n[faithful]\nstratgy = 'rtn'\n", "[faithful]: unknown key 'stratgy'; allowed: act_bits,"),
        ("[[cell]]\nsampling = {temprature = 0.5}\n",
         "[cell 1] sampling: unknown key 'temprature'; allowed: max_new_tokens, n, temperature, top_p"),
        ("[grid]\nsampling = [{n = 2}, {top = 1.0}]\n", "[grid] sampling: unknown key 'top'; allowed: max_new_tokens,"),
        ("[[cell]]\n[faithful]\nstrategy_opts = 3\n", "[faithful]: write [faithful.strategy_opts.NAME] tables"),
        ("[grids]\nbits = [4]\n", "unknown table or key 'grids'"),
        ("[grid]\nbits = 4\n", "must be a non-empty list"),
        ("name = 'x'\n", "no cells"),
        ("[[cell]\n", "not valid TOML"),
    ],
)
def test_bad_sweep_files(tmp_path, text, message):
    with pytest.raises(UserError, match=re.escape(message)):
        load_sweep(write(tmp_path, text))


def test_cli_errors_and_listing(tmp_path):
    listed = CliRunner().invoke(cli, ["reproduce", "--list", "--json"])
    assert listed.exit_code == 0
    names = {s["name"]: s for s in json.loads(listed.output)}
    assert names["rlquant-table1"]["faithful"] is True
    unknown = CliRunner().invoke(cli, ["reproduce", "rlquant-tabel1"])
    assert unknown.exit_code == 2 and "Did you mean 'rlquant-table1'" in unknown.output
    plain = write(tmp_path, "[[cell]]\nstrategy = 'rtn'\n")
    no_faithful = CliRunner().invoke(cli, ["sweep", str(plain), "--faithful"])
    assert no_faithful.exit_code == 2 and "no [faithful] table" in no_faithful.output
    bad_set = CliRunner().invoke(cli, ["sweep", str(plain), "--set", "nosuch=1"])
    assert bad_set.exit_code == 2 and "--set nosuch" in bad_set.output
    # a --set value is checked once, not once in every cell it reaches
    for value, message in (("limit=five", "--set: limit = 'five' is a string; expected an integer"),
                           ("sampling={top=1.0}", "--set sampling: unknown key 'top'; allowed: max_new_tokens,")):
        result = CliRunner().invoke(cli, ["sweep", str(plain), "--dry-run", "--set", value])
        (line,) = result.stderr.splitlines()
        assert result.exit_code == 2 and line.startswith(f"error: {message}")


def test_a_cell_is_plain_data():
    """What an executor ships to a worker pickles: the function and its arguments."""
    job = Job(0, "label", cell_config({"strategy": "rtn", "bits": 4}).to_dict(), "/x/results.db", "/x/cache")
    assert pickle.loads(pickle.dumps(job)) == job
    assert pickle.loads(pickle.dumps(run_cell)) is run_cell


# -- real sweeps on tiny-arith ------------------------------------------------------------------

TWO = """
name = "two"
[defaults]
model = "tiny-arith"
benchmarks = ["arith"]

[[cell]]
row = "full precision"

[[cell]]
row = "rtn 8-bit"
strategy = "rtn"
bits = 8
"""


@pytest.mark.slow
def test_sweep_stores_skips_and_refuses_a_bad_cell(tiny, tmp_path):
    path = write(tmp_path, TWO)
    in_process = ("--executor-opt", "isolate=false")  # what is tested is the sweep's bookkeeping, not isolation
    code, report = sweep_json(str(path), "--limit", "10", *in_process)
    assert code == 0, report
    assert report["counts"] == {"done": 2, "stored": 0, "failed": 0, "duplicate": 0, "pending": 0}
    store = Store()
    ids = [c["run_id"] for c in report["cells"]]
    for rid, row in zip(ids, ("full precision", "rtn 8-bit")):
        run = store.get_run(rid)
        assert run["status"] == "complete"
        assert len(store.samples(rid)) == 10
        assert run["artifacts"]["sweep"]["row"] == row and run["artifacts"]["sweep"]["sweep"] == "two"

    # the same sweep again runs nothing
    code, again = sweep_json(str(path), "--limit", "10", *in_process)
    assert code == 0 and again["counts"]["done"] == 0 and again["counts"]["stored"] == 2
    text = CliRunner().invoke(cli, ["sweep", str(path), "--limit", "10"])
    assert text.exit_code == 0 and "2 cells: 0 run, 2 already stored, 0 failed" in text.stdout

    # a cell with a bad strategy refuses the file before any cell runs: one line naming it, exit 2
    bad = write(tmp_path, TWO.replace('row = "rtn 8-bit"', 'row = "rtn 4-bit"').replace("bits = 8", "bits = 4")
                + '\n[[cell]]\nrow = "typo"\nstrategy = "rnt"\n', "bad.toml")
    result = CliRunner().invoke(cli, ["sweep", str(bad), "--limit", "10", *in_process])
    assert result.exit_code == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {bad}: cell 3 (row 'typo'): unknown strategy 'rnt'. Did you mean 'rtn'?")
    assert len(store.list_runs()) == 2  # the pending "rtn 4-bit" cell did not run either


@pytest.mark.slow
def test_interrupted_sweep_resumes(tiny, tmp_path, monkeypatch):
    """Ctrl-C mid-cell: the cell is marked interrupted, nothing half-written; the next run finishes it."""
    import harness.runs.evaluate as stage

    path = write(tmp_path, TWO)
    real = stage.evaluate
    calls = {"n": 0}

    def interrupt_first(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(stage, "evaluate", interrupt_first)
    # in process: the patch lives in this process
    code, report = sweep_json(str(path), "--limit", "5", "--executor-opt", "isolate=false")
    assert code == 130 and report["interrupted"]
    first, second = report["cells"]
    assert first["state"] == "pending" and first["error"] == "interrupted" and second["state"] == "pending"
    store = Store()
    assert store.get_run(first["run_id"])["status"] == "interrupted"
    assert store.get_run(second["run_id"]) is None
    artifacts = Path(Store().path).parent / "cache" / "artifacts"
    assert not list(artifacts.rglob(".*.*")), "no temporary folder is left in the artifact cache"

    code, report = sweep_json(str(path), "--limit", "5", "--executor-opt", "isolate=false")
    assert code == 0 and report["counts"]["done"] == 2
    assert all(store.get_run(c["run_id"])["status"] == "complete" for c in report["cells"])


BAD_CELLS = """
[[cell]]
row = "typo"
strategy = "rnt"

[[cell]]
strategy = "rtn"
benchmarks = ["arithm"]
"""


@pytest.mark.parametrize("dry_run", [False, True])
def test_every_bad_cell_refuses_the_sweep_before_any_runs(tiny, tmp_path, dry_run):
    """Each cell is resolved and planned first: all the bad ones are named, one line each, and none runs."""
    path = write(tmp_path, TWO + BAD_CELLS)
    args = ["sweep", str(path), "--limit", "2", "--executor-opt", "isolate=false", *(["--dry-run"] * dry_run)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and result.stdout == ""
    typo, benchmark = result.stderr.splitlines()
    assert typo.startswith(f"error: {path}: cell 3 (row 'typo'): unknown strategy 'rnt'. Did you mean 'rtn'?")
    assert benchmark.startswith(f"error: {path}: cell 4 (strategy = 'rtn', benchmarks = ['arithm']): "
                                "unknown benchmark 'arithm'. Did you mean 'arith'?")
    assert Store().list_runs() == []


def test_a_bad_cell_is_named_with_its_seed_when_its_row_has_several(tiny, tmp_path):
    path = write(tmp_path, TWO + '[[cell]]\nrow = "typo"\nstrategy = "rnt"\nseeds = 2\n')
    result = CliRunner().invoke(cli, ["sweep", str(path), "--dry-run"])
    assert result.exit_code == 2
    assert [line.split(": unknown")[0] for line in result.stderr.splitlines()] == [
        f"error: {path}: cell 3 (row 'typo', seed 0)", f"error: {path}: cell 4 (row 'typo', seed 1)"]


def test_table1_plans_on_tiny(tiny):
    """Every Table 1 cell names a registered plugin with valid options, in both forms (nothing runs)."""
    code, corrected = sweep_json_dry("rlquant-table1")
    code_f, faithful = sweep_json_dry("rlquant-table1", "--faithful")
    failed = [(c["row"], c["error"]) for c in corrected["cells"] + faithful["cells"] if c["state"] == "failed"]
    assert failed == [] and code == code_f == 0
    assert [c["row"] for c in corrected["cells"]] == TABLE1_ROWS
    for c, f in zip(corrected["cells"], faithful["cells"]):
        assert c["twin_id"] == f["run_id"] and f["twin_id"] == c["run_id"]


def sweep_json_dry(*args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(cli, ["reproduce", *args, "--dry-run", "--json"], catch_exceptions=False)
    return result.exit_code, json.loads(result.stdout)


FAITHFUL = """
name = "pair"
[defaults]
model = "tiny-arith"
benchmarks = ["arith"]

[[cell]]
row = "rtn 8-bit"
strategy = "rtn"
bits = 8

[faithful]
preset = "rlquant"
max_new_tokens = 24   # keep the sampled evaluation short on a CPU

[faithful.strategy_opts.rtn]
symmetric = false
"""


@pytest.mark.slow
def test_faithful_and_corrected_rows_pair_in_the_leaderboard(tiny, tmp_path):
    """Both forms of a row, run by two sweeps, are paired by the leaderboard (corrected - faithful)."""
    from harness.leaderboard.generate import generate

    path = write(tmp_path, FAITHFUL)
    in_process = ("--executor-opt", "isolate=false")
    code, corrected = sweep_json(str(path), "--limit", "6", *in_process)
    assert code == 0
    code, faithful = sweep_json(str(path), "--limit", "6", "--faithful", *in_process)
    assert code == 0
    (c,), (f,) = corrected["cells"], faithful["cells"]
    assert c["twin_id"] == f["run_id"] and f["twin_id"] == c["run_id"] and c["run_id"] != f["run_id"]
    run = Store().get_run(f["run_id"])
    assert run["config"]["preset"] == "rlquant" and run["config"]["strategy_opts"] == {"symmetric": "false"}
    rows = generate(Store().path, tmp_path / "board")["rows"]
    by_variant = {r["variant"]: r for r in rows}
    twin = by_variant["corrected"]["twin"]
    assert twin["against_key"] == by_variant["faithful"]["key"] and twin["all"]["accuracy"]["n"] == 6
    diff = by_variant["corrected"]["all"]["accuracy"]["value"] - by_variant["faithful"]["all"]["accuracy"]["value"]
    assert twin["all"]["accuracy"]["diff"] == pytest.approx(diff)
    assert "## Faithful vs corrected" in (tmp_path / "board" / "leaderboard.md").read_text()


def test_a_bad_faithful_value_refuses_both_forms(tiny, tmp_path):
    """A [faithful] value is the file's too: the corrected sweep plans its twin and refuses it, rather
    than recording a twin id that no run will have."""
    path = write(tmp_path, FAITHFUL.replace("symmetric = false", "symetric = false"))
    for args, form in (((), "its faithful form: "), (("--faithful",), "")):
        result = CliRunner().invoke(cli, ["sweep", str(path), "--dry-run", *args])
        assert result.exit_code == 2, result.output
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"error: {path}: cell 1 (row 'rtn 8-bit'): {form}strategy 'rtn' has no option "
                               "'symetric'")


def test_a_cell_grades_as_harness_run_would():
    """The prompt template's policy reaches sweep cells too (plain implies lenient), and a preset's
    fixed policy wins, exactly as in `harness run`."""
    assert cell_config({"prompt": "plain"}).extraction == "lenient"
    assert cell_config({"prompt": "boxed"}).extraction == "strict"
    assert cell_config({"prompt": "plain", "extraction": "strict"}).extraction == "strict"
    assert cell_config({"preset": "rlquant"}).extraction == "strict"
