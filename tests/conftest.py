"""Shared fixtures: an isolated store and cache per test, the shared data folder, the tiny model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# The divergence stage evaluates each quantized run's reference too; the tests about it turn it on, the
# rest check one run each (set before the harness is imported, so every process of the suite inherits it).
os.environ.setdefault("HARNESS_DIVERGENCE", "0")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test gets its own store and artifact cache; nothing touches the user's."""
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HARNESS_STORE", str(tmp_path / "results.db"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    from harness.core.plugin_manager import reset_registry

    reset_registry()
    saved = dict(os.environ)
    yield
    reset_registry()
    if os.environ != saved:  # an in-process CLI call sets the thread choice (--threads) for its children: undone
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def install_plugin(monkeypatch):
    """``install_plugin(plugin, name)``: the process registry as the installed entry points make it,
    plus ``plugin`` (defined in the test), as if a third party had installed it."""

    def install(plugin: object, name: str):
        from harness.core import plugin_manager as plugins

        pm, failures = plugins.make_manager()
        pm.register(plugin, name=name)
        registry = plugins.build_registry(pm, failures)
        monkeypatch.setattr(plugins, "_REGISTRY", registry)
        return registry

    return install


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only ``shared/`` folder beside the checkout (or $HARNESS_SHARED_DIR)."""
    path = Path(os.environ.get("HARNESS_SHARED_DIR", REPO.parent / "shared"))
    if not path.is_dir():
        pytest.skip(f"shared data folder not found at {path}")
    return path


@pytest.fixture(scope="session")
def benchmarks_dir(shared_dir) -> Path:
    path = shared_dir / "benchmarks"
    if not path.is_dir():
        pytest.skip(f"no benchmarks folder in {shared_dir}")
    return path


@pytest.fixture(scope="session")
def tiny_dir() -> Path:
    """The shipped tiny-arith model directory."""
    from harness.base.model import resolve_model

    return Path(resolve_model("tiny-arith").source)


@pytest.fixture(scope="session")
def vllm_python() -> str:
    """The vLLM environment's interpreter (``HARNESS_VLLM_PYTHON``, or ``.venv-vllm`` beside the checkout); the
    tests that need it skip, saying where they looked, without one."""
    from harness.engines.vllm import candidates, find_python

    python = find_python(None)
    if python is None:
        pytest.skip("no vLLM environment: set HARNESS_VLLM_PYTHON or build .venv-vllm (looked at "
                    + "; ".join(p for _, p in candidates(None)) + ")")
    return python


@pytest.fixture(scope="session")
def tiny_vllm(vllm_python, tmp_path_factory):
    """One vLLM server for tiny-arith in full precision, as a harness run with ``--engine vllm`` starts it, shared
    by every test that needs no other (a start costs ~40 s on two cores, most of it three processes importing
    vLLM). Started with the thread choice the harness's default leaves in the environment on a busy machine (one
    thread: OMP_NUM_THREADS=MKL_NUM_THREADS=1, no HARNESS_THREADS: not the user's --threads) and no binding of
    the user's, so the tests see the engine's own choice of cores. An idle server uses no CPU."""
    from harness.base.threads import ThreadChoice
    from harness.core.config import RunConfig
    from harness.core.plugin_manager import get_registry
    from harness.engines.vllm import BIND_VAR, RESERVED_VAR, VLLMEngine
    from harness.runs.evaluate import engine_settings
    from harness.runs.planning import plan

    # float32 as hf computes (the agreement and scoring tests compare with it); the engine's own CPU default is
    # the dtype measured faster on the CPU class (bfloat16 on AVX-512)
    run_plan = plan(RunConfig(strategy="none", device="cpu", engine="vllm", engine_opts=(("dtype", "float32"),),
                              engine_python=vllm_python), get_registry())
    settings = engine_settings(run_plan)
    settings.extra["log_dir"] = str(tmp_path_factory.mktemp("tiny-vllm"))
    with pytest.MonkeyPatch.context() as env:
        env.delenv(BIND_VAR, raising=False)
        env.delenv(RESERVED_VAR, raising=False)
        env.delenv("HARNESS_THREADS", raising=False)  # an explicit --threads N binds N cores: not the default
        for var, value in ThreadChoice(1, None, "usable cores", adaptive=True).environment().items():
            env.setenv(var, value)
        session = VLLMEngine().start(Path(run_plan.model.source), settings)
    with session:
        yield session
