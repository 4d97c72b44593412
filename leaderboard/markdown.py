"""``leaderboard.md``: the rows as Markdown tables, the Table-1 view first."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness.leaderboard.columns import against, columns, row_name
from harness.leaderboard.divergence import run_figures
from harness.leaderboard.model import DEFAULT_CONTEXT_TOKENS, Row
from harness.leaderboard.pareto import (
    Axis,
    KLMemoryAxis,
    LatencyAxis,
    MemoryAxis,
    front_labels,
    front_members,
    kl_memory_axis,
    latency_axis,
    memory_axis,
)
from harness.leaderboard.text import (
    diff_points,
    diff_reward,
    flips,
    kl,
    kl_value,
    memory_header,
    number,
    pct,
    reward,
    share,
    signed,
    size,
)

_LEGEND = (
    "Accuracy: % of problems answered correctly, with a 95% bootstrap interval over problems. "
    "Reward: the seed study's Table 1 metric, the mean of 1 (correct) + 0.1 (boxed answer), from {0, 0.1, 1.1}. "
    "\"all\" pools every problem of every benchmark, as the study averages its per-problem rewards. "
    "Several seeds of one configuration are one row: each problem's score is averaged over the seeds, "
    "and the per-seed figures are listed under Runs. "
    "Seeds: how many seeds the row pools, and which. "
    "Problems: how many problems the row's accuracy pools; rows scored on different problem sets never share "
    "a Pareto front. "
    "Tokens / answer: mean generated tokens per answer. "
    "Δ: paired difference over the problems both rows scored (percentage points for accuracy), "
    "with its 95% interval; * marks an interval that excludes zero. "
    "Weights: bytes as stored (packed integers, scales, zero points). "
    "Peak memory: evaluation peak (GPU when there was one, else resident memory). "
    "{memory}"
    "TTFT: time to first token at batch size 1 (median). "
    "ms/token: time per generated token at batch size 1 (median decode), the latency plot's axis. "
    "Engine: what generated the row's samples (hf: eager transformers; vllm: a vLLM server the harness "
    "started; openai: an OpenAI-compatible server), with its version. dtype: what the engine computed in (on "
    "CPU each engine's default is the faster of float32 and bfloat16 as measured on that CPU class). Peak "
    "memory, tok/s, TTFT and ms/token name in brackets the engine that measured them: figures of different "
    "engines are not comparable, and each engine and dtype has its own latency front. Kernels: the "
    "quantization method and kernels the engine reported loading."
)

#: one sentence per divergence column (figures of :mod:`harness.toolkit.divergence`)
DIVERGENCE_LEGEND = (
    "KL from reference: mean KL divergence (nats per token) of the row's next-token distribution from its "
    "full-precision reference's on the reference's own completions, with a 95% interval over problems (several "
    "seeds: their mean, with their range in braces, as only per-benchmark summaries are stored); (top-k) marks "
    "an approximation from a server's k most likely tokens. "
    "Top-1 agree: % of those tokens where the row's most likely next token is the reference's. "
    "Flips lost / gained: of the problems both answered, those the reference got right and the row wrong, and "
    "the reverse (first sample; the mean over seeds). "
    "KL p99: the 99th percentile of per-token KL (over several benchmarks or seeds, the largest: an upper bound). "
    "NLL Δ: how much the row's negative log-likelihood of the reference's tokens rose (nats per token). "
    "KL Pareto: on the front of KL against memory, lower both better (one front per model, evaluation and KL "
    "method)."
)

#: one sentence per plot, written above it
PLOT_TEXT = {
    "accuracy_vs_memory": "Accuracy against memory; circled: the Pareto front of each evaluation and problem set.",
    "accuracy_vs_latency": "Accuracy against time per generated token at batch size 1; one front per engine "
                           "and device.",
    "accuracy_vs_kl": "Accuracy against KL from the reference: whether moving further from the reference's "
                      "distribution costs answers (references, KL 0, are the dotted lines).",
    "kl_vs_memory": "KL from the reference against memory, with its Pareto front (less of both is better): "
                    "it separates recipes whose accuracy ties.",
}


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


def render(rows: list[Row], meta: dict, axis: MemoryAxis | None = None, latency: LatencyAxis | None = None,
           plots: list[Path] | None = None, kl_axis: KLMemoryAxis | None = None) -> str:
    context_tokens = int(meta.get("context_tokens", DEFAULT_CONTEXT_TOKENS))
    axis = axis or memory_axis(rows, context_tokens)
    latency = latency or latency_axis(rows)
    kl_axis = kl_axis or kl_memory_axis(rows, axis)
    lines = [f"# {md(meta.get('title', 'Leaderboard'))}", ""]
    lines += [f"Generated {md(meta['generated'])} from `{md(meta['store'])}` with `{md(meta['command'])}`"
              f" on {md(meta['machine'])}. {meta['n_runs']} complete runs in {len(rows)} rows.", ""]
    if meta.get("note"):
        lines += [md(meta["note"]), ""]
    lines += [legend(context_tokens), "", DIVERGENCE_LEGEND, "", f"Baseline of Δ: {md(meta['baseline'])}.", ""]
    for note in dict.fromkeys((axis.note, latency.note, kl_axis.note)):
        if note:
            lines += [md(note), ""]

    cols = columns(rows, context_tokens)
    body = [[str(i), *[md(c.text(r)) for c in cols]] for i, r in enumerate(rows, 1)]
    lines += ["## Rows", "", *_table(["#", *[md(c.header) for c in cols]], body), ""]
    lines += _twins(rows) + _paired(rows) + _divergence(rows)
    lines += _front(rows, axis, "pareto", f"accuracy against {axis.title}",
                    f"No other row evaluated the same way, on the same problems, is as accurate with less memory "
                    f"({axis.title}):", lambda r: f"{pct(r.overall['accuracy'])} % at {size(axis.value(r))}")
    lines += _front(rows, latency, "latency_pareto", f"accuracy against {latency.title}",
                    "No other row evaluated the same way, on the same problems, and timed by the same engine on the "
                    "same device, is as accurate at less time per token:",
                    lambda r: f"{pct(r.overall['accuracy'])} % at {number(r.ms_per_token, 2)} ms/token")
    lines += _front(rows, kl_axis, "kl_pareto", kl_axis.title,
                    "No other row of the same model, evaluation, problems and KL method is as close to its "
                    f"reference with less memory ({axis.title}):",
                    lambda r: f"KL {kl(r.divergence['kl_mean'])} at {size(kl_axis.value(r))}")
    lines += _plots(plots or [], axis, latency)
    lines += _runs(rows)
    return "\n".join(lines)


def _twins(rows: list[Row]) -> list[str]:
    twins = [r for r in rows if r.twin]
    if not twins:
        return []
    lines = ["## Faithful vs corrected", "",
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
    return lines + _table(["row", "model", "faithful acc %", "corrected acc %", "Δ acc (pp)", "faithful reward",
                           "corrected reward", "Δ reward", "problems"], body) + [""]


def _paired(rows: list[Row]) -> list[str]:
    body = []
    for r in rows:
        for bench, d in (r.baseline or {}).get("benchmarks", {}).items():
            body.append([md(r.name), md(r.model), md(r.engine), md(against(r.baseline, r)), md(bench),
                         diff_points(d["accuracy"]), diff_reward(d["reward"]), str(d["accuracy"]["n"])])
    if not body:
        return []
    return ["## Paired differences against the baseline, by benchmark", "",
            *_table(["row", "model", "engine", "baseline", "benchmark", "Δ acc (pp)", "Δ reward", "problems"], body),
            ""]


#: the header of the divergence-by-benchmark table (Markdown and HTML)
DIVERGENCE_HEADER = ["row", "model", "engine", "benchmark", "KL from reference", "KL p99", "top-1 agree %", "NLL Δ",
                     "flips lost / gained", "problems", "tokens scored", "reference run"]


def divergence_cells(row: Row, bench: str, d: dict) -> list[str]:
    """One row's divergence on one benchmark, as the cells of :data:`DIVERGENCE_HEADER` (plain text)."""
    return [row_name(row), row.model, row.engine, bench, kl(d["kl_mean"]), kl_value(d.get("kl_p99")),
            share(d.get("top1_agree")), signed(d.get("nll_delta")), flips(d.get("flips")), str(d.get("problems")),
            number(d.get("tokens"), 0), ", ".join(d.get("reference_runs") or []) or "-"]


