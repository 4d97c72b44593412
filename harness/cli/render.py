"""Rich tables for run results (the CLI's only presentation code)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def fmt_ci(m: dict | None, pct: bool = True) -> str:
    if not m or m.get("value") is None:
        return "-"
    scale = 100 if pct else 1
    v = m["value"] * scale
    if m.get("lo") is None:
        return f"{v:.1f}" if pct else f"{v:.3f}"
    return (f"{v:.1f} [{m['lo'] * scale:.1f}, {m['hi'] * scale:.1f}]" if pct
            else f"{v:.3f} [{m['lo']:.3f}, {m['hi']:.3f}]")


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return str(n)


#: the width a table is measured at when nothing limits it (a pipe, a log file)
UNBOUNDED = 10_000


def print_table(table: Table, console: Console | None = None) -> None:
    """Print ``table`` whole: on a terminal at its width, elsewhere at the width its content needs.

    A pipe or a log has no width of its own, so rich assumes 80 columns and
    wraps headers and values mid-phrase (``accuracy % [95%`` over ``CI]``),
    which breaks every line-based tool reading the output.
    """
    console = console or Console()
    if not console.is_terminal:
        needed = console.measure(table, options=console.options.update_width(UNBOUNDED)).maximum
        if needed > console.width:
            console = Console(file=console.file, width=needed, highlight=False)
    console.print(table)


def print_result(result: dict, console: Console | None = None) -> None:
    """The metrics table of one run, then one line each: accuracy by level, repeats, divergence, profile."""
    console = console or Console()
    table = Table(title=f"run {result['run_id']}: {result['label']} ({result['status']})")
    for col in ("benchmark", "accuracy % [95% CI]", "reward (paper)", "format %", "tokens / answer", "problems"):
        table.add_column(col, overflow="fold")
    for bench, m in result["metrics"].items():
        table.add_row(
            bench,
            fmt_ci(m.get("accuracy")),
            fmt_ci(m.get("reward"), pct=False),
            fmt_ci(m.get("format_rate")),
            f"{m['mean_tokens']['value']:.1f}" if "mean_tokens" in m else "-",
            f"{int(m['problems']['value'])}" if "problems" in m else "-",
        )
    print_table(table, console)
    for line in result_lines(result):
        # a pipe or a log gets each line whole; a terminal wraps them at its width
        console.print("  " + line, soft_wrap=not console.is_terminal)


def result_lines(result: dict) -> list[str]:
    """What follows the table: accuracy by level, repeats, divergence, memory and speed, latency."""
    lines = []
    for bench, m in result["metrics"].items():
        per = {k.split("=", 1)[1]: v for k, v in m.items() if k.startswith("accuracy/level=")}
        if per:
            lines.append(f"{bench} accuracy by level: "
                         + ", ".join(f"L{k} {v['value'] * 100:.0f}%" for k, v in per.items()))
    lines += [line for bench, m in result["metrics"].items() if (line := repeats_line(bench, m))]
    lines += [divergence_line(bench, div) for bench, div in (result.get("divergence") or {}).items()]
    prof = result.get("profile") or {}
    if prof:
        lines.append(f"weight bytes {fmt_bytes(prof.get('weight_bytes'))} (bf16 {fmt_bytes(prof.get('fp_bytes'))}), "
                     f"peak RSS {fmt_bytes(prof.get('peak_rss_bytes'))}, "
                     f"{(prof.get('eval_tokens_per_s') or 0):.0f} tok/s")
        latency = latency_line(prof)
        if latency:
            lines.append(f"latency at batch size 1: {latency}")
        if (compute := compute_line(prof)):
            lines.append(compute)
    return lines


def compute_line(prof: dict) -> str:
    """The dtype the engine computed in and why, with the CPU's vector extensions (empty for profiles stored
    before these were recorded)."""
    if not prof.get("compute_dtype"):
        return ""
    cpu = f"; CPU: {prof['cpu_extensions']}" if prof.get("cpu_extensions") else ""
    why = f" ({prof['compute_dtype_reason']})" if prof.get("compute_dtype_reason") else ""
    return f"computed in {prof['compute_dtype']}{why}{cpu}"


def repeats_line(bench: str, m: dict) -> str:
    """Mean accuracy over K sampled repeats with its spread between repeats, and avg@K with its interval;
    empty for a run with one sample per problem (every greedy run)."""
    if "repeats" not in m or "accuracy_repeat_std" not in m:
        return ""
    k = int(m["repeats"]["value"])
    avg = m.get(f"avg@{k}") or {}
    if avg.get("value") is None:
        return ""
    interval = f" [{avg['lo'] * 100:.1f}, {avg['hi'] * 100:.1f}]" if avg.get("lo") is not None else ""
    return (f"{bench} over {k} repeats: accuracy {avg['value'] * 100:.1f}% "
            f"± {m['accuracy_repeat_std']['value'] * 100:.1f} (standard deviation between repeats); "
            f"avg@{k} {avg['value'] * 100:.1f}%{interval} (mean per-problem pass rate, 95% CI)")


def divergence_line(bench: str, div: dict) -> str:
    """One line: KL from the reference (with its interval and how it was measured), top-1, flips."""
    kl = div.get("kl_mean") or {}
    if kl.get("value") is None:
        return f"{bench} divergence: no completion tokens to score"
    how = "exact" if div.get("top_k") is None else f"top-{div['top_k']} approximation"
    flips = div.get("flips") or {}
    return (f"{bench} divergence from {div.get('reference_run')}: KL {kl['value']:.5f} "
            f"[{kl['lo']:.5f}, {kl['hi']:.5f}] ({how}), p99 {div.get('kl_p99', 0):.4f}, "
            f"same top token {div.get('top1_agree', 0) * 100:.2f}%, NLL change {div.get('nll_delta', 0):+.5f}, "
            f"flips lost {flips.get('lost', 0)} / gained {flips.get('gained', 0)}")


def latency_line(prof: dict) -> str:
    """Time to first token and milliseconds per generated token at batch size 1, when measured."""
    ttft = prof.get("bs1_ttft_ms") or prof.get("bs1_ttft_p50_ms")
    itl = prof.get("bs1_itl_p50_ms")
    rate = prof.get("bs1_decode_tokens_per_s")
    per_token = itl if itl else (1000.0 / rate if rate else None)
    parts = []
    if ttft:
        parts.append(f"TTFT {ttft:.1f} ms")
    if per_token:
        parts.append(f"{per_token:.2f} ms per token")
    return ", ".join(parts)
