"""Write the leaderboard folder: ``leaderboard.md``, ``index.html``, the four plots, ``leaderboard.json``.

Reads the store (read-only) once, builds the rows (:mod:`.rows`), and hands
the same rows to every renderer, so the files never disagree.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import sys
from pathlib import Path

from harness.leaderboard import html as html_page
from harness.leaderboard import markdown
from harness.leaderboard.pareto import kl_memory_axis, latency_axis, memory_axis
from harness.leaderboard.reader import open_store
from harness.leaderboard.rows import DEFAULT_CONTEXT_TOKENS, Baseline, leaderboard_rows

FILES = ("leaderboard.md", "index.html", "accuracy_vs_memory.png", "accuracy_vs_memory.svg",
         "accuracy_vs_latency.png", "accuracy_vs_latency.svg", "accuracy_vs_kl.png", "accuracy_vs_kl.svg",
         "kl_vs_memory.png", "kl_vs_memory.svg", "leaderboard.json")


def machine() -> str:
    """This machine in words (OS, CPU model, cores; the GPU when torch is already loaded and sees one)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} CPU cores"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name(0)}"
    return text


def generate(
    store_path: Path | str,
    out_dir: Path | str = "leaderboard-out",
    baseline: str | None = None,
    n_samples: int = 3,
    title: str = "Leaderboard",
    note: str = "",
    command: str | None = None,
    context_tokens: int = DEFAULT_CONTEXT_TOKENS,
    sweep: str | None = None,
) -> dict:
    """Write every leaderboard file into ``out_dir``; returns the paths and the rows as JSON."""
    from harness.leaderboard.html import _jsonable
    from harness.leaderboard.kl_plot import plot_kl
    from harness.leaderboard.plot import plot, plot_latency

    spec = Baseline.parse(baseline)
    store = open_store(store_path)
    try:
        rows = leaderboard_rows(store, spec, n_samples=n_samples, context_tokens=context_tokens, sweep=sweep)
    finally:
        store.close()
    axis = memory_axis(rows, context_tokens)
    latency = latency_axis(rows)
    kl_axis = kl_memory_axis(rows, axis)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    devices = sorted({str(run.profile.get("device")) for r in rows for run in r.runs if run.profile.get("device")})
    meta = {
        "title": title,
        "note": note,
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "store": str(store_path),
        "sweep": sweep,
        "command": command or shlex.join(["harness", *sys.argv[1:]]),
        "machine": machine(),
        "run_devices": devices,
        "baseline": spec.describe(),
        "n_runs": sum(len(r.runs) for r in rows),
        "context_tokens": context_tokens,
        "memory_axis": axis.title,
        "memory_note": axis.note,
        "engines": sorted({r.engine for r in rows}),
        "latency_axis": latency.title,
        "latency_note": latency.note,
        "kl_axis": kl_axis.title,
        "kl_note": kl_axis.note,
    }
    png, svg = plot(rows, out, axis=axis)
    latency_png, latency_svg = plot_latency(rows, out, axis=latency)
    kl_png, kl_svg, kl_memory_png, kl_memory_svg = plot_kl(rows, out, kl_axis)
    rows_json = _jsonable([r.to_json(n_samples) for r in rows])
    files = {
        "markdown": out / "leaderboard.md",
        "html": out / "index.html",
        "png": png,
        "svg": svg,
        "latency_png": latency_png,
        "latency_svg": latency_svg,
        "kl_png": kl_png,
        "kl_svg": kl_svg,
        "kl_memory_png": kl_memory_png,
        "kl_memory_svg": kl_memory_svg,
        "json": out / "leaderboard.json",
    }
    plots = [png, svg, latency_png, latency_svg, kl_png, kl_svg, kl_memory_png, kl_memory_svg]
    _write(files["markdown"], markdown.render(rows, meta, axis, latency=latency, plots=plots, kl_axis=kl_axis))
    _write(files["html"], html_page.render(rows, meta, plot_png=png, n_samples=n_samples, axis=axis,
                                           latency_png=latency_png, latency=latency, kl_axis=kl_axis,
                                           kl_pngs=(kl_png, kl_memory_png)))
    _write(files["json"], json.dumps({"meta": meta, "rows": rows_json}, indent=2, allow_nan=False) + "\n")
    return {"files": {k: str(v) for k, v in files.items()}, "meta": meta, "rows": rows_json}


def _write(path: Path, text: str) -> None:
    """Write beside, then rename: a reader never sees a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
