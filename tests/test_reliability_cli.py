"""First-use holes of the command line: Ctrl-C, bad values, uncreatable paths, unknown hub models, sweep typos."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.base import hub
from harness.base.errors import UserError
from harness.cli import COMMANDS, cli, main
from harness.runs.store import Store


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return lines[-1]


# -- Ctrl-C ----------------------------------------------------------------------------------------

def _interrupted_command():
    import click

    @click.command()
    def boom() -> None:
        raise KeyboardInterrupt

    return boom


def test_ctrl_c_exits_130_with_the_resume_line(monkeypatch, capsys):
    import types

    module = types.ModuleType("boom_module")
    module.boom = _interrupted_command()
    monkeypatch.setitem(sys.modules, "boom_module", module)
    monkeypatch.setitem(COMMANDS, "boom", "boom_module:boom")
    with pytest.raises(SystemExit) as exited:
        main(["boom"])
    assert exited.value.code == 130
    err = capsys.readouterr().err
    assert "run the same command to resume" in err and "Aborted!" not in err


def test_main_keeps_the_other_exit_statuses(capsys):
    for args, code in ((["--version"], 0), (["nosuch"], 2), (["run", "--batch-size", "0"], 2)):
        with pytest.raises(SystemExit) as exited:
            main(args)
        assert exited.value.code == code, args
    assert "0 is not in the range" in capsys.readouterr().err


def test_sigterm_is_ctrl_c_with_its_own_exit_status_and_an_ignored_signal_stays_ignored():
    probe = ("import os, signal\n"
             "from harness.base.signals import stop_like_ctrl_c\n"
             "stop_like_ctrl_c()\n"
             "print(signal.getsignal(signal.SIGHUP) == signal.SIG_IGN)\n"
             "try:\n"
             "    os.kill(os.getpid(), signal.SIGTERM)\n"
             "    signal.pause()\n"
             "except KeyboardInterrupt as exc:\n"
             "    print(type(exc).__name__, exc, exc.exit_code)\n")
    def nohup() -> None:  # what nohup does before exec
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, preexec_fn=nohup,
                         timeout=60, check=False)
    assert out.stdout.split("\n")[:2] == ["True", "Terminated SIGTERM 143"], out.stderr


def _has_samples(path: Path) -> bool:
    opened = Store(path)
    try:
        runs = opened.list_runs()
        return bool(runs and opened.samples(runs[0]["id"]))
    finally:
        opened.close()


def _as_from_a_terminal() -> None:
    """In the child before exec: SIGINT handled and unblocked, as a shell's foreground job has it.

    A process inherits an ignored or blocked SIGINT (a background job of a
    script has it ignored, by POSIX), and Python then leaves it so; whatever
    an earlier test or library did to pytest's own must not decide this one.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])


