"""``leaderboard.md``: the rows as Markdown tables, the Table-1 view first."""

from __future__ import annotations

from pathlib import Path

from harness.leaderboard.model import DEFAULT_CONTEXT_TOKENS, Row
from harness.leaderboard.pareto import LatencyAxis, MemoryAxis, latency_axis, memory_axis
from harness.leaderboard.text import (
    diff_points,
    diff_reward,
    kernels,
    measured_by,
    memory_header,
    number,
    pct,
    reward,
    size,
)

_LEGEND = (
    "Accuracy: % of problems answered correctly, with a 95% bootstrap interval over problems. "
    "Reward: the seed study's Table 1 metric, the mean of 1 (correct) + 0.1 (boxed answer), from {0, 0.1, 1.1}. "
    "\"all\" pools every problem of every benchmark, as the study averages its per-problem rewards. "
    "Several seeds of one configuration are one row: each problem's score is averaged over the seeds, "
    "and the per-seed figures are listed under Runs. "
    "Δ: paired difference over the problems both rows scored (percentage points for accuracy), "
    "with its 95% interval; * marks an interval that excludes zero. "
    "Weights: bytes as stored (packed integers, scales, zero points). "
    "Peak memory: evaluation peak (GPU when there was one, else resident memory). "
    "{memory}"
    "TTFT: time to first token at batch size 1 (median). "
    "ms/token: time per generated token at batch size 1 (median decode), the latency plot's axis. "
    "Engine: what generated the row's samples (hf: eager transformers; vllm: a vLLM server the harness "
    "started; openai: an OpenAI-compatible server), with its version. Peak memory, tok/s, TTFT and ms/token "
    "name in brackets the engine that measured them: figures of different engines are not comparable, and each "
    "engine has its own latency front. Kernels: the quantization method and kernels the engine reported loading."
)


def legend(context_tokens: int = DEFAULT_CONTEXT_TOKENS) -> str:
    """The paragraph that says what each column means; the memory sentence names ``--context-tokens``."""
    if context_tokens:
        memory = (f"KV B/token: KV-cache bytes per token at the run's KV bit width, and "
                  f"{memory_header(context_tokens)}: weights plus the KV cache of one {context_tokens}-token "
                  "reasoning trace (--context-tokens), the plot's and the Pareto front's memory, so a smaller "
                  "KV cache counts as fewer weight bits do (- where a run's profile has no KV figure). ")
    else:
        memory = (f"KV B/token: KV-cache bytes per token at the run's KV bit width, and "
                  f"{memory_header(context_tokens)}: weights alone (--context-tokens 0). ")
    return _LEGEND.replace("{memory}", memory)


def md(text: object) -> str:
    """Text from the store, made safe for a Markdown table cell (no pipes, no HTML)."""
    s = str(text).replace("\\", "\\\\").replace("|", "\\|").replace("&", "&amp;")
    s = s.replace("<", "&lt;").replace(">", "&gt;")
    return " ".join(s.split())


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(cells) + " |" for cells in rows]
    return out


def against(comparison: dict, row: Row) -> str:
    """The row a comparison is against, with its engine when that is not the row's own."""
    engine = comparison.get("against_engine")
    return comparison["against"] + (f" ({engine})" if engine and engine != row.engine else "")


