"""Number formats shared by the Markdown and HTML renderings (one meaning, one format)."""

from __future__ import annotations


def pct(stat: dict | None) -> str:
    """``61.2 [55.0, 67.1]``: a proportion as percent with its interval."""
    return _with_interval(stat, scale=100.0, digits=1)


def reward(stat: dict | None) -> str:
    """``0.673 [0.610, 0.731]``: the seed study's mean reward (from {0, 0.1, 1.1})."""
    return _with_interval(stat, scale=1.0, digits=3)


def _with_interval(stat: dict | None, scale: float, digits: int) -> str:
    """``value [lo, hi]`` scaled and rounded alike; the value alone without an interval; ``-`` without a value."""
    if not stat or stat.get("value") is None:
        return "-"
    v = f"{stat['value'] * scale:.{digits}f}"
    if stat.get("lo") is None or stat.get("hi") is None:
        return v
    return f"{v} [{stat['lo'] * scale:.{digits}f}, {stat['hi'] * scale:.{digits}f}]"


def diff_points(d: dict | None, scale: float = 100.0, digits: int = 1) -> str:
    """``+3.1 [-0.5, 6.8]`` (percentage points), with ``*`` when the interval excludes zero."""
    if not d:
        return "-"
    mark = " *" if d.get("significant") else ""
    return f"{d['diff'] * scale:+.{digits}f} [{d['lo'] * scale:+.{digits}f}, {d['hi'] * scale:+.{digits}f}]{mark}"


def diff_reward(d: dict | None) -> str:
    return diff_points(d, scale=1.0, digits=3)


def size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{int(n)} B" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return str(n)


def number(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def memory_header(context_tokens: int) -> str:
    """``memory @4k tok``: the memory column's header, naming the KV-cache tokens it counts."""
    n = f"{context_tokens // 1024}k" if context_tokens and context_tokens % 1024 == 0 else str(context_tokens)
    return f"memory @{n} tok"


def measured_by(text: str, engine: str | None) -> str:
    """``5.0 (vllm)``: a latency or throughput figure with the engine that measured it; ``-`` stays ``-``."""
    return text if text == "-" or not engine else f"{text} ({engine})"


def kernels(quant_method: str | None, names: list[str]) -> str:
    """``compressed-tensors: CPUWNA16LinearKernel``: what the engine loaded; ``-`` when it reported nothing."""
    listed = ", ".join(names)
    if quant_method and listed:
        return f"{quant_method}: {listed}"
    return quant_method or listed or "-"


def seeds(values: list[int]) -> str:
    """``3 (0,1,2)`` / ``1 (seed 0)``: how many seeds a row pools, and which (a bare ``0`` read as "none")."""
    if len(values) == 1:
        return f"1 (seed {values[0]})"
    return f"{len(values)} ({','.join(map(str, values))})"


def _g(x: float) -> str:
    """Three significant digits: KL figures run from 1e-5 to 1 nats."""
    return f"{x:.3g}"


def kl(stat: dict | None, reference: bool = False) -> str:
    """``0.0123 [0.0101, 0.015]`` (one seed: bootstrap interval), ``0.0123 {0.011–0.0135}`` (several seeds:
    their range), with ``top-20`` appended for a top-k approximation; ``0 (reference)`` for a reference row."""
    if reference:
        return "0 (reference)"
    if not stat or stat.get("value") is None:
        return "-"
    text = _g(stat["value"])
    if stat.get("lo") is not None and stat.get("hi") is not None:
        if stat.get("interval") == "seed range":
            text += f" {{{_g(stat['lo'])}–{_g(stat['hi'])}}}"
        else:
            text += f" [{_g(stat['lo'])}, {_g(stat['hi'])}]"
    method = stat.get("method")
    return text + (f" ({method})" if method and method != "exact" else "")


def kl_value(x: float | None) -> str:
    return "-" if x is None else _g(x)


def share(x: float | None, reference: bool = False) -> str:
    """``98.75``: a proportion as percent with two decimals (top-1 agreement is close to 100)."""
    if reference:
        return "100 (reference)"
    return "-" if x is None else f"{x * 100:.2f}"


def signed(x: float | None) -> str:
    return "-" if x is None else f"{x:+.4f}"


def flips(f: dict | None) -> str:
    """``3 / 1 of 60``: problems lost / gained against the reference (means when several seeds)."""
    if not f:
        return "-"

    def n(x: float) -> str:
        return f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}"

    return f"{n(f['lost'])} / {n(f['gained'])} of {n(f['problems'])}"
