"""``scripts/gpu_check.py``: one line and exit 2 without a GPU, its wheel list resolves here with sizes, a missing
wheel is named in one line, wheels are slimmed as listed, and its CPU dry run runs a step and prints the table.
On a machine with CUDA, the ``gpu`` test runs the whole check (skipped elsewhere)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("gpu_check", None)


def script(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


def cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(cuda(), reason="this machine has a GPU")
def test_without_a_gpu_one_line_and_exit_2():
    done = script()
    assert done.returncode == 2
    assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1
    assert "no CUDA GPU" in done.stderr and "--dry-run" in done.stderr


def test_unknown_step_is_one_line_exit_2():
    done = script("--dry-run", "--only", "eval,bogus")
    assert done.returncode == 2 and "unknown step bogus" in done.stderr and "gptq" in done.stderr


def test_the_wheel_list_resolves_here_with_sizes(gpu_check, tmp_path):
    """Every listed distribution is a wheel in a local folder or installed at its version here (the stack the
    harness resolves with); the found wheels fit the budget."""
    rows = gpu_check.resolve_wheels()
    assert [r["dist"] for r in rows] == [w.dist for w in gpu_check.WHEELS]
    for row in rows:
        assert row["found"] != "missing", row  # a wheel file here, or the distribution installed
        assert (row["bytes"] is None) == (row["path"] is None)
    assert sum(r["bytes"] or 0 for r in rows) <= gpu_check.MAX_WHEEL_BYTES
    table = gpu_check.wheel_table(rows)
    assert "trl" in table and "MiB" in table and "limit 64 MiB" in table


def fake_wheel(folder: Path, stem: str, members: dict[str, bytes]) -> Path:
    path = folder / f"{stem}-py3-none-any.whl"
    record = "".join(f"{name},sha256=x,{len(data)}\n" for name, data in members.items())
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
        z.writestr(f"{stem}.dist-info/RECORD", record)
    return path


def test_a_wheel_in_the_folder_is_found_slimmed_and_sized(gpu_check, tmp_path):
    bnb = next(w for w in gpu_check.WHEELS if w.dist == "bitsandbytes")
    members = {"bitsandbytes/__init__.py": b"x", "bitsandbytes/libbitsandbytes_cuda130.so": b"k" * 5000,
               "bitsandbytes/libbitsandbytes_cuda128.so": bytes(range(256)) * 400,
               "bitsandbytes/libbitsandbytes_rocm64.so": bytes(range(256)) * 400}
    path = fake_wheel(tmp_path, bnb.stem, members)
    assert gpu_check.find_wheel(bnb, [tmp_path]) == path
    predicted = gpu_check.slimmed_size(path, bnb.drop)
    assert predicted < path.stat().st_size
    gpu_check.slim_wheel(path, bnb.drop)
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        record = z.read(f"{bnb.stem}.dist-info/RECORD").decode()
    assert names == {"bitsandbytes/__init__.py", "bitsandbytes/libbitsandbytes_cuda130.so",
                     f"{bnb.stem}.dist-info/RECORD"}
    assert "cuda128" not in record and "rocm" not in record and "cuda130" in record
    assert abs(path.stat().st_size - predicted) < 512


def test_install_names_the_missing_wheels_in_one_line(gpu_check, tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "WHEEL_DIR", tmp_path)
    trl = next(w for w in gpu_check.WHEELS if w.dist == "trl")
    fake_wheel(tmp_path, trl.stem, {"trl/__init__.py": b""})
    reason = gpu_check.install_wheels()
    assert "\n" not in reason and "bitsandbytes==0.50.2" in reason and "trl==" not in reason
    assert "--fetch-wheels" in reason


def test_the_table_reads_a_run_record(gpu_check):
    record = {"status": "complete", "metrics": {"arith": {"accuracy": {"value": 0.25}}},
              "profile": {"weight_bytes": 3 * 2**20, "eval_peak_gpu_bytes": 40 * 2**20, "bs1_ttft_ms": 12.5,
                          "bs1_decode_tokens_per_s": 200.0, "kernels": ["Linear8bitLt"]}}
    row = gpu_check.figures(record, 9.0)
    assert row["peak_gpu_mib"] == 40 and row["ms_per_token"] == 5.0 and row["accuracy"] == 0.25
    text = gpu_check.table([("bnb8", "bitsandbytes LLM.int8", row), ("grpo", "one GRPO step", {"status": "skipped"})])
    header, rule, bnb8, grpo = text.splitlines()
    assert "peak GPU MiB" in header and "TTFT ms" in header and "ms/token" in header
    assert "40.0" in bnb8 and "12.5" in bnb8 and "5.00" in bnb8 and "skipped" in grpo


@pytest.mark.slow
def test_the_cpu_dry_run_runs_a_step_and_prints_the_table(tmp_path):
    out = tmp_path / "check.json"
    done = script("--dry-run", "--only", "bnb8", "--limit", "1", "--json", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(out.read_text())
    assert record["device"] == "cpu"
    step = record["steps"]["bnb8"]
    assert step["status"] == "complete" and step["weight_bytes"] > 0 and step["ttft_ms"] > 0
    assert "bnb8" in done.stdout and "ms/token" in done.stdout


@pytest.mark.gpu
@pytest.mark.skipif(not cuda(), reason="needs an NVIDIA GPU (CUDA)")
def test_the_gpu_check_on_a_gpu(tmp_path):
    out = tmp_path / "check.json"
    done = script("--no-install", "--json", str(out), timeout=9 * 60)
    print(done.stdout)
    record = json.loads(out.read_text())
    assert record["device"] == "cuda"
    assert record["steps"]["eval"]["peak_gpu_mib"] > 0


def test_fetching_asks_for_every_manylinux_tag_the_gpu_image_installs(gpu_check):
    """``pip download --platform`` takes tags literally: bitsandbytes 0.50.2 ships only ``manylinux_2_24``, so a
    list holding 2_28 and 2_17 alone found no wheel for it. Every glibc from 2.5 to the image's must be asked."""
    tags = gpu_check.platform_tags()
    for minor in range(5, gpu_check.GPU_IMAGE_GLIBC_MINOR + 1):
        assert f"manylinux_2_{minor}_x86_64" in tags
    assert f"manylinux_2_{gpu_check.GPU_IMAGE_GLIBC_MINOR + 1}_x86_64" not in tags  # the image may not have it
    assert "manylinux2014_x86_64" in tags
