"""``harness sweep --executor ray``: the same cells and results as the local executor, on a Ray instance.

One local Ray instance (2 CPUs) serves the whole module; the cells are tiny
(tiny-arith, 6 arith problems). The tests that need no running Ray (bad input)
come first.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.base.errors import UserError
from harness.cli import cli
from harness.runs.store import Store

ray = pytest.importorskip("ray")

from harness.executors.ray_tasks import PID_DIR_ENV  # noqa: E402 - only with ray installed

LIMIT = "6"

FOUR = """
name = "four"
[defaults]
model = "tiny-arith"
benchmarks = ["arith"]

[[cell]]
row = "full precision"

[[cell]]
row = "full precision, seed 1"   # shares its quantize stage with the row above: built once
seed = 1

[[cell]]
row = "rtn 8-bit"
strategy = "rtn"
bits = 8

[[cell]]
row = "rtn 4-bit"
strategy = "rtn"
bits = 4
"""

TWO = """
name = "two"
[defaults]
model = "tiny-arith"
benchmarks = ["arith"]
strategy = "rtn"
seed = 2   # not the runs of the other tests

[[cell]]
row = "rtn 8-bit"
bits = 8

[[cell]]
row = "rtn 4-bit"
bits = 4
"""

ONE = """
name = "one"
[[cell]]
model = "tiny-arith"
benchmarks = ["arith"]
strategy = "rtn"
seed = 2   # not the runs of the other tests
bits = 8
"""


@pytest.fixture
def tiny():
    from harness.base.model import resolve_model

    try:
        resolve_model("tiny-arith")
    except UserError as exc:
        pytest.skip(f"tiny-arith is not built: {exc}")


@pytest.fixture(scope="module")
def ray_instance(tmp_path_factory):
    """One local Ray instance for the module. Its workers inherit this environment (set before
    ``ray.init``): offline hub, one thread each, and a folder where each run task writes its pid."""
    pid_dir = tmp_path_factory.mktemp("ray-pids")
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
                            PID_DIR_ENV: str(pid_dir)}.items():
            mp.setenv(name, value)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            yield pid_dir
        finally:
            ray.shutdown()


def write(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def sweep(*args: str):
    return CliRunner().invoke(cli, ["sweep", *args], catch_exceptions=False)


def sweep_json(*args: str) -> tuple[int, dict]:
    result = sweep(*args, "--json")
    return result.exit_code, json.loads(result.stdout)


def stored(store: Store, run_ids: list[str]) -> dict[str, dict]:
    """What a comparison between stores looks at: metrics and per-sample rows of each run."""
    keys = ("benchmark", "problem_id", "sample", "completion", "predicted", "correct", "reward", "n_tokens")
    return {rid: {"metrics": store.metrics(rid), "samples": [{k: r[k] for k in keys} for r in store.samples(rid)]}
            for rid in run_ids}


# -- bad input (no Ray instance needed) ---------------------------------------------------------


def test_without_ray_the_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    result = CliRunner().invoke(cli, ["sweep", str(write(tmp_path, ONE)), "--executor", "ray"])
    assert result.exit_code == 2
    assert "pip install -e '.[ray]'" in result.output and len(result.output.strip().splitlines()) == 1


def test_no_cluster_at_the_address(tiny, tmp_path):
    result = CliRunner().invoke(cli, ["sweep", str(write(tmp_path, ONE)), "--executor", "ray",
                                      "--executor-opt", "address=127.0.0.1:1", "--limit", LIMIT])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: no Ray cluster answers at '127.0.0.1:1' (connection refused); start one with `ray start --head` "
        "and pass the address it prints (--executor-opt address=HOST:PORT), or address=auto on its head node"]


def test_shard_options_are_checked(tiny, tmp_path):
    path = str(write(tmp_path, ONE))
    too_many = CliRunner().invoke(cli, ["sweep", path, "--executor", "ray", "--executor-opt", "shards=7",
                                        "--limit", LIMIT])
    assert too_many.exit_code == 2
    assert "shards=7 is more than the 6 problems of benchmark 'arith' in cell 1" in too_many.output
    local = CliRunner().invoke(cli, ["sweep", path, "--executor-opt", "shards=2"])
    assert local.exit_code == 2 and "executor 'local'" in local.output and "shards" in local.output
    zero = CliRunner().invoke(cli, ["sweep", path, "--executor", "ray", "--executor-opt", "shards=0"])
    assert zero.exit_code == 2 and "shards must be >= 1, got 0" in zero.output
    assert Store().list_runs() == []


def _run_ids(report: dict) -> list[str]:
    return [c["run_id"] for c in report["cells"]]


def test_auto_cells_take_the_clusters_device_in_their_run_ids(tiny, tmp_path, monkeypatch):
    """On a cluster with GPUs, ``device = auto`` is CUDA where the cells run (each asks Ray for a GPU), so the
    driver plans and sends them as CUDA runs whatever this machine has: its ids are those its workers store."""
    from harness.executors import ray as ray_executor

    path = str(write(tmp_path, TWO))
    _, here = sweep_json(path, "--dry-run", "--limit", LIMIT)  # the local executor on this CPU-only machine
    _, explicit = sweep_json(path, "--dry-run", "--limit", LIMIT, "--executor", "ray", "--set", "device=cuda")
    _, local_ray = sweep_json(path, "--dry-run", "--limit", LIMIT, "--executor", "ray")  # this machine's devices
    monkeypatch.setattr(ray_executor.RayExecutorPlugin, "auto_device",
                        lambda self, options: ray_executor.device_for({"CPU": 16.0, "GPU": 2.0}))
    _, on_gpus = sweep_json(path, "--dry-run", "--limit", LIMIT, "--executor", "ray")
    assert _run_ids(local_ray) == _run_ids(here)
    assert _run_ids(on_gpus) == _run_ids(explicit) and set(_run_ids(on_gpus)).isdisjoint(_run_ids(here))
    assert ray_executor.device_for({"CPU": 16.0}) == "cpu"


@pytest.mark.slow
@pytest.mark.timeout(300)  # a head that never says it started must not hang the suite
def test_auto_device_asks_the_cluster_at_the_address(tmp_path, monkeypatch):
    """A real head node with one (declared) GPU and Ray's token authentication: without the token
    the driver is told what to set; with it, ``auto`` cells are planned as the CUDA runs they are there."""
    from harness.engines.server import free_port

    port = free_port()
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    # a home of its own: Ray keeps the token at ~/.ray/auth_token, and whether a head started without
    # RAY_AUTH_MODE asks for one depends on that file (one left there by any earlier Ray process turns it on); the
    # head is told to ask, explicitly, with a token of this home's
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home" / ".ray").mkdir(parents=True)
    (tmp_path / "home" / ".ray" / "auth_token").write_text(secrets.token_hex(32))  # as `ray get-auth-token --generate`
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    head = subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
                             f"--port={port}", "--num-cpus=1", "--num-gpus=1", "--include-dashboard=false",
                             f"--temp-dir={temp}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, env={**os.environ, "RAY_AUTH_MODE": "token"})
    try:
        said = []
        for line in head.stdout:  # the head is up once it says so
            said.append(line)
            if "Ray runtime started" in line:
                break
        else:
            pytest.fail(f"ray start --head exited ({head.wait()}): {''.join(said)[-2000:]}")
        path = str(write(tmp_path, TWO))
        on_head = [sys.executable, "-m", "harness.cli", "sweep", path, "--dry-run", "--json", "--limit", LIMIT,
                   "--executor", "ray", "--executor-opt", f"address=127.0.0.1:{port}"]
        env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
        # Ray retries a refused connection for ~20 s; two tries are enough to be refused
        refused = subprocess.run(on_head, capture_output=True, text=True, timeout=300,
                                 env={**env, "RAY_gcs_server_port_wait_time_s": "2"})
        assert refused.returncode == 2, refused.stderr[-2000:]
        assert "asks for its authentication token" in refused.stderr and "set RAY_AUTH_MODE=token" in refused.stderr
        planned = subprocess.run(on_head, capture_output=True, text=True, timeout=300,
                                 env={**env, "RAY_AUTH_MODE": "token"})
        assert planned.returncode == 0, planned.stderr[-2000:]
        _, explicit = sweep_json(path, "--dry-run", "--limit", LIMIT, "--executor", "ray", "--set", "device=cuda")
        _, here = sweep_json(path, "--dry-run", "--limit", LIMIT)
        assert _run_ids(json.loads(planned.stdout)) == _run_ids(explicit) != _run_ids(here)
    finally:  # the head's whole process group: SIGTERM, and SIGKILL after 5 s (its graceful stop takes ~30 s)
        for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 60)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(head.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                head.wait(timeout=grace)
                break
        shutil.rmtree(temp, ignore_errors=True)


# -- on a local Ray instance ---------------------------------------------------------------------


@pytest.mark.slow
def test_a_cell_that_needs_a_gpu_is_refused_before_anything_starts(tiny, tmp_path, ray_instance):
    before = set(os.listdir(ray_instance))
    result = CliRunner().invoke(cli, ["sweep", str(write(tmp_path, TWO)), "--executor", "ray", "--limit", LIMIT,
                                      "--set", "device=cuda"])
    assert result.exit_code == 2
    assert "the Ray cluster has no GPU, but cell 1 (tiny-arith base rtn W8A16): its device is 'cuda'" in result.output
    assert "cell 2 (tiny-arith base rtn W4A16)" in result.output
    assert Store().list_runs() == [] and set(os.listdir(ray_instance)) == before


@pytest.mark.slow
def test_four_cells_on_ray_match_the_local_executor_and_rerun_runs_nothing(tiny, tmp_path, ray_instance):
    path = str(write(tmp_path, FOUR))
    code, on_ray = sweep_json(path, "--limit", LIMIT, "--executor", "ray")
    assert code == 0, on_ray
    assert on_ray["counts"] == {"done": 4, "stored": 0, "failed": 0, "duplicate": 0, "pending": 0}
    ids = [c["run_id"] for c in on_ray["cells"]]
    store = Store()
    assert all(store.get_run(rid)["status"] == "complete" for rid in ids)
    assert store.get_run(ids[2])["artifacts"]["sweep"]["row"] == "rtn 8-bit"
    assert store.profile(ids[0])["eval_problems_per_s"] > 0
    assert not list((tmp_path / "cache" / "ray-stores").iterdir()), "the workers' stores are removed once imported"

    local_db = tmp_path / "local.db"
    code, local = sweep_json(path, "--limit", LIMIT, "--executor-opt", "isolate=false", "--store", str(local_db),
                             "--cache-dir", str(tmp_path / "local-cache"))
    assert code == 0 and [c["run_id"] for c in local["cells"]] == ids
    assert stored(store, ids) == stored(Store(local_db), ids)

    # the same sweep again runs no task: every cell is already stored
    pids = set(os.listdir(ray_instance))
    code, again = sweep_json(path, "--limit", LIMIT, "--executor", "ray")
    assert code == 0 and again["counts"]["stored"] == 4 and again["counts"]["done"] == 0
    assert set(os.listdir(ray_instance)) == pids


def _kill_first_new_task(pid_dir: Path, before: set[str], stop: threading.Event, killed: list[str]) -> None:
    """Test helper: SIGKILL the worker of the first run task that starts (once it is well into its cell)."""
    while not stop.is_set():
        new = sorted(set(os.listdir(pid_dir)) - before)
        if new:
            text = ""
            while not text and not stop.is_set():
                text = (pid_dir / new[0]).read_text()
            time.sleep(0.5)
            os.kill(int(text), signal.SIGKILL)
            killed.append(new[0])
            return
        time.sleep(0.05)


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_its_cell_stored_once(tiny, tmp_path, ray_instance):
    stop, killed = threading.Event(), []
    before = set(os.listdir(ray_instance))
    killer = threading.Thread(target=_kill_first_new_task, args=(ray_instance, before, stop, killed), daemon=True)
    killer.start()
    try:
        code, report = sweep_json(str(write(tmp_path, TWO)), "--limit", LIMIT, "--executor", "ray")
    finally:
        stop.set()
        killer.join()
    assert killed, "no run task started"
    assert code == 0, report
    assert report["counts"]["done"] == 2
    victim = killed[0].split(".")[0]
    attempts = [f for f in set(os.listdir(ray_instance)) - before if f.startswith(victim + ".")]
    assert len(attempts) >= 2, f"the killed task was not retried: {attempts}"
    store = Store()
    assert sorted(r["id"] for r in store.list_runs()) == sorted(c["run_id"] for c in report["cells"])
    for cell in report["cells"]:
        samples = store.samples(cell["run_id"])
        assert len(samples) == 6 and len({(s["problem_id"], s["sample"]) for s in samples}) == 6
        assert store.get_run(cell["run_id"])["status"] == "complete"


@pytest.mark.slow
def test_two_shards_give_what_one_worker_gives(tiny, tmp_path, ray_instance):
    path = str(write(tmp_path, ONE))
    code, sharded = sweep_json(path, "--limit", LIMIT, "--executor", "ray", "--executor-opt", "shards=2")
    assert code == 0, sharded
    code, whole = sweep_json(path, "--limit", LIMIT, "--executor-opt", "isolate=false",
                             "--store", str(tmp_path / "one.db"))
    assert code == 0
    (rid,) = [c["run_id"] for c in sharded["cells"]]
    assert [c["run_id"] for c in whole["cells"]] == [rid], "sharding does not change the run's id"
    store = Store()
    assert store.get_run(rid)["artifacts"]["shards"] == 2
    assert store.metrics(rid)["arith"]["problems"]["value"] == 6
    assert stored(store, [rid]) == stored(Store(tmp_path / "one.db"), [rid])


SHARED_CHECKPOINT = """
name = "shared-checkpoint"
[defaults]
model = "tiny-arith"
benchmarks = ["arith"]
trainer = "grpo"
max_steps = 1

[trainer_opts.grpo]   # one tiny step: 1 prompt x 4 completions of 16 tokens
num_generations = 4
per_device_train_batch_size = 4
max_completion_length = 16

[[cell]]
row = "GRPO"

[[cell]]
row = "GRPO + rtn 8-bit"
strategy = "rtn"
bits = 8
"""


@pytest.mark.slow
def test_a_checkpoint_two_rows_need_is_trained_once(tiny, tmp_path, ray_instance):
    """Both cells wait for one train task; run at the same time without it, each would train."""
    pytest.importorskip("trl")
    code, report = sweep_json(str(write(tmp_path, SHARED_CHECKPOINT)), "--limit", LIMIT, "--executor", "ray")
    assert code == 0, report
    store = Store()
    runs = [store.get_run(c["run_id"]) for c in report["cells"]]
    assert all(r["status"] == "complete" for r in runs)
    (trained,) = list((tmp_path / "cache" / "artifacts" / "train").iterdir())
    assert runs[0]["artifacts"]["train"] == runs[1]["artifacts"]["train"]  # one training, one record
    assert runs[0]["artifacts"]["train"]["key"] == trained.name
    assert all(len(store.curve(r["id"])) == 1 for r in runs)
