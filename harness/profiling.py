"""Memory and latency of a run (weight bytes as stored, peak memory, throughput)."""

from __future__ import annotations

from pathlib import Path


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def profile_run(*, model, tokenizer, model_dir: Path, plan, prompts, timings, quant: dict) -> dict:
    from harness.weights import stored_weight_bytes

    gen = sum(t.generate for t in timings.values())
    wall = sum(t.wall for t in timings.values())
    toks = sum(t.tokens for t in timings.values())
    probs = sum(t.problems for t in timings.values())
    try:
        weight_bytes = quant.get("weight_bytes") or stored_weight_bytes(model_dir)
    except FileNotFoundError:
        weight_bytes = None
    return {
        "device": plan.device,
        "weight_bytes": weight_bytes,
        "fp_bytes": quant.get("fp_bytes"),
        "peak_rss_bytes": peak_rss_bytes(),
        "eval_wall_s": wall,
        "eval_generate_s": gen,
        "eval_problems_per_s": probs / wall if wall and probs else None,
        "eval_tokens_per_s": toks / gen if gen and toks else None,
    }
