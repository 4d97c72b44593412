"""The harness-gptqmodel distribution, tested as an installed third-party plugin.

Run after installing it (``pip install --no-deps --no-build-isolation plugins/harness-gptqmodel``).
Where gptqmodel imports, a real 4-bit quantization of tiny-arith runs; where it
does not, the strategy must be listed as unavailable and refuse to run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from harness.base.errors import UserError
from harness.core.strategy import QuantContext

PLUGIN_DIR = Path(__file__).resolve().parents[1]
HAS_GPTQMODEL = importlib.util.find_spec("gptqmodel") is not None


@pytest.fixture()
def registry():
    from harness.core.plugin_manager import build_registry, make_manager

    pm, failures = make_manager()
    registry = build_registry(pm, failures)
    registry.manager = pm
    return registry


def test_entry_point_registers_both_strategies(registry):
    assert "gptqmodel" not in registry.failures
    assert registry.strategies.owners["gptqmodel"] == "gptqmodel"
    assert registry.strategies.owners["autogptq"] == "gptqmodel"


def test_plugins_listing_names_the_distribution_and_what_is_unavailable(registry):
    from harness.core.plugin_manager import plugin_listing

    (row,) = [r for r in plugin_listing(registry.manager, registry) if r["name"] == "gptqmodel"]
    assert row["distribution"] == "harness-gptqmodel" and row["version"] == "0.1.0"
    assert row["strategies"] == ["autogptq", "gptqmodel"] and row["error"] is None
    # auto-gptq does not import with transformers 5; it must be reported, not crash
    assert "autogptq" in row["unavailable"]
    assert ("gptqmodel" in row["unavailable"]) != HAS_GPTQMODEL


def test_unavailable_strategy_refuses_before_any_work(registry):
    autogptq = registry.strategies.get("autogptq")
    with pytest.raises(UserError, match=r"strategy 'autogptq' is unavailable: auto-gptq"):
        autogptq.check_runnable("cpu")
    if not HAS_GPTQMODEL:
        with pytest.raises(UserError, match=r"strategy 'gptqmodel' is unavailable: gptqmodel is not installed"):
            registry.strategies.get("gptqmodel").check_runnable("cpu")
    else:
        registry.strategies.get("gptqmodel").check_runnable("cpu")


def test_options_and_bits(registry):
    strategy = registry.strategies.get("gptqmodel")
    assert strategy.make_options({"group_size": "-1"}).group_size == -1
    with pytest.raises(UserError, match="group_size must be > 0, or -1"):
        strategy.make_options({"group_size": "0"})
    with pytest.raises(UserError, match=r"'gptqmodel' does not support bits 5; supported: 4, 8, 3, 2"):
        strategy.spec(5)


def test_pip_install_adds_the_entry_point(tmp_path):
    """One pip command installs it; a fresh interpreter then finds it through the ``harness`` entry point."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--quiet",
         "--target", str(target), str(PLUGIN_DIR)],
        check=True, timeout=300,
    )
    probe = (
        "import json, importlib.metadata as md, sys\n"
        f"dists = [d for d in md.distributions(path=[{str(target)!r}])]\n"
        "eps = [(e.name, e.value) for d in dists for e in d.entry_points if e.group == 'harness']\n"
        "from harness.core.plugin_manager import build_registry, make_manager\n"
        "reg = build_registry(*make_manager())\n"
        "print(json.dumps({'dists': [d.metadata['Name'] for d in dists], 'eps': eps,\n"
        "                  'owners': {n: reg.strategies.owners.get(n) for n in ('gptqmodel', 'autogptq')}}))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["dists"] == ["harness-gptqmodel"]
    assert found["eps"] == [["gptqmodel", "harness_gptqmodel.plugin"]]
    assert found["owners"] == {"gptqmodel": "gptqmodel", "autogptq": "gptqmodel"}


@pytest.mark.slow
@pytest.mark.skipif(not HAS_GPTQMODEL, reason="gptqmodel is not installed here (see the README)")
def test_gptqmodel_quantizes_tiny_arith_to_4bit(registry, tmp_path, monkeypatch):
    """A real 4-bit GPTQ through gptqmodel: fewer bytes, a loadable model that still answers like the original."""
    import torch

    from harness.base.model import load_model, load_tokenizer, resolve_model
    from harness.core.prompts import get_template

    source = resolve_model("tiny-arith").source
    tokenizer = load_tokenizer(source)
    template = get_template("boxed")
    items = registry.benchmarks.get("arith").load("train")
    calibration = [template.render(p.problem, tokenizer) + (p.solution or p.answer)
                   for p in random.Random(0).sample(items, 32)]
    strategy = registry.strategies.get("gptqmodel")
    ctx = QuantContext(spec=strategy.spec(4), options=strategy.make_options({"num_samples": "32", "max_length": "128"}),
                       tokenizer=tokenizer, calibration=calibration)
    out = tmp_path / "entry"
    out.mkdir()
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    report = strategy.quantize(Path(source), out, ctx)
    assert Path.cwd() == workdir and not any(workdir.iterdir())  # gptqmodel's ./logs went into out
    assert report.weight_bytes <= 0.35 * report.fp_bytes
    assert report.versions["gptqmodel"].startswith("7.")
    assert json.loads((out / "quantize_config.json").read_text())["bits"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "entry"]
    assert any((out / "logs").iterdir())

    model = strategy.load(out, "cpu")
    assert type(model.model.layers[0].mlp.down_proj).__name__ == "TorchLinear"
    prompts = [template.render(p.problem, tokenizer) for p in registry.benchmarks.get("arith").load("test")[:8]]
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    reference = load_model(source, "cpu", dtype=torch.bfloat16)
    with torch.no_grad():
        quantized = model(**batch).logits.float()[:, -1]
        full = reference(**batch).logits.float()[:, -1]
    # 4-bit changes the logits but keeps the model: next-token choices mostly agree with full precision
    assert not torch.equal(quantized, full)
    assert (quantized.argmax(-1) == full.argmax(-1)).float().mean().item() >= 0.75


@pytest.mark.slow
@pytest.mark.skipif(not HAS_GPTQMODEL, reason="gptqmodel is not installed here (see the README)")
def test_gptqmodel_group_size_not_dividing_a_layer_is_refused(registry, tmp_path):
    from harness.base.model import load_tokenizer, resolve_model

    source = resolve_model("tiny-arith").source
    strategy = registry.strategies.get("gptqmodel")
    ctx = QuantContext(spec=strategy.spec(4), options=strategy.make_options({"group_size": "100"}),
                       tokenizer=load_tokenizer(source), calibration=["What is 1 + 1? \\boxed{2}"] * 4)
    with pytest.raises(UserError, match=r"layer model\.layers\.0\.self_attn\.q_proj has 256 input features"):
        strategy.quantize(Path(source), tmp_path / "out", ctx)
    assert not (tmp_path / "out").exists()
