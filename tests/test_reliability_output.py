"""Issue 16 item 10: first-use output. Progress lines in logs, no library noise, plugins shown in full."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import time
import warnings

from rich.console import Console


def _harness(*args: str, **env: str) -> subprocess.CompletedProcess:
    """The CLI in a subprocess with stdout and stderr piped: neither is a terminal, as in CI or nohup."""
    return subprocess.run(
        [sys.executable, "-m", "harness.cli.__main__", *args], check=False, capture_output=True, text=True, timeout=600,
        env={**os.environ, "COLUMNS": "80", **env},
    )


# -- progress --------------------------------------------------------------------------------------


def test_plain_lines_come_at_a_steady_interval_even_without_updates(monkeypatch):
    from harness.base.progress import PlainProgress, heartbeat, stage_progress

    monkeypatch.setenv("HARNESS_PROGRESS_INTERVAL", "0.1")
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    progress = stage_progress("evaluate", console, unit="problems")
    assert isinstance(progress, PlainProgress)
    with progress:
        task = progress.add_task("arith", total=40)
        progress.update(task, advance=10)
        time.sleep(0.45)  # one long batch: lines still come
        progress.update(task, advance=10)
    lines = out.getvalue().splitlines()
    assert len(lines) >= 4, lines  # about 4 ticks plus the final line
    assert re.fullmatch(
        r"evaluate arith: 10/40 problems \(25%\), 0 s elapsed, [\d.]+ problems per s, about \d+ s left", lines[0]
    )
    assert lines[-1].startswith("evaluate arith: 20/40 problems (50%)")

    out.truncate(0)
    with heartbeat("quantize", "gptq W4A16", console):
        time.sleep(0.25)
    assert "quantize gptq W4A16: running, 0 s elapsed" in out.getvalue()


def test_a_terminal_still_gets_a_live_bar():
    from rich.progress import Progress

    from harness.base.progress import stage_progress

    assert isinstance(stage_progress("GRPO", Console(file=io.StringIO(), force_terminal=True)), Progress)


def test_a_logged_run_prints_progress_lines_and_no_full_precision_quantize_line(tmp_path):
    proc = _harness("run", "--strategy", "none", "--limit", "12", "--batch-size", "4",
                    "--store", str(tmp_path / "r.db"), "--cache-dir", str(tmp_path / "cache"),
                    HARNESS_PROGRESS_INTERVAL="0.05")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^evaluate arith: \d+/12 problems", proc.stderr, re.MULTILINE), proc.stderr
    assert "quantize none" not in proc.stderr and "W16A16" not in proc.stderr, proc.stderr


# -- library noise ---------------------------------------------------------------------------------


def test_library_noise_is_silenced(capsys):
    from harness.base.quiet import quiet_libraries

    quiet_libraries()
    quiet_libraries()  # idempotent
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        quiet_libraries()
        warnings.warn("Attempting to save a model with offloaded modules. Ensure that unallocated cpu memory "
                      "exceeds the `shard_size` (50GB default)", UserWarning, stacklevel=1)
        warnings.warn("a warning about the user's input still shows", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["a warning about the user's input still shows"]

    from tqdm import tqdm

    bar_out = io.StringIO()
    for _ in tqdm(range(3), desc="Applying quantization config", disable=False, file=bar_out):
        pass
    assert bar_out.getvalue() == ""  # compressed-tensors passes disable= explicitly; still silent

    assert not logging.getLogger("torch.fx._symbolic_trace").isEnabledFor(logging.WARNING)


# -- harness plugins -------------------------------------------------------------------------------


def test_plugins_table_never_cuts_a_name_short():
    proc = _harness("plugins")
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(_harness("plugins", "--json").stdout)
    names = {n for row in listing for kind in ("strategies", "trainers", "benchmarks") for n in row.get(kind, [])}
    assert "olympiadbench" in names
    for name in names | {row["name"] for row in listing}:
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", proc.stdout), f"{name} is cut short"
    assert "…" not in proc.stdout


def test_plugins_name_shows_bits_phase_needs_and_options_with_help():
    proc = _harness("plugins", "rtn")
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "strategy rtn" in text and "phase: post-training" in text and "bits: 4, 8" in text
    assert "needs calibration: False" in text
    assert "group_size" in text and "inputs sharing one scale" in text

    (entry,) = json.loads(_harness("plugins", "gptq", "--json").stdout)
    assert entry["kind"] == "strategy" and entry["declares"]["needs_calibration"] is True
    assert all(opt["help"] for opt in entry["options"]), entry["options"]
    (trainer,) = json.loads(_harness("plugins", "grpo", "--json").stdout)
    assert trainer["kind"] == "trainer" and any(o["name"] == "learning_rate" for o in trainer["options"])
    (bench,) = json.loads(_harness("plugins", "olympiadbench", "--json").stdout)
    assert bench["kind"] == "benchmark" and bench["declares"]["splits"] == ["test"]

    unknown = _harness("plugins", "rnt")
    assert unknown.returncode == 2 and "Did you mean 'rtn'" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1
