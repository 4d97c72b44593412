"""Each engine's CPU dtype, chosen per CPU class by measurement (issue 28, item 2): the class a CPU's flags
give, the engines' tables, the dtype in the run's identity, stated in the profile and the run summary, and
latency fronts that never mix dtypes."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from leaderboard_data import GOOD, add_run

from harness.base import cpu_dtype
from harness.base.cpu_dtype import CpuClass, DtypeChoice, choose, cpu_class, vector_extensions
from harness.cli import cli
from harness.core.config import RunConfig
from harness.core.plugin_manager import get_registry
from harness.engines.vllm import VLLMEngine, VLLMOptions
from harness.runs.store import Store

AVX2 = frozenset({"sse4_2", "avx", "avx2", "fma", "f16c"})
AVX512 = AVX2 | {"avx512f", "avx512bw", "avx512vl"}
AMX = AVX512 | {"avx512_bf16", "amx_tile", "amx_bf16"}


@pytest.fixture
def cpu(monkeypatch):
    """Pretend to run on a CPU with the given flags."""
    def use(flags: frozenset[str]) -> None:
        monkeypatch.setattr(cpu_dtype, "cpu_features", lambda: flags)
    return use


def test_a_cpu_class_is_its_best_flag():
    assert cpu_class(AVX2) is CpuClass.AVX2
    assert cpu_class(AVX512) is CpuClass.AVX512
    assert cpu_class(AVX512 | {"avx512_bf16"}) is CpuClass.AVX512_BF16
    assert cpu_class(AMX) is CpuClass.AMX
    assert cpu_class(frozenset({"sse2"})) is CpuClass.OTHER and cpu_class(frozenset()) is CpuClass.OTHER
    assert vector_extensions(AMX) == ["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_bf16",
                                      "amx_tile", "amx_bf16"]


def test_a_class_without_a_row_takes_the_next_lower_one():
    table = {CpuClass.AVX512: DtypeChoice("bfloat16", "fast"), CpuClass.AVX2: DtypeChoice("float32", "slow")}
    assert choose(table, CpuClass.AMX).dtype == "bfloat16", "a CPU with AMX has AVX-512 too"
    assert choose(table, CpuClass.AVX2).dtype == "float32"
    other = choose(table, CpuClass.OTHER)
    assert other.dtype == "float32" and "not measured" in other.reason


def test_vllm_computes_in_the_dtype_measured_faster_on_each_cpu_class(cpu):
    engine = VLLMEngine()
    cpu(AVX2)
    choice = engine.compute_dtype("cpu", VLLMOptions())
    assert choice.dtype == "float32" and "measured on avx2" in choice.reason
    cpu(AVX512)
    assert engine.compute_dtype("cpu", VLLMOptions()).dtype == "bfloat16"
    cpu(AMX)
    assert engine.compute_dtype("cpu", VLLMOptions()).dtype == "bfloat16", "bf16 arithmetic is no slower"
    cpu(AVX2)
    assert engine.compute_dtype("cpu", VLLMOptions(dtype="bfloat16")) == DtypeChoice("bfloat16", "--engine-opt dtype")
    wna16 = engine.compute_dtype("cpu", VLLMOptions(), "compressed-tensors")
    assert wna16.dtype == "bfloat16" and "kernel" in wna16.reason, "the W4A16 CPU kernel takes bf16 activations"
    assert engine.compute_dtype("cuda:0", VLLMOptions()).dtype == "bfloat16"


def test_hf_computes_in_float32_on_every_cpu_class(cpu):
    hf = get_registry().engines.get("hf")
    for flags in (AVX2, AVX512, AMX):
        cpu(flags)
        assert hf.compute_dtype("cpu").dtype == "float32"
    cpu(AVX2)
    assert "measured on avx2" in hf.compute_dtype("cpu").reason
    cpu(AMX)
    assert "not measured" in hf.compute_dtype("cpu").reason


def test_the_engines_dtype_is_part_of_the_run_id(cpu, monkeypatch):
    """vLLM on AVX2 keeps the id every stored CPU run has (float32); on AVX-512 it computes in bf16, another
    experiment with another id; an explicit dtype option says the same."""
    from harness.runs.planning import plan

    monkeypatch.setattr(VLLMEngine, "unavailable_reason", lambda self, settings=None: None)
    registry = get_registry()

    def planned(**kw) -> RunConfig:
        return plan(RunConfig(device="cpu", limit=2, engine="vllm", **kw), registry).config

    cpu(AVX2)
    fp32 = planned()
    assert fp32.compute == "cpu:float32" and fp32.run_id == RunConfig(limit=2, bits=16, engine="vllm").run_id
    cpu(AVX512)
    bf16 = planned()
    assert bf16.compute == "cpu:bfloat16" and bf16.run_id != fp32.run_id
    cpu(AVX2)
    assert planned(engine_opts=(("dtype", "bfloat16"),)).compute == "cpu:bfloat16"


def test_profile_and_summary_state_the_dtype_and_the_cpu(tmp_path):
    result = CliRunner().invoke(cli, ["run", "--limit", "2", "--json", "--no-divergence",
                                      "--store", str(tmp_path / "r.db")])
    assert result.exit_code == 0, result.output
    prof = json.loads(result.output[result.output.index("{"):])["profile"]
    assert prof["compute_dtype"] == "float32"
    assert prof["compute_dtype_reason"] == get_registry().engines.get("hf").compute_dtype("cpu").reason
    assert prof["cpu_extensions"] == " ".join(vector_extensions())
    shown = CliRunner().invoke(cli, ["show", json.loads(result.output[result.output.index("{"):])["run_id"],
                                     "--store", str(tmp_path / "r.db")])
    assert shown.exit_code == 0 and "computed in float32 (" in shown.output


def test_latency_fronts_keep_dtypes_apart(tmp_path):
    """Two vLLM rows, one in fp32 and one in bf16: each is on a front of its own dtype, named in the legend."""
    from harness.leaderboard.generate import generate

    store = Store(tmp_path / "r.db")
    vllm = {"engine": "vllm", "engine_version": "vllm 0.32.0"}
    add_run(store, correct=GOOD, weight_bytes=13_000_000, engine="vllm",
            profile_extra={**vllm, "bs1_decode_tokens_per_s": 100.0, "compute_dtype": "float32"})
    add_run(store, strategy="rtn", bits=4, correct=GOOD, weight_bytes=2_700_000, engine="vllm",
            profile_extra={**vllm, "bs1_decode_tokens_per_s": 50.0, "compute_dtype": "bfloat16"})
    store.close()
    result = generate(tmp_path / "r.db", tmp_path / "board")
    rows = {r["strategy"]: r for r in result["rows"]}
    assert rows["none"]["latency"]["compute_dtype"] == "float32"
    assert rows["rtn"]["latency"]["compute_dtype"] == "bfloat16"
    assert rows["rtn"]["latency_pareto"], "slower, but alone on the bf16 front: not compared with fp32"
    assert "dtype" in result["meta"]["latency_note"]
    md = (tmp_path / "board" / "leaderboard.md").read_text()
    assert "[vllm, cpu, bfloat16]" in md and "[vllm, cpu, float32]" in md
