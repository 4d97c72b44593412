"""``[models.NAME]`` in a sweep file: one model's settings (a recipe chosen for it on validation) apply
to that model's cells only, over the sweep's defaults and plugin tables and under each cell's own values."""

from __future__ import annotations

import pytest

from harness.base.errors import UserError
from harness.sweeps.cells import Overrides, expand
from harness.sweeps.file import load_sweep

SWEEP = """
name = "per-model"
[defaults]
model = "tiny-arith"
bits = 3

[trainer_opts.grpo]
levels = ["1", "2"]
learning_rate = 1e-5

[models."tiny-reason"]
bits = 2
calib = "chain"
[models."tiny-reason".trainer_opts.kd]
learning_rate = 3e-5
[models."tiny-reason".trainer_opts.grpo]
levels = ["1", "2", "3", "4", "5"]
[models."tiny-reason".strategy_opts.kd-qat]
train_scales = false

[[cell]]
row = "KD"
strategy = "kd-qat"
trainer = "kd"

[[cell]]
row = "KD, own rate"
strategy = "kd-qat"
trainer = "kd"
trainer_opts = { learning_rate = 2e-4 }

[[cell]]
row = "KD + GRPO"
strategy = "kd-qat"
trainer = "kd,grpo"
"""


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "per-model.toml"
    path.write_text(SWEEP)
    return load_sweep(path)


def _cells(spec, model=None):
    return {c["row"]: c["cell"] for c in expand(spec, Overrides(model=model))}


def test_another_model_never_sees_the_settings(spec):
    cells = _cells(spec)
    assert cells["KD"]["bits"] == 3 and "calib" not in cells["KD"]
    assert cells["KD"].get("trainer_opts", {}) == {} and cells["KD"].get("strategy_opts", {}) == {}
    assert cells["KD + GRPO"]["trainer_opts"] == {"grpo.levels": ["1", "2"], "grpo.learning_rate": 1e-5}


def test_the_model_named_on_the_command_line_gets_its_table(spec):
    cells = _cells(spec, "tiny-reason")
    assert cells["KD"]["bits"] == 2 and cells["KD"]["calib"] == "chain"
    assert cells["KD"]["trainer_opts"] == {"learning_rate": 3e-5}
    assert cells["KD"]["strategy_opts"] == {"train_scales": False}
    # the cell's own value wins over the model's
    assert cells["KD, own rate"]["trainer_opts"] == {"learning_rate": 2e-4}
    # in a chain, each trainer's key: the model's over the sweep's, the sweep's where the model says nothing
    assert cells["KD + GRPO"]["trainer_opts"] == {
        "kd.learning_rate": 3e-5, "grpo.levels": ["1", "2", "3", "4", "5"], "grpo.learning_rate": 1e-5}


def test_a_bad_per_model_table_names_the_table(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "bad"\n[models."tiny-reason"]\nbitz = 2\n[[cell]]\nstrategy = "rtn"\n')
    with pytest.raises(UserError, match=r"\[models.tiny-reason\]: unknown key 'bitz'"):
        load_sweep(path)
    path.write_text('name = "bad"\n[models]\ntiny-reason = 2\n[[cell]]\nstrategy = "rtn"\n')
    with pytest.raises(UserError, match=r"per-model settings are written as \[models"):
        load_sweep(path)