def _running_with_samples(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    """``harness ARGS`` on a store and cache under ``tmp_path``, once its first samples are stored
    (still running: asserted); the process and its store."""
    store = tmp_path / "r.db"
    cmd = [sys.executable, "-m", "harness.cli", *args, "--store", str(store), "--cache-dir", str(tmp_path / "cache")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HARNESS_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=_as_from_a_terminal)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and not (store.exists() and _has_samples(store)):
        time.sleep(0.5)
    assert proc.poll() is None, f"it ended before it could be stopped: {proc.communicate()[1][-2000:]}"
    return proc, store


@pytest.mark.slow
def test_a_real_ctrl_c_during_a_run_exits_130_and_marks_the_run_interrupted(tmp_path):
    inherited = f"SIGINT {signal.getsignal(signal.SIGINT)}, blocked {signal.pthread_sigmask(signal.SIG_BLOCK, [])}"
    proc, store = _running_with_samples(tmp_path, "run", "--limit", "400", "--batch-size", "4")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, f"(pytest's own {inherited}) {err[-2000:]}"
    assert "run the same command to resume" in err and "Aborted!" not in err
    run = Store(store).list_runs()[0]
    assert run["status"] == "interrupted"


ONE_SLOW_CELL = """
name = "one-slow-cell"
[defaults]
model = "tiny-arith"
limit = 400
batch_size = 4
[[cell]]
row = "base"
"""


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_stopped_sweep_leaves_no_cell_process_behind(tmp_path, sig):
    """SIGTERM (what schedulers send) takes the Ctrl-C path, in the sweep and in its cell's own process;
    after a SIGKILL, which nothing can catch, the kernel tells the cell, which marks its run interrupted."""
    import psutil

    (tmp_path / "sweep.toml").write_text(ONE_SLOW_CELL)
    proc, store = _running_with_samples(tmp_path, "sweep", str(tmp_path / "sweep.toml"))
    cells = psutil.Process(proc.pid).children(recursive=True)
    assert cells, "the cell runs in a process of its own (isolate=true)"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    gone, alive = psutil.wait_procs(cells, timeout=60)
    assert not alive, f"left running: {alive}"
    if sig == signal.SIGTERM:
        assert proc.returncode == 143, err[-2000:]
        assert "run the same command to go on" in err and "Traceback" not in err
    run = Store(store).list_runs()[0]
    assert run["status"] == "interrupted", run


# -- small holes -------------------------------------------------------------------------------------

def test_batch_size_zero_is_refused_not_replaced():
    from harness.cli.options import build_config

    kw = {"model": "tiny-arith", "trainer": "none", "train_data": "arith", "strategy": "none", "bits": None,
          "act_bits": 16, "kv_bits": 16, "seed": 0, "device": "cpu"}
    assert build_config(**kw, batch_size=None).batch_size == 64
    with pytest.raises(UserError, match="batch-size must be >= 1, got 0"):
        build_config(**kw, batch_size=0)
    assert "0 is not in the range" in one_error_line(invoke("run", "--batch-size", "0"))


@pytest.mark.parametrize("args", [
    ("runs", "--store", "{file}/sub/r.db"),
    ("run", "--cache-dir", "{file}/cache", "--store", "{tmp}/r.db"),
    ("leaderboard", "--out", "{file}/board", "--store", "{tmp}/r.db"),
    ("tiny", "build", "--out", "{file}/tiny"),
])
def test_a_path_that_cannot_be_created_is_one_line(tmp_path, args):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    line = one_error_line(invoke(*(a.format(file=blocker, tmp=tmp_path) for a in args)))
    assert "cannot be created" in line and "is a file, not a folder" in line


def test_default_store_and_cache_under_a_file_are_user_errors(tmp_path):
    from harness.runs.cache import ArtifactCache

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot create"):
        Store(blocker / "r.db")
    with pytest.raises(UserError, match="cannot create the artifact cache"):
        ArtifactCache(blocker / "cache").build("train", "k", lambda out: {})


# -- sweeps -----------------------------------------------------------------------------------------

def _sweep(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


def test_a_misspelled_plugin_table_in_a_sweep_is_refused(tmp_path):
    path = _sweep(tmp_path, 'name = "typo"\n[grid]\nstrategy = ["rtn"]\nbits = [4]\n'
                            '[strategy_opts.rnt]\ngroup_size = 32\n')
    line = one_error_line(invoke("sweep", str(path), "--dry-run", "--store", str(tmp_path / "r.db")))
    assert "[strategy_opts.rnt] reaches no cell" in line and "Did you mean 'rtn'" in line and "gptq" in line
    # a registered plugin that no cell uses is fine (the grid may be narrowed by --set)
    fine = _sweep(tmp_path, 'name = "ok"\n[grid]\nstrategy = ["rtn"]\nbits = [4]\n[strategy_opts.gptq]\nx = 1\n')
    assert invoke("sweep", str(fine), "--dry-run", "--store", str(tmp_path / "r.db")).exit_code == 0


@pytest.mark.parametrize("text, expected", [
    ('[defaults]\nlimit = "five"\n[grid]\nbits = [4]\n', "[defaults]: limit = 'five' is a string; expected an integer"),
    ('[grid]\nbits = [4, "eight"]\n', "[grid]: bits = 'eight' is a string; expected an integer"),
    ('[[cell]]\nstrategy = "rtn"\ntemperature = "hot"\n',
     "[cell 1]: temperature = 'hot' is a string; expected a number"),
    ('[[cell]]\nbenchmarks = [1, 2]\n', "benchmarks = [1, 2] is a list; expected a string or a list of strings"),
])
def test_a_sweep_value_of_the_wrong_type_is_one_line(tmp_path, text, expected):
    path = _sweep(tmp_path, 'name = "types"\n' + text)
    line = one_error_line(invoke("sweep", str(path), "--dry-run", "--store", str(tmp_path / "r.db")))
    assert expected in line and "not supported between" not in line


def test_a_set_value_of_the_wrong_type_is_one_line(tmp_path):
    from harness.sweeps.cells import cell_config

    with pytest.raises(UserError, match="cell: limit = 'five' is a string; expected an integer"):
        cell_config({"limit": "five"})
    path = _sweep(tmp_path, 'name = "set"\n[grid]\nstrategy = ["rtn"]\nbits = [4, 8]\n')
    result = invoke("sweep", str(path), "--dry-run", "--set", "limit=five", "--store", str(tmp_path / "r.db"))
    line = one_error_line(result)
    assert line == "error: --set: limit = 'five' is a string; expected an integer"
    assert result.stderr.count("error:") == 1  # once, not once for each of the two cells


def test_a_misspelled_strategy_in_run_is_one_line_and_stores_nothing(tmp_path):
    """`harness run` resolves and plans its flags through the same path as a sweep cell, before anything runs."""
    store = tmp_path / "r.db"
    result = invoke("run", "--strategy", "rnt", "--store", str(store), "--cache-dir", str(tmp_path / "cache"))
    line = one_error_line(result)
    assert result.stderr.count("error:") == 1
    assert line.startswith("error: unknown strategy 'rnt'. Did you mean 'rtn'? Available: ") and "gptq" in line
    assert not store.exists() or Store(store).list_runs() == []


# -- an unknown hub model ---------------------------------------------------------------------------

@pytest.fixture
def no_hub(tmp_path, monkeypatch):
    """A hub endpoint nothing listens on, and an empty hub cache."""
    from huggingface_hub import constants

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "_last_probe", None)


def test_an_unknown_hub_model_offline_fails_fast_in_one_line_and_stores_nothing(tmp_path, no_hub):
    store = tmp_path / "r.db"
    start = time.perf_counter()
    result = invoke("run", "--model", "madeup-org/no-such-model", "--limit", "1", "--store", str(store),
                    "--cache-dir", str(tmp_path / "cache"))
    seconds = time.perf_counter() - start
    line = one_error_line(result)
    assert "madeup-org/no-such-model" in line and "not in the local hub cache" in line and "unreachable" in line
    assert seconds < 30  # the hub's own retries took 50-80 s
    assert not store.exists() or Store(store).list_runs() == []


def test_a_hub_that_never_answers_is_given_up_on_within_the_probe_timeout(monkeypatch, no_hub):
    def silent_hub(*args, **kwargs):
        time.sleep(30)
        raise TimeoutError("timed out")  # what a socket that never answers ends with

    monkeypatch.setattr(hub.socket, "create_connection", silent_hub)
    start = time.perf_counter()
    reason = hub.hub_unreachable(timeout=1.0)
    assert time.perf_counter() - start < 3 and "did not answer within 1 s" in reason


def test_offline_mode_is_said_and_no_probe_is_made(monkeypatch, no_hub):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "hub_unreachable", lambda *a: pytest.fail("probed the hub in offline mode"))
    with pytest.raises(UserError, match="HF_HUB_OFFLINE is set"):
        hub.check_hub_model("madeup-org/no-such-model")


