"""``leaderboard.md``: the rows as Markdown tables, the Table-1 view first."""

from __future__ import annotations

from harness.leaderboard.rows import DEFAULT_CONTEXT_TOKENS, MemoryAxis, Row, memory_axis
from harness.leaderboard.text import diff_points, diff_reward, memory_header, number, pct, reward, size

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
    "TTFT: time to first token at batch size 1 (median)."
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


def render(rows: list[Row], meta: dict, axis: MemoryAxis | None = None) -> str:
    context_tokens = int(meta.get("context_tokens", DEFAULT_CONTEXT_TOKENS))
    axis = axis or memory_axis(rows, context_tokens)
    benches = sorted({b for r in rows for b in r.benchmarks})
    lines = [f"# {md(meta.get('title', 'Leaderboard'))}", ""]
    lines += [f"Generated {md(meta['generated'])} from `{md(meta['store'])}` with `{md(meta['command'])}`"
              f" on {md(meta['machine'])}. {meta['n_runs']} complete runs in {len(rows)} rows.", ""]
    if meta.get("note"):
        lines += [md(meta["note"]), ""]
    lines += [legend(context_tokens), "", f"Baseline of Δ: {md(meta['baseline'])}.", ""]
    if axis.note:
        lines += [md(axis.note), ""]

    header = ["#", "row", "model", "trainer", "strategy", "bits", "options", "preset", "seeds",
              "accuracy % (all)", "reward (all)", *[f"{md(b)} acc %" for b in benches],
              "weights", "KV B/token", memory_header(context_tokens), "peak memory", "tok/s", "TTFT ms",
              "Δ acc vs baseline (pp)", "baseline", "Pareto"]
    body = []
    for i, r in enumerate(rows, 1):
        name = md(r.name) + (" (faithful)" if r.variant == "faithful" else "")
        body.append([
            str(i), name, md(r.model), md(r.trainer), md(r.strategy), md(r.bits), md(r.options) or "-",
            md(r.preset), md(",".join(map(str, r.seeds))),
            pct(r.overall.get("accuracy")), reward(r.overall.get("reward")),
            *[pct(r.benchmarks.get(b, {}).get("accuracy")) for b in benches],
            size(r.weight_bytes), number(r.kv_bytes_per_token, 0), size(r.memory_bytes),
            size(r.peak_memory_bytes), number(r.tokens_per_s, 0), number(r.ttft_ms, 1),
            diff_points(r.baseline["all"]["accuracy"]) if r.baseline else "-",
            md(r.baseline["against"]) if r.baseline else "-",
            "yes" if r.pareto else "",
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
                body.append([md(r.name), md(r.model), md(r.baseline["against"]), md(bench),
                             diff_points(d["accuracy"]), diff_reward(d["reward"]), str(d["accuracy"]["n"])])
        lines += _table(["row", "model", "baseline", "benchmark", "Δ acc (pp)", "Δ reward", "problems"], body) + [""]

    front = [r for r in rows if r.pareto]
    if front:
        lines += [f"## Pareto front (accuracy against {axis.title})", "",
                  f"No other row evaluated the same way is as accurate with less memory ({axis.title}):", ""]
        for r in sorted(front, key=lambda r: axis.value(r) or 0):
            name = md(r.name) + (" (faithful)" if r.variant == "faithful" else "")
            lines.append(f"- {name} ({md(r.model)}, {md(r.bits)}, preset {md(r.preset)}): "
                         f"{pct(r.overall['accuracy'])} % "
                         f"at {size(axis.value(r))}")
        lines.append("")

    lines += ["## Runs", ""]
    body = []
    for r in rows:
        for run, per in zip(r.runs, r.to_json()["per_seed"]):
            body.append([f"`{md(run.id)}`", md(r.name), md(run.label), str(run.seed),
                         "-" if per["accuracy"] is None else f"{per['accuracy'] * 100:.1f}",
                         "-" if per["reward"] is None else f"{per['reward']:.3f}"])
    lines += _table(["run", "row", "label", "seed", "accuracy % (all)", "reward (all)"], body) + [""]
    return "\n".join(lines)
