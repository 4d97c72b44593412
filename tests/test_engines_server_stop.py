"""A stop is a stop: SIGTERM (the Ctrl-C path) ends a profile or an evaluation on a server engine within 5 s,
whatever is in flight: the requests cancelled, a server the harness started stopped, the run marked interrupted
and its stored samples kept.

The stand-in server (``tests/fake_openai_server.py``) is made slow where the signal lands: 5 s per streamed token
while several streams run (the concurrent phase), or 60 s per completion after the first few (the evaluation), so
a harness that waited for its requests would take minutes to exit.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

HERE = Path(__file__).parent
FAKE_PYTHON = HERE / "fake_vllm" / "python"
STOP_WITHIN_S = 5.0
SLOW_UNDER_LOAD = {"FAKE_TOKEN_S": "0.01", "FAKE_CONCURRENT_TOKEN_S": "5"}


def harness(tmp_path, *args, env=None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "harness.cli", *args, "--device", "cpu", "--store", str(tmp_path / "r.db"),
           "--cache-dir", str(tmp_path / "cache")]
    log = open(tmp_path / "harness.log", "w")  # a file nobody has to read: never blocks the harness
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env={**os.environ, "HARNESS_FAKE_INTERPRETER": sys.executable, **(env or {})})


def servers(marker: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"])
            if "fake_openai_server.py" in " ".join(p.info["cmdline"] or []) and marker in " ".join(p.info["cmdline"])]


def port_of(proc: psutil.Process) -> int:
    cmd = proc.cmdline()
    return int(cmd[cmd.index("--port") + 1])


def wait_until(condition, proc: subprocess.Popen, what: str, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the harness ended (status {proc.returncode}) before {what}")
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def inflight(url: str) -> int:
    try:
        return httpx.get(f"{url}/inflight", timeout=2).json()["streams"]
    except httpx.HTTPError:
        return 0


def sigterm(proc: subprocess.Popen, tmp_path) -> float:
    """SIGTERM to the harness: the seconds until it exited; it must have exited with 143 (128 + SIGTERM)."""
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    took = time.perf_counter() - t0
    out = (tmp_path / "harness.log").read_text()
    assert proc.returncode == 143, out[-3000:]
    assert "stopped by SIGTERM" in out, out[-3000:]
    return took


def test_sigterm_in_the_concurrent_phase_of_a_vllm_profile_stops_within_seconds(tmp_path):
    marker = str(tmp_path / "cache")
    proc = harness(tmp_path, "profile", "--engine", "vllm", "--vllm-python", str(FAKE_PYTHON), "--gen-length", "32",
                   "--requests", "1", "--batch-size", "4", env=SLOW_UNDER_LOAD)
    try:
        wait_until(lambda: servers(marker), proc, "the server started")
        url = f"http://127.0.0.1:{port_of(servers(marker)[0])}"
        wait_until(lambda: inflight(url) >= 2, proc, "the concurrent phase")
        tree = servers(marker)
        took = sigterm(proc, tmp_path)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert took < STOP_WITHIN_S, f"exited {took:.1f} s after SIGTERM"
    _, alive = psutil.wait_procs(tree, timeout=0.5)
    assert alive == [] and servers(marker) == [], "a server outlived the harness"


def test_sigterm_in_the_concurrent_phase_of_an_openai_profile_cancels_the_requests(tmp_path, monkeypatch):
    """A server the harness did not start stays up, and its streams end: the harness closed them."""
    from harness.engines.openai import CompletionsClient
    from harness.engines.server import ServerProcess, free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    client = CompletionsClient(url)
    for key, value in {**SLOW_UNDER_LOAD, "FAKE_CONCURRENT_TOKEN_S": "1"}.items():
        monkeypatch.setenv(key, value)  # the server's pace (ServerProcess passes this environment on)
    with ServerProcess([sys.executable, str(HERE / "fake_openai_server.py"), "--port", str(port)],
                       name="fake server", log_path=tmp_path / "fake.log", health=client.healthy) as server:
        proc = harness(tmp_path, "profile", "--engine", "openai", "--engine-url", url, "--gen-length", "32",
                       "--requests", "1", "--batch-size", "4")
        try:
            wait_until(lambda: inflight(url) >= 2, proc, "the concurrent phase")
            took = sigterm(proc, tmp_path)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert took < STOP_WITHIN_S, f"exited {took:.1f} s after SIGTERM"
        deadline = time.time() + 5  # the stand-in notices a closed stream at its next token (1 s)
        while inflight(url) and time.time() < deadline:
            time.sleep(0.2)
        assert inflight(url) == 0, "the harness left its streams open on the server"
        assert server.alive()
    client.close()


def stored(tmp_path) -> int:
    with sqlite3.connect(tmp_path / "r.db") as db:
        try:
            return db.execute("select count(*) from samples").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def test_sigterm_during_a_vllm_evaluation_keeps_the_samples_and_marks_the_run_interrupted(tmp_path):
    marker = str(tmp_path / "cache")
    proc = harness(tmp_path, "run", "--engine", "vllm", "--vllm-python", str(FAKE_PYTHON), "--limit", "40",
                   "--batch-size", "4", env={"FAKE_DELAY_S": "60", "FAKE_DELAY_AFTER": "8"})
    try:
        wait_until(lambda: (tmp_path / "r.db").exists() and stored(tmp_path) >= 8, proc, "8 samples stored")
        time.sleep(0.5)  # the next requests are in flight, each to take a minute
        tree = servers(marker)
        kept = stored(tmp_path)
        took = sigterm(proc, tmp_path)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert took < STOP_WITHIN_S, f"exited {took:.1f} s after SIGTERM"
    _, alive = psutil.wait_procs(tree, timeout=0.5)
    assert tree and alive == [] and servers(marker) == [], "a server outlived the harness"
    assert stored(tmp_path) == kept >= 8
    with sqlite3.connect(tmp_path / "r.db") as db:
        assert db.execute("select status from runs").fetchall() == [("interrupted",)]
