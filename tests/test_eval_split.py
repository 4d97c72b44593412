"""Evaluating on a split other than test (``--split validation``): how a recipe is chosen without
reading the test split, with the run's identity, label and leaderboard grouping saying which split."""

from __future__ import annotations

import json

from click.testing import CliRunner

from harness.cli import cli
from harness.core.config import RunConfig
from harness.core.plugin_manager import get_registry
from harness.core.resolve import resolve_config
from harness.runs.planning import plan


def test_the_default_split_is_test_and_leaves_every_run_id_as_it_was():
    config = RunConfig(model="tiny-reason", benchmarks=("chain",), train_data="chain")
    assert config.split == "test" and "split" not in config.hashed_dict()
    validation = resolve_config({"model": "tiny-reason", "split": "validation"})
    assert validation.hashed_dict()["split"] == "validation" and validation.run_id != config.run_id
    assert validation.label.endswith("[validation]") and "[" not in config.label


def test_a_validation_run_evaluates_the_validation_problems_and_its_reference_does_too():
    registry = get_registry()
    planned = plan(resolve_config({"model": "tiny-reason", "split": "validation", "strategy": "rtn", "bits": 4,
                                   "limit": 10, "divergence": True}), registry)
    ids = [p.id for p in planned.problems["chain"]]
    expected = [p.id for p in registry.benchmarks.get("chain").load("validation")[:10]]
    assert ids == expected and all(i.startswith("V") for i in ids)
    test_ids = {p.id for p in registry.benchmarks.get("chain").load("test")}
    assert not test_ids & set(ids)
    assert planned.reference is not None and planned.reference.split == "validation"


def test_a_split_the_benchmark_lacks_is_one_line_naming_the_splits_it_has():
    result = CliRunner().invoke(cli, ["run", "--model", "tiny-reason", "--split", "dev", "--limit", "5"])
    assert result.exit_code == 2
    assert "no split 'dev'" in result.output and "test, train, validation" in result.output
    assert result.output.count("\n") == 1, result.output


def test_a_sweep_cell_takes_the_split_as_a_key(tmp_path):
    sweep = tmp_path / "val.toml"
    sweep.write_text('name = "val"\n[defaults]\nmodel = "tiny-reason"\nsplit = "validation"\nlimit = 10\n\n'
                     '[[cell]]\nrow = "base"\nstrategy = "none"\n')
    result = CliRunner().invoke(cli, ["sweep", str(sweep), "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    cells = json.loads(result.output)["cells"]
    expected = plan(resolve_config({"model": "tiny-reason", "split": "validation", "limit": 10}), get_registry())
    assert [c["run_id"] for c in cells] == [expected.config.run_id]
    assert cells[0]["label"] == "tiny-reason base none bf16 [validation]"