class _NotFound(http.server.BaseHTTPRequestHandler):
    """The hub's answer for a repository that does not exist."""

    def do_GET(self):
        body = json.dumps({"error": "Repository not found"}).encode()
        self.send_response(404)
        self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


def test_a_reachable_hub_without_the_model_says_so(monkeypatch, no_hub):
    from huggingface_hub import constants

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        with pytest.raises(UserError, match="does not exist on the hub"):
            hub.check_hub_model("madeup-org/no-such-model")
    finally:
        server.shutdown()


# -- --force --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_force_evaluates_again_and_stores_a_profile_with_throughput(tmp_path):
    args = ["run", "--limit", "3", "--max-new-tokens", "8", "--store", str(tmp_path / "r.db"),
            "--cache-dir", str(tmp_path / "cache"), "--json"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    store = Store(tmp_path / "r.db")
    run_id = json.loads(first.stdout)["run_id"]
    store.db.execute("UPDATE samples SET completion = 'stale' WHERE run_id = ?", (run_id,))
    store.db.commit()
    forced = CliRunner().invoke(cli, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    profile = json.loads(forced.stdout)["profile"]
    assert profile["eval_tokens_per_s"] > 0  # it generated again instead of reusing the stored samples
    assert all(s["completion"] != "stale" for s in store.samples(run_id))
    assert len(store.samples(run_id)) == 3