def _divergence(rows: list[Row]) -> list[str]:
    body = [[md(c) for c in divergence_cells(r, b, d)]
            for r in rows for b, d in ((r.divergence or {}).get("benchmarks") or {}).items()]
    if not body:
        return []
    return ["## Divergence from the reference, by benchmark", "",
            "Each quantized row against its full-precision reference on that reference's completions; tokens "
            "scored: completion tokens both models were scored on (summed over seeds).", "",
            *_table(DIVERGENCE_HEADER, body), ""]


def _front(rows: list[Row], axis: Axis, flag: str, title: str, intro: str, figure: Callable[[Row], str]) -> list[str]:
    """A front's rows, one line each, grouped by front when there are several (named as the legend names them)."""
    fronts = [f for f in front_members(rows, axis) if any(getattr(r, flag) for r in f)]
    if not fronts:
        return []
    lines = [f"## Pareto front ({md(title)})", "", intro, ""]
    for front, label in zip(fronts, front_labels(fronts, axis)):
        for r in sorted(front, key=lambda r: axis.value(r) or 0):
            made = ", ".join(x for x in (r.model, r.bits, r.options, f"preset {r.preset}", r.engine,
                                         f"{number(r.n_problems, 0)} problems") if x)
            lines.append(f"- {md(row_name(r))} ({md(made)}): {figure(r)}" + (f" [{md(label)}]" if label else ""))
    return lines + [""]


def _plots(plots: list[Path], axis: MemoryAxis, latency: LatencyAxis) -> list[str]:
    titles = {axis.stem: f"accuracy against {axis.title}, Pareto front circled",
              latency.stem: f"accuracy against {latency.title}, Pareto front circled",
              "accuracy_vs_kl": "accuracy against KL from the reference",
              "kl_vs_memory": "KL from the reference against memory, Pareto front circled"}
    lines = []
    for stem, title in titles.items():
        files = {p.suffix: p.name for p in plots if p.stem == stem}
        if ".svg" in files or ".png" in files:
            image = files.get(".svg") or files[".png"]
            link = f" ([PNG]({files['.png']}))" if ".png" in files else ""
            lines += [PLOT_TEXT[stem], "", f"![{md(title)}]({image}){link}", ""]
    return ["## Plots", "", *lines] if lines else []


def _runs(rows: list[Row]) -> list[str]:
    body = []
    for r in rows:
        for run, per in zip(r.runs, r.to_json()["per_seed"]):
            figures = run_figures(run.divergence)
            body.append([f"`{md(run.id)}`", md(r.name), md(r.engine), md(run.label), str(run.seed),
                         "-" if per["accuracy"] is None else f"{per['accuracy'] * 100:.1f}",
                         "-" if per["reward"] is None else f"{per['reward']:.3f}",
                         kl_value(figures["kl_mean"]["value"]) if figures else "-"])
    return ["## Runs", "", *_table(["run", "row", "engine", "label", "seed", "accuracy % (all)", "reward (all)",
                                    "KL from reference (all)"], body), ""]
