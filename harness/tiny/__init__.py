"""The embedded models (package data, rebuilt by ``harness tiny build --model NAME``).

``tiny-arith`` is the default model: arithmetic in five levels, robust to low bits.
``tiny-reason`` is the test bed for what tiny-arith cannot show: multi-step
problems (the ``chain`` benchmark) whose solutions outgrow a short completion
budget, on a narrow model (hidden 128, 6 layers, 1.2M parameters) trained to use
its capacity, so 2-bit quantization and short budgets cost it accuracy (its
measured figures are on the published tiny-reason study page).

One table, :data:`MODELS`, says for each name where its weights are, which
benchmark it was trained for and how it is built; the model resolver, the CLI
and the tests read it, nothing else names them. An embedded model's benchmark is
the default of its runs' ``--benchmarks`` and ``--train-data``
(:func:`harness.core.resolve.home_benchmark`).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from harness.base.errors import UnknownNameError

#: the default model's name
NAME = "tiny-arith"


@dataclass(frozen=True)
class EmbeddedModel:
    """One model shipped in the package: its name, weights folder, home benchmark and recipe."""

    name: str
    folder: str  # under harness/tiny/
    benchmark: str  # the benchmark it is trained on and evaluated with (its train split is the RL data)
    description: str
    #: fields of the build recipe (:class:`harness.runs.tiny_recipe.TinyRecipe`) that differ from tiny-arith's
    recipe_overrides: tuple[tuple[str, object], ...] = ()

    def weights_dir(self) -> Path:
        return Path(str(resources.files("harness.tiny").joinpath(self.folder)))


MODELS: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel(
            name="tiny-arith",
            folder="weights",
            benchmark="arith",
            description="3.3M-parameter Qwen3 (hidden 256, 4 layers): one- and two-step arithmetic",
        ),
        EmbeddedModel(
            name="tiny-reason",
            folder="weights-reason",
            benchmark="chain",
            description="1.2M-parameter Qwen3 (hidden 128, 6 layers): chained operations on a carried value",
            recipe_overrides=(
                ("hidden_size", 128), ("intermediate_size", 384), ("layers", 6),
                ("heads", 4), ("kv_heads", 2), ("head_dim", 32),
                ("steps", 1200), ("batch_size", 32), ("lr", 2e-3), ("warmup", 30), ("batch_by_level", True),
                ("formats", {"boxed": 0.75, "raw": 0.2, "plain": 0.05}),
            ),
        ),
    )
}


def get(name: str) -> EmbeddedModel:
    """The embedded model ``name``; an unknown name is a user error listing the shipped ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownNameError("embedded model", name, MODELS) from None


def weights_dir(name: str = NAME) -> Path:
    """The shipped model directory (config, safetensors, tokenizer) of embedded model ``name``."""
    return get(name).weights_dir()


def embedded_tokenizer(model_dir: Path) -> str | None:
    """The embedded model whose tokenizer ``model_dir`` carries (a trained checkpoint keeps its base's), or None.

    Compared by the content of ``tokenizer.json``: a tool that must know the tokenizer's family (llama.cpp's
    converter, which cannot recognise a tokenizer trained here) asks this instead of trusting a folder's name."""
    try:
        text = (Path(model_dir) / "tokenizer.json").read_bytes()
    except OSError:
        return None
    for model in MODELS.values():
        try:
            if (model.weights_dir() / "tokenizer.json").read_bytes() == text:
                return model.name
        except OSError:
            continue
    return None
