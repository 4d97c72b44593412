"""Seams with libraries (harness/compat) and the public plugin API (harness/api.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from harness.base.errors import UserError
from harness.compat import Seam, seams

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("seam", seams(), ids=lambda s: s.library)
def test_every_seam_accepts_the_installed_version(seam):
    if seam.installed() is None:
        pytest.skip(f"{seam.library} is not installed")
    assert seam.require() == seam.installed()
    assert Seam(seam.library, seam.written_against, seam.supported, seam.what).require()
    # the version a seam was written against is inside the range it claims
    from packaging.specifiers import SpecifierSet

    assert seam.written_against in SpecifierSet(seam.supported)


def test_a_seam_refuses_an_unknown_version_in_one_line():
    seam = Seam("pluggy", "0.1.0", ">=0.1,<0.2", "a test seam")
    with pytest.raises(UserError) as err:
        seam.require()
    text = str(err.value)
    assert "pluggy" in text and ">=0.1,<0.2" in text and "0.1.0" in text and "\n" not in text


def test_a_seam_names_a_missing_library():
    with pytest.raises(UserError, match="no-such-dist-xyz is not installed"):
        Seam("no-such-dist-xyz", "1.0", ">=1", "nothing").require()


def test_the_awq_guard_refuses_an_llmcompressor_it_does_not_know(monkeypatch):
    import torch

    from harness.compat import llmcompressor as seam_module

    if torch.accelerator.is_available():
        pytest.skip("the guard is a no-op where an accelerator exists")
    monkeypatch.setattr(seam_module, "SEAM", Seam("llmcompressor", "0.14.0.1", ">=9", seam_module.SEAM.what))
    with pytest.raises(UserError, match="llmcompressor .* is not a version the harness knows"):
        with seam_module.cpu_pin_memory_guard():
            pass


def test_the_awq_guard_patches_only_inside_and_restores():
    import torch
    from llmcompressor.pipelines.cache import IntermediatesCache

    from harness.compat.llmcompressor import cpu_pin_memory_guard

    original = IntermediatesCache.__dict__["pin_memory"]
    with cpu_pin_memory_guard():
        if not torch.accelerator.is_available():
            assert IntermediatesCache.__dict__["pin_memory"] is not original
    assert IntermediatesCache.__dict__["pin_memory"] is original


def _harness_imports(folder: Path) -> set[str]:
    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "harness":
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names if a.name.split(".")[0] == "harness")
    return names


def test_the_gptqmodel_plugin_keeps_to_the_public_api():
    used = _harness_imports(REPO / "plugins" / "harness-gptqmodel" / "harness_gptqmodel")
    assert used == {"harness.api"}, f"the plugin imports harness internals: {sorted(used - {'harness.api'})}"


#: what a built-in engine may import besides harness.api: the package root (hookimpl), its own package, and
#: the layers under the interfaces (base, compat, toolkit), never the interfaces' own modules in harness.core
ENGINE_IMPORTS = ("harness", "harness.api", "harness.base", "harness.compat", "harness.toolkit", "harness.engines")


def test_the_public_api_exports_every_plugin_interface_engines_included():
    import harness.api as api
    from harness.core import hookspecs

    for name in ("Engine", "Session", "EngineSettings", "Completion", "OnBatch", "ArtifactFormat", "Benchmark",
                 "Problem", "Executor", "Job", "Run", "Strategy", "Trainer", "artifact_format", "quant_method"):
        assert name in api.__all__, name
    # the base class of every kind a hook registers is public
    registry_bases = {"Strategy", "Trainer", "Benchmark", "Executor", "Engine", "ArtifactFormat"}
    assert registry_bases <= set(api.__all__)
    assert [n for n in dir(hookspecs) if n.startswith("register_")]  # one hook per kind, documented there


def test_the_builtin_engines_keep_to_the_public_api():
    """An engine plugin is written against harness.api, like a third party's: the built-ins show that it suffices."""
    used = _harness_imports(REPO / "harness" / "engines")
    assert "harness.api" in used
    inside = [m for m in used if not any(m == ok or m.startswith(ok + ".") for ok in ENGINE_IMPORTS)]
    assert inside == [], f"the engines import harness internals: {sorted(inside)}"
    assert not [m for m in used if m.startswith("harness.core")]


def test_the_public_api_exports_what_it_lists():
    import harness.api as api

    missing = [name for name in api.__all__ if not hasattr(api, name)]
    assert not missing
    assert api.hookimpl is __import__("harness").hookimpl


def test_no_private_library_access_outside_compat():
    """Private attributes of other libraries are read only in harness/compat (one seam per library)."""
    offenders = []
    for folder in ("harness", "strategies", "benchmarks", "leaderboard"):
        for path in (REPO / folder).rglob("*.py"):
            if "compat" in path.parts:
                continue
            text = path.read_text()
            for marker in ("._private", "IntermediatesCache.pin_memory ="):
                if marker in text:
                    offenders.append(f"{path.relative_to(REPO)}: {marker}")
    assert not offenders


# -- tqdm ------------------------------------------------------------------------------------------


def test_the_tqdm_seam_silences_every_bar_and_is_idempotent():
    import io

    from tqdm import std, tqdm

    from harness.compat.tqdm import silence_bars

    assert silence_bars() is True
    patched = std.tqdm.__init__
    assert silence_bars() is True and std.tqdm.__init__ is patched  # a second call wraps nothing again
    out = io.StringIO()
    for _ in tqdm(range(3), desc="Applying quantization config", disable=False, file=out):
        pass
    assert out.getvalue() == ""


def test_the_tqdm_seam_leaves_an_unknown_tqdm_alone_and_says_so(monkeypatch):
    from tqdm import std

    from harness.compat import tqdm as seam_module

    monkeypatch.setattr(seam_module, "SEAM", Seam("tqdm", "99.0", ">=99", seam_module.SEAM.what))
    before = std.tqdm.__init__
    with pytest.warns(seam_module.SeamSkipped, match="progress bars stay on: tqdm .* is not a version the harness"):
        assert seam_module.silence_bars() is False
    assert std.tqdm.__init__ is before


def test_quiet_patches_tqdm_only_through_its_seam():
    tree = ast.parse((REPO / "harness" / "base" / "quiet.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not {m for m in imported if m.split(".")[0] == "tqdm"}
    assert "harness.compat.tqdm" in imported
    assigned = [t for n in ast.walk(tree) if isinstance(n, ast.Assign) for t in n.targets]
    assert not [t for t in assigned if isinstance(t, ast.Attribute)]  # it sets no library's attribute
