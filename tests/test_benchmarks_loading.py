"""Loading the math benchmarks: local JSONL (all or nothing), hub column mapping, offline failure, listing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.base.errors import DataError, UserError
from harness.benchmarks.jsonl import read_jsonl
from harness.benchmarks.math_sets import (
    Aime24,
    Amc23,
    Gsm8k,
    Math500,
    MathL35,
    Minerva,
    OlympiadBench,
)

NAMES = {"math500", "aime24", "amc23", "minerva", "olympiadbench", "gsm8k", "math-l3-5"}


def _write(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


GOOD = {"id": "p1", "problem": "1+1?", "answer": "2"}


def test_all_math_benchmarks_are_registered_through_the_entry_point():
    from harness.core.plugin_manager import get_registry

    registry = get_registry()
    assert NAMES <= set(registry.benchmarks.names())
    assert {registry.benchmarks.owners[n] for n in NAMES} == {"math"}
    assert registry.benchmarks.get("gsm8k").splits == ("test", "train")
    assert registry.benchmarks.get("math-l3-5").splits == ("train",)


def test_a_line_that_is_not_json_names_file_and_line(tmp_path):
    path = _write(tmp_path / "math500.jsonl", [GOOD, {**GOOD, "id": "p2"}, '{"id": "p3", "problem": "oops'])
    with pytest.raises(DataError) as info:
        Math500().load("test", tmp_path)
    assert f"{path}:3:" in str(info.value)
    assert "not valid JSON" in str(info.value)


def test_a_missing_field_names_file_line_and_field(tmp_path):
    path = _write(tmp_path / "aime24.jsonl", [GOOD, {"id": "p2", "problem": "no answer here"}])
    with pytest.raises(DataError) as info:
        Aime24().load("test", tmp_path)
    message = str(info.value)
    assert f"{path}:2:" in message and "answer" in message


@pytest.mark.parametrize(
    ("rows", "why"),
    [
        ([GOOD, {**GOOD, "answer": ""}], "missing field"),
        ([GOOD, {**GOOD, "answer": None}], "missing field"),
        ([GOOD, GOOD], "duplicate id"),
        ([GOOD, "[1, 2]"], "expected a JSON object"),
        ([], "no problems"),
    ],
)
def test_bad_files_fail_whole(tmp_path, rows, why):
    path = _write(tmp_path / "x.jsonl", rows)
    with pytest.raises(DataError, match=why):
        read_jsonl(path)


def test_json_values_keep_their_written_form_and_unicode_separators_are_not_line_breaks(tmp_path):
    rows = [
        {"id": "amc-0", "problem": "p", "answer": 142.0},
        {"id": "amc-1", "problem": "a\u2028b", "answer": 7, "source": "AMC"},
        "",
    ]
    problems = Amc23().load("test", _write(tmp_path / "amc23.jsonl", rows).parent)
    assert [p.answer for p in problems] == ["142.0", "7"]
    assert problems[1].problem == "a\u2028b"
    assert problems[1].meta == {"source": "AMC"}


def test_optional_fields_and_the_environment_variable(tmp_path, monkeypatch):
    _write(tmp_path / "math500.jsonl", [{**GOOD, "level": 3, "subject": "Algebra", "solution": "\\boxed{2}"}])
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path))
    (p,) = Math500().load("test")
    assert (p.id, p.answer, p.level, p.subject, p.solution) == ("p1", "2", "3", "Algebra", "\\boxed{2}")


def test_a_missing_file_says_what_is_there(tmp_path):
    _write(tmp_path / "math500.jsonl", [GOOD])
    with pytest.raises(UserError) as info:
        MathL35().load("train", tmp_path)
    message = str(info.value)
    assert "math-l3-5.jsonl" in message and "math500.jsonl" in message


def test_unknown_split_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no split 'train'"):
        Math500().load("train", tmp_path)


def test_minerva_alternatives_become_references(tmp_path):
    from harness.grading import grade, references

    rows = [{"id": "m0", "problem": "p", "answer": "4.4e7, 4.4 \\times 10^7", "answers": ["4.4e7", "4.4 \\times 10^7"]}]
    (p,) = Minerva().load("test", _write(tmp_path / "minerva.jsonl", rows).parent)
    assert p.answer == "4.4e7"
    assert references(p) == ["4.4e7", "4.4 \\times 10^7"]
    assert grade("so \\boxed{4.4 \\times 10^{7}}", references(p))


def test_hub_column_mapping():
    """The real column names of each hub dataset, mapped without touching the network."""
    (m,) = Math500().problems_from_hub("test", [
        {"problem": "p", "solution": "s \\boxed{1}", "answer": "1", "subject": "Algebra", "level": 2,
         "unique_id": "test/algebra/1.json"}])
    assert (m.id, m.answer, m.level, m.subject, m.meta["unique_id"]) == ("math500-000", "1", "2", "Algebra",
                                                                           "test/algebra/1.json")
    (a,) = Aime24().problems_from_hub("test", [{"id": 60, "problem": "p", "solution": "s", "answer": "204",
                                                "url": "u", "year": 2024}])
    assert (a.id, a.answer) == ("aime24-000", "204")
    (c,) = Amc23().problems_from_hub("test", [{"id": 0, "problem": "p", "answer": 142.0, "url": "u"}])
    assert c.answer == "142.0"
    (v,) = Minerva().problems_from_hub("test", [{"question": "q", "answer": "9.6"}])
    assert (v.problem, v.answer) == ("q", "9.6")
    (o,) = OlympiadBench().problems_from_hub("test", [
        {"id": 1606, "question": "q", "final_answer": ["$69$", "$84$"], "solution": ["s1"], "subfield": "Algebra",
         "unit": None, "is_multiple_answer": True}])
    assert (o.problem, o.answer, o.subject) == ("q", "$69$, $84$", "Algebra")
    g = Gsm8k().problems_from_hub("train", [{"question": "q", "answer": "3 * 4 = <<3*4=12>>12\n#### 1,212"}])
    assert (g[0].id, g[0].answer, g[0].solution) == ("gsm8k-train-0000", "1212", "3 * 4 = <<3*4=12>>12")


def test_math_l3_5_keeps_levels_3_to_5_and_drops_math500(monkeypatch):
    from harness.core.benchmark import Problem

    monkeypatch.setattr(Math500, "load_hub", lambda self, split: [Problem("m", "held  out", "1")])
    rows = [
        {"problem": "easy", "level": "Level 2", "type": "Algebra", "solution": "\\boxed{1}"},
        {"problem": "hard", "level": "Level 5", "type": "Geometry", "solution": "so \\boxed{\\frac{1}{2}}"},
        {"problem": "held out", "level": "Level 4", "type": "Algebra", "solution": "\\boxed{1}"},
        {"problem": "no box", "level": "Level 3", "type": "Algebra", "solution": "it is 4"},
    ]
    (p,) = MathL35().problems_from_hub("train", rows)
    assert (p.id, p.problem, p.answer, p.level, p.subject) == ("math-l3-5-00000", "hard", "\\frac{1}{2}", "5",
                                                                 "Geometry")


def _load_in_subprocess(env_updates: dict[str, str], tmp_path: Path) -> tuple[subprocess.CompletedProcess, float]:
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_DATA_DIR"}
    env.update({"HF_HOME": str(tmp_path / "hf"), "HF_DATASETS_CACHE": str(tmp_path / "hf" / "datasets")})
    env.update(env_updates)
    code = (
        "from harness.benchmarks.math_sets import Math500\n"
        "from harness.base.errors import UserError\n"
        "try:\n"
        "    Math500().load('test')\n"
        "except UserError as exc:\n"
        "    print('USERERROR', exc)\n"
    )
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    return done, time.perf_counter() - start


@pytest.mark.parametrize(
    "env",
    [
        {"HF_HUB_OFFLINE": "1"},  # offline mode, empty cache
        {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"},  # a hub that does not answer
    ],
    ids=["offline", "unreachable"],
)
def test_hub_load_without_network_is_one_clear_user_error(tmp_path, env):
    done, elapsed = _load_in_subprocess(env, tmp_path)
    out = done.stdout
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.startswith("USERERROR"), (out, done.stderr[-2000:])
    assert out.count("\n") == 1, out  # one message
    assert "HuggingFaceH4/MATH-500" in out
    assert "--data-dir" in out and "HARNESS_DATA_DIR" in out and "math500.jsonl" in out
    assert elapsed < 30, f"took {elapsed:.1f}s to fail"


def test_benchmarks_command_lists_sizes_and_sources(benchmarks_dir):
    from click.testing import CliRunner

    from harness.cli import cli

    result = CliRunner().invoke(cli, ["benchmarks", "--json", "--data-dir", str(benchmarks_dir)])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert NAMES | {"arith"} <= set(rows)
    assert rows["math500"]["splits"] == {"test": 500}
    assert rows["gsm8k"]["splits"] == {"test": 1319, "train": 7473}
    assert rows["amc23"]["splits"] == {"test": 83}
    assert rows["minerva"]["splits"] == {"test": 272} and rows["olympiadbench"]["splits"] == {"test": 675}
    assert all(r["source"] for r in rows.values())
    if not (benchmarks_dir / "math-l3-5.jsonl").exists():
        assert rows["math-l3-5"]["splits"] == {"train": None}
        assert rows["math-l3-5"]["origin"]["train"].startswith("missing")


def test_benchmarks_command_without_data_dir_never_downloads(monkeypatch):
    from click.testing import CliRunner

    from harness.benchmarks import math_sets
    from harness.cli import cli

    monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)
    monkeypatch.setattr(math_sets, "_hub_rows", lambda *a, **k: pytest.fail("listing must not download"))
    result = CliRunner().invoke(cli, ["benchmarks"])
    assert result.exit_code == 0, result.output
    assert "math500" in result.output and "published sizes" in result.output
