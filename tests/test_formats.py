"""Artifact formats are plugins: each recognises its own checkpoints, and a new one needs no edit of core;
engines declare which formats they run and whether they run a checkpoint at all, naming no other engine."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from harness import hookimpl
from harness.api import ArtifactFormat, Engine, artifact_format
from harness.base.errors import UserError
from harness.core.plugin_manager import PluginLoadWarning, build_registry, get_registry, make_manager


def checkpoint(root: Path, quant: dict | None = None, *, key: str = "quantization_config",
               files: tuple[str, ...] = ()) -> Path:
    """A checkpoint folder as far as format detection reads one: ``config.json`` and file names."""
    root.mkdir(parents=True, exist_ok=True)
    config = {"model_type": "qwen2"} | ({key: quant} if quant is not None else {})
    (root / "config.json").write_text(json.dumps(config))
    for name in files:
        (root / name).write_text("{}")
    return root


def ct(weights: dict, acts: dict | None = None, **extra) -> dict:
    """A compressed-tensors quantization config with one config group."""
    group = {"targets": ["Linear"], "weights": weights, "input_activations": acts}
    return {"quant_method": "compressed-tensors", "format": "pack-quantized", "config_groups": {"group_0": group},
            **extra}


W4G = {"num_bits": 4, "strategy": "group", "group_size": 128}
W8C = {"num_bits": 8, "strategy": "channel"}
A8 = {"num_bits": 8, "dynamic": True}


@pytest.mark.parametrize("quant, files, expected", [
    (None, (), "transformers"),
    ({"quant_method": "bitsandbytes", "load_in_4bit": True}, (), "bitsandbytes"),
    ({"quant_method": "bitsandbytes", "load_in_4bit": True}, ("adapter_config.json",), "peft-adapter"),
    (ct(W4G), (), "compressed-tensors"),
    (ct(W8C, A8), (), "compressed-tensors-w8a8"),
    (ct({**W8C, "strategy": "group"}, A8), (), "compressed-tensors-w8a8-grouped"),
    (ct(W4G, A8), (), "compressed-tensors-w4a8"),
    (ct(W4G, {"num_bits": 4}), (), "compressed-tensors-int4-activations"),
    (ct({"num_bits": 3, "strategy": "group"}), (), "compressed-tensors-sub4-weights"),
    (ct(W4G, kv_cache_scheme={"num_bits": 8}), (), "compressed-tensors-int-kv"),
    (ct(W4G, transform_config={"config_groups": {}}), (), "compressed-tensors-transforms"),
    # a method no registered format describes is named by its config, so an engine may still declare it
    ({"quant_method": "gptq", "bits": 4}, (), "gptq"),
])
def test_the_builtin_formats_recognise_their_checkpoints(tmp_path, quant, files, expected):
    model_dir = checkpoint(tmp_path / "ckpt", quant, files=files)
    assert artifact_format(model_dir) == expected  # the process's registered formats
    assert artifact_format(model_dir, get_registry().formats) == expected


def test_compression_config_is_read_like_quantization_config(tmp_path):
    model_dir = checkpoint(tmp_path / "ckpt", ct(W8C, A8), key="compression_config")
    assert artifact_format(model_dir) == "compressed-tensors-w8a8"


def test_the_formats_are_a_plugin_and_every_declared_format_is_registered():
    registry = get_registry()
    # the built-in formats, and GGUF, which the gguf strategy's plugin registers beside the strategy that writes it
    assert {registry.formats.owners[name] for name in registry.formats.names()} == {"formats", "gguf"}
    declared = {s.artifact_format for s in registry.strategies}
    assert declared <= set(registry.formats.names())
    for engine in registry.engines:
        assert all(f == "*" or f in registry.formats for f in engine.formats), engine.name


# -- a new format from a plugin, with no edit of core ----------------------------------------------


class GGUF(ArtifactFormat):
    name = "gguf-q4"
    description = "a llama.cpp GGUF file with 4-bit blocks"
    #: a GGUF folder keeps the base model's plain config.json, which "transformers" also claims; a refinement of
    #: the built-in "gguf" format (a third party's reading of 4-bit files), so asked before it
    priority = 40

    def recognises(self, model_dir: Path, config: dict) -> bool:
        return any(model_dir.glob("*.gguf"))


class LlamaCpp(Engine):
    name = "llamacpp-q4"
    description = "a third party's llama.cpp server on a 4-bit GGUF file"
    formats = ("gguf-q4",)


class GGUFPlugin:
    @hookimpl
    def register_formats(self, register):
        register(GGUF())

    @hookimpl
    def register_engines(self, register):
        register(LlamaCpp())


def registry_with(*plugins):
    pm, failures = make_manager(load_entry_points=True)
    for i, plugin in enumerate(plugins):
        pm.register(plugin, name=f"inline{i}")
    return build_registry(pm, failures)


def test_an_inline_plugin_adds_a_format_and_the_engine_that_runs_it(tmp_path):
    registry = registry_with(GGUFPlugin())
    assert registry.formats.owners["gguf-q4"] == "inline0"
    model_dir = checkpoint(tmp_path / "ckpt", files=("model-q4_0.gguf",))
    fmt = artifact_format(model_dir, registry.formats)
    assert fmt == "gguf-q4"
    assert artifact_format(checkpoint(tmp_path / "plain"), registry.formats) == "transformers"
    others = list(registry.engines)
    registry.engines.get("llamacpp-q4").check(fmt, "cpu", others=others)  # accepted: no exception
    with pytest.raises(UserError) as refused:
        registry.engines.get("vllm").check(fmt, "cpu", others=others, known_formats=registry.formats)
    text = str(refused.value)
    assert "cannot run 'gguf-q4' artifacts (a llama.cpp GGUF file with 4-bit blocks)" in text
    assert "engines that can: hf, llamacpp-q4" in text  # hf runs "*"; openai runs no checkpoint itself


def test_a_higher_priority_format_refines_a_builtin_one(tmp_path):
    """As vLLM's ``override_quantization_method``: a plugin claims a subset of a built-in's checkpoints."""

    class FP8(ArtifactFormat):
        name = "vendor-fp8"
        description = "a vendor's reading of compressed-tensors float8 weights"
        priority = 1

        def recognises(self, model_dir, config):
            groups = (config.get("quantization_config") or {}).get("config_groups") or {}
            return any((g.get("weights") or {}).get("type") == "float" for g in groups.values())

    class Plugin:
        @hookimpl
        def register_formats(self, register):
            register(FP8())

    registry = registry_with(Plugin())
    fp8 = checkpoint(tmp_path / "fp8", ct({"num_bits": 8, "type": "float", "strategy": "channel"}))
    int4 = checkpoint(tmp_path / "int4", ct(W4G))
    assert artifact_format(fp8, registry.formats) == "vendor-fp8"
    assert artifact_format(int4, registry.formats) == "compressed-tensors"
    assert artifact_format(fp8) == "compressed-tensors-fp8-a16"  # the process registry: the built-in FP8 format


def test_a_plugin_claiming_a_builtin_format_name_fails_whole():
    class Impostor(ArtifactFormat):
        name = "transformers"

        def recognises(self, model_dir, config):
            return True

    class Plugin:
        @hookimpl
        def register_formats(self, register):
            register(Impostor())

        @hookimpl
        def register_engines(self, register):
            register(LlamaCpp())

    with pytest.warns(PluginLoadWarning, match="format 'transformers' is registered by two plugins"):
        registry = registry_with(Plugin())
    assert registry.formats.owners["transformers"] == "formats"
    assert "llamacpp-q4" not in registry.engines  # the plugin failed whole


def test_a_format_that_is_not_an_artifact_format_is_refused():
    class Plugin:
        @hookimpl
        def register_formats(self, register):
            register(LlamaCpp())

    with pytest.warns(PluginLoadWarning, match="not a harness.core.engine.ArtifactFormat"):
        registry = registry_with(Plugin())
    assert "llamacpp" not in registry.formats and "inline0" in registry.failures


# -- engines declare what they run, and name no other engine -------------------------------------


def test_an_engine_that_runs_no_checkpoint_is_never_offered_by_a_refusal(monkeypatch):
    """Engines read each other's declared ``runs_checkpoint``, never each other's names."""
    from harness.engines import vllm

    class Remote(Engine):  # like openai: any format, since it cannot see the checkpoint
        name = "remote"
        formats = ("*",)
        runs_checkpoint = False

    registry = get_registry()
    assert registry.engines.get("openai").runs_checkpoint is False
    assert registry.engines.get("hf").runs_checkpoint and registry.engines.get("vllm").runs_checkpoint
    others = [registry.engines.get("hf"), Remote(), registry.engines.get("vllm")]
    engine = registry.engines.get("vllm")
    monkeypatch.setattr(type(engine), "unavailable_reason", lambda self, settings=None: None)
    with pytest.raises(UserError) as no:
        engine.check("bitsandbytes", "cpu", others=others, known_formats=registry.formats)
    assert "engines that can: hf" in str(no.value) and "remote" not in str(no.value)
    assert "(bitsandbytes LLM.int8 / NF4 / FP4 weights)" in str(no.value)  # the registered format's description
    monkeypatch.setattr(vllm, "cpu_wna16_reason", lambda: "no AVX-512 here")
    with pytest.raises(UserError) as cpu:
        engine.check("compressed-tensors", "cpu", others=others)
    assert "no AVX-512 here; engines that can: hf (or vllm on a GPU" in str(cpu.value)
    engine.check("compressed-tensors", "cuda", others=others)  # the CPU kernel does not matter on a GPU


def test_engines_name_no_other_engine():
    """No engine module holds another engine's name as a string: what they can run is declared."""
    engines = get_registry().engines
    for path in (Path(__file__).parents[1] / "harness" / "engines").glob("*.py"):
        own = {e.name for e in engines if type(e).__module__ == f"harness.engines.{path.stem}"}
        named = {n.value for n in ast.walk(ast.parse(path.read_text()))
                 if isinstance(n, ast.Constant) and n.value in set(engines.names()) - own}
        assert named == set(), f"{path.name} names {sorted(named)}"