def render(rows: list[Row], meta: dict, axis: MemoryAxis | None = None, latency: LatencyAxis | None = None,
           plots: list[Path] | None = None) -> str:
    context_tokens = int(meta.get("context_tokens", DEFAULT_CONTEXT_TOKENS))
    axis = axis or memory_axis(rows, context_tokens)
    latency = latency or latency_axis(rows)
    benches = sorted({b for r in rows for b in r.benchmarks})
    lines = [f"# {md(meta.get('title', 'Leaderboard'))}", ""]
    lines += [f"Generated {md(meta['generated'])} from `{md(meta['store'])}` with `{md(meta['command'])}`"
              f" on {md(meta['machine'])}. {meta['n_runs']} complete runs in {len(rows)} rows.", ""]
    if meta.get("note"):
        lines += [md(meta["note"]), ""]
    lines += [legend(context_tokens), "", f"Baseline of Δ: {md(meta['baseline'])}.", ""]
    if axis.note:
        lines += [md(axis.note), ""]
    if latency.note:
        lines += [md(latency.note), ""]

    header = ["#", "row", "model", "trainer", "strategy", "bits", "engine", "options", "preset", "seeds",
              "accuracy % (all)", "reward (all)", *[f"{md(b)} acc %" for b in benches],
              "weights", "KV B/token", memory_header(context_tokens), "peak memory", "tok/s", "TTFT ms",
              "ms/token", "kernels", "Δ acc vs baseline (pp)", "baseline", "Pareto", "latency Pareto"]
    body = []
    for i, r in enumerate(rows, 1):
        name = md(r.name) + (" (faithful)" if r.variant == "faithful" else "")
        body.append([
            str(i), name, md(r.model), md(r.trainer), md(r.strategy), md(r.bits), md(r.engine_label),
            md(r.options) or "-",
            md(r.preset), md(",".join(map(str, r.seeds))),
            pct(r.overall.get("accuracy")), reward(r.overall.get("reward")),
            *[pct(r.benchmarks.get(b, {}).get("accuracy")) for b in benches],
            size(r.weight_bytes), number(r.kv_bytes_per_token, 0), size(r.memory_bytes),
            md(measured_by(size(r.peak_memory_bytes), r.latency_engine)),
            md(measured_by(number(r.tokens_per_s, 0), r.latency_engine)),
            md(measured_by(number(r.ttft_ms, 1), r.latency_engine)),
            md(measured_by(number(r.ms_per_token, 2), r.latency_engine)), md(kernels(r.quant_method, r.kernels)),
            diff_points(r.baseline["all"]["accuracy"]) if r.baseline else "-",
            md(against(r.baseline, r)) if r.baseline else "-",
            "yes" if r.pareto else "", "yes" if r.latency_pareto else "",
        ])
    lines += ["## Rows", "", *_table(header, body), ""]

    twins = [r for r in rows if r.twin]
    if twins:
        lines += ["## Faithful vs corrected", "",
                  "Each row run with the correct method against the same row run as the reference code runs it "
                  "(`--faithful`); Δ = corrected − faithful.", ""]
        by_key = {r.key: r for r in rows}
        body = []
        for r in twins:
            f = by_key.get(r.twin["against_key"])
            body.append([
                md(r.name), md(r.model),
                pct(f.overall.get("accuracy")) if f else "-", pct(r.overall.get("accuracy")),
                diff_points(r.twin["all"]["accuracy"]),
                reward(f.overall.get("reward")) if f else "-", reward(r.overall.get("reward")),
                diff_reward(r.twin["all"]["reward"]), str(r.twin["all"]["accuracy"]["n"]),
            ])
        lines += _table(["row", "model", "faithful acc %", "corrected acc %", "Δ acc (pp)", "faithful reward",
                         "corrected reward", "Δ reward", "problems"], body) + [""]

    compared = [r for r in rows if r.baseline]
    if compared:
        lines += ["## Paired differences against the baseline, by benchmark", ""]
        body = []
        for r in compared:
            for bench, d in r.baseline["benchmarks"].items():
                body.append([md(r.name), md(r.model), md(r.engine), md(against(r.baseline, r)), md(bench),
                             diff_points(d["accuracy"]), diff_reward(d["reward"]), str(d["accuracy"]["n"])])
        lines += _table(["row", "model", "engine", "baseline", "benchmark", "Δ acc (pp)", "Δ reward", "problems"],
                        body) + [""]

    front = [r for r in rows if r.pareto]
    if front:
        lines += [f"## Pareto front (accuracy against {axis.title})", "",
                  f"No other row evaluated the same way is as accurate with less memory ({axis.title}):", ""]
        for r in sorted(front, key=lambda r: axis.value(r) or 0):
            name = md(r.name) + (" (faithful)" if r.variant == "faithful" else "")
            lines.append(f"- {name} ({md(r.model)}, {md(r.bits)}, preset {md(r.preset)}, {md(r.engine)}): "
                         f"{pct(r.overall['accuracy'])} % "
                         f"at {size(axis.value(r))}")
        lines.append("")

    timed = [r for r in rows if r.latency_pareto]
    if timed:
        lines += [f"## Pareto front (accuracy against {latency.title})", "",
                  "No other row evaluated the same way, and timed by the same engine on the same device, is as "
                  "accurate at less time per token:", ""]
        for r in sorted(timed, key=lambda r: (latency.group_label(r), r.ms_per_token or 0)):
            name = md(r.name) + (" (faithful)" if r.variant == "faithful" else "")
            lines.append(f"- {name} ({md(r.model)}, {md(r.bits)}, preset {md(r.preset)}): "
                         f"{pct(r.overall['accuracy'])} % at {number(r.ms_per_token, 2)} ms/token "
                         f"({md(latency.group_label(r))})")
        lines.append("")

    if plots:
        lines += ["## Plots", ""]
        for title, stem in ((f"accuracy against {axis.title}", axis.stem),
                            (f"accuracy against {latency.title}", latency.stem)):
            files = {p.suffix: p.name for p in plots if p.stem == stem}
            if ".svg" in files or ".png" in files:
                image = files.get(".svg") or files[".png"]
                link = f" ([PNG]({files['.png']}))" if ".png" in files else ""
                lines += [f"![{md(title)}, Pareto front circled]({image}){link}", ""]

    lines += ["## Runs", ""]
    body = []
    for r in rows:
        for run, per in zip(r.runs, r.to_json()["per_seed"]):
            body.append([f"`{md(run.id)}`", md(r.name), md(r.engine), md(run.label), str(run.seed),
                         "-" if per["accuracy"] is None else f"{per['accuracy'] * 100:.1f}",
                         "-" if per["reward"] is None else f"{per['reward']:.3f}"])
    lines += _table(["run", "row", "engine", "label", "seed", "accuracy % (all)", "reward (all)"], body) + [""]
    return "\n".join(lines)
