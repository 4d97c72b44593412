"""tiny-arith: shipped, loadable, sized for group-128 quantizers, and rebuilt deterministically."""

from __future__ import annotations

import json

import pytest

from harness.base.model import resolve_model


def test_shipped_model_is_small_and_quantizer_friendly(tiny_dir):
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(tiny_dir)
    assert cfg.model_type == "qwen3"
    assert cfg.hidden_size % 128 == 0 and cfg.intermediate_size % 128 == 0
    assert (tiny_dir / "model.safetensors").stat().st_size < 20 * 2**20
    recipe = json.loads((tiny_dir / "recipe.json").read_text())
    assert recipe["parameters"] < 5_000_000


def test_resolve_identity_tracks_weights():
    ref = resolve_model("tiny-arith")
    assert ref.identity.startswith("tiny-arith:") and ref.is_local


def test_tokenizer_splits_digits(tiny_dir):
    from harness.base.model import load_tokenizer

    tok = load_tokenizer(tiny_dir)
    assert tok.tokenize("12345") == ["1", "2", "3", "4", "5"]
    assert tok.padding_side == "left"


@pytest.mark.slow
def test_rebuild_is_deterministic(tmp_path):
    from safetensors.torch import load_file

    from harness.runs.tiny_recipe import TinyRecipe, build

    a = build(tmp_path / "a", TinyRecipe(steps=3), progress=False)
    b = build(tmp_path / "b", TinyRecipe(steps=3), progress=False)
    wa, wb = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert wa.keys() == wb.keys()
    assert all((wa[k] == wb[k]).all() for k in wa)
    assert (tmp_path / "a" / "tokenizer.json").read_text() == (tmp_path / "b" / "tokenizer.json").read_text()
    assert a["final_loss"] == b["final_loss"]
