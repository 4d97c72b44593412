"""Memory and latency of a run: weight bytes as stored, peak memory, KV cache, TTFT, tokens/s.

Users choose a recipe by accuracy per byte and per millisecond, so every run
carries these figures. Three rules keep them honest:

- **Bytes as stored.** Compressed checkpoints decompress to full precision on
  CPU, so weight bytes come from the safetensors files (packed integers,
  scales, zero points), not from memory.
- **Peaks per phase.** CUDA peak statistics are reset at the start of each
  phase; on Linux the process's RSS high-water mark is reset too
  (``/proc/self/clear_refs``), elsewhere a sampling thread stands in.
- **Latency after warm-up, at fixed lengths.** Every request generates
  exactly ``gen_length`` tokens (EOS ignored, as latency benchmarks do), so a
  broken 2-bit model that never stops and a good one that stops early are
  timed on the same work. Token times come from a streamer, which
  transformers feeds after moving each token to the host: on CUDA that is the
  synchronisation point.

:data:`harness.toolkit.profile_keys.PROFILE_KEYS` documents every figure ``profile_run`` returns.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from harness.base.memory import PhaseStats, peak_rss_bytes, watch
from harness.base.progress import stage_progress
from harness.core.config import RunConfig

#: latency defaults for the profile stored with every run: small, so a run pays seconds, not minutes
GEN_LENGTH = 32
REQUESTS_BS1 = 5
REQUESTS_BATCH = 2
WARMUP = 1
MAX_DISTINCT_PROMPTS = 8


@dataclass
class LatencySettings:
    """How the latency phases run (``harness profile`` exposes these as options)."""

    prompt_length: int | None = field(
        default=None, metadata={"help": "prompt tokens per request; default: the median of the run's prompts"}
    )
    gen_length: int | None = field(
        default=None, metadata={"help": f"tokens generated per request; default: min({GEN_LENGTH}, max_new_tokens)"}
    )
    batch_size: int | None = field(default=None, metadata={"help": "batched phase size; default: the run's"})
    requests_bs1: int = field(default=REQUESTS_BS1, metadata={"help": "timed requests at batch size 1"})
    requests_batch: int = field(default=REQUESTS_BATCH, metadata={"help": "timed batches at the batch size"})
    warmup: int = field(default=WARMUP, metadata={"help": "untimed calls before each phase"})

    def __post_init__(self) -> None:
        for name in ("prompt_length", "gen_length", "batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.requests_bs1 < 1 or self.requests_batch < 1 or self.warmup < 0:
            raise ValueError(
                f"need requests >= 1 and warmup >= 0, got requests_bs1={self.requests_bs1}, "
                f"requests_batch={self.requests_batch}, warmup={self.warmup}"
            )


# ---------------------------------------------------------------------------
# KV cache


def kv_bytes_per_token(config, bits: float) -> float:
    """KV-cache bytes one token takes: layers x 2 (K and V) x KV heads x head dim x bits / 8.

    Counts full attention with grouped KV heads (Llama, Qwen, Mistral);
    quantization scales (one per tensor) are left out as negligible.
    """
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = cfg.num_attention_heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    return cfg.num_hidden_layers * 2 * kv_heads * head_dim * bits / 8


def _compute_bits(model) -> int:
    """Bits per element of what the model computes in (its embeddings' dtype)."""
    try:
        return model.get_input_embeddings().weight.element_size() * 8
    except AttributeError:
        return 32


# ---------------------------------------------------------------------------
# latency


class _Clock:
    """A generate streamer that timestamps each step; the first put is the prompt."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def put(self, value) -> None:
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def _percentile(xs: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default), without numpy for a handful of values."""
    s = sorted(xs)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def latency_inputs(tokenizer, prompts: Sequence[str], rows: int, length: int | None):
    """``rows`` x ``length`` prompt token ids from the run's prompts: cropped from the left, tiled when short.

    Equal lengths mean no padding, so batch size 1 and the batched phase time
    the same work per sequence.
    """
    import torch

    texts = list(prompts[:MAX_DISTINCT_PROMPTS]) or ["1 + 1 ="]
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id] for t in texts]
    length = length or int(statistics.median(len(i) for i in ids))
    out = []
    for r in range(rows):
        seq = ids[r % len(ids)]
        while len(seq) < length:
            seq = seq + seq
        out.append(seq[-length:])
    return torch.tensor(out, dtype=torch.long)


def measure_latency(
    model, tokenizer, input_ids, gen_length: int, requests: int, warmup: int, device: str,
    on_round: Callable[[], None] | None = None,
) -> tuple[dict, PhaseStats]:
    """TTFT, decode tokens/s and request latency (p50, p95) of ``requests`` generate calls of one batch.

    ``on_round`` is called after each call, warm-up included (a progress display's ``advance``): on a large
    model one call at the evaluation batch size takes minutes, and a silent profile reads as a hung run."""
    import torch

    from harness.toolkit.generation import stop_token_ids

    input_ids = input_ids.to(model.device)
    clock = _Clock()
    kwargs = dict(
        attention_mask=torch.ones_like(input_ids),
        max_new_tokens=gen_length,
        min_new_tokens=gen_length,
        do_sample=False, temperature=None, top_p=None, top_k=None,
        eos_token_id=stop_token_ids(model, tokenizer) or None,
        pad_token_id=tokenizer.pad_token_id,
        streamer=clock,
    )
    rows = input_ids.shape[0]
    ttft, decode, latency, itl, throughput = [], [], [], [], []
    with torch.inference_mode():
        for _ in range(warmup):
            model.generate(input_ids, **kwargs)
            if on_round is not None:
                on_round()
        with watch(model, device) as w:
            for _ in range(requests):
                clock.times.clear()
                start = time.perf_counter()
                out = model.generate(input_ids, **kwargs)
                if device.startswith("cuda"):
                    torch.cuda.synchronize(device)
                end = time.perf_counter()
                first = clock.times[1] if len(clock.times) > 1 else end
                steps = out.shape[1] - input_ids.shape[1]
                ttft.append(first - start)
                latency.append(end - start)
                itl.extend(b - a for a, b in zip(clock.times[1:], clock.times[2:]))  # one step per token
                throughput.append(rows * steps / (end - start))
                if steps > 1 and end > first:
                    decode.append(rows * (steps - 1) / (end - first))
                if on_round is not None:
                    on_round()
    figures = {
        "ttft_ms": 1000 * statistics.median(ttft),
        "ttft_p50_ms": 1000 * _percentile(ttft, 50),
        "ttft_p95_ms": 1000 * _percentile(ttft, 95),
        "itl_p50_ms": 1000 * _percentile(itl, 50) if itl else None,
        "itl_p95_ms": 1000 * _percentile(itl, 95) if itl else None,
        "tokens_per_s": statistics.median(throughput),
        "decode_tokens_per_s": statistics.median(decode) if decode else None,
        "latency_p50_ms": 1000 * _percentile(latency, 50),
        "latency_p95_ms": 1000 * _percentile(latency, 95),
    }
    return figures, w.stats


# ---------------------------------------------------------------------------
# the profile of a run


def profile_run(
    *,
    model,
    tokenizer,
    model_dir: Path,
    config: RunConfig,
    device: str,
    prompts: Sequence[str],
    timings: dict,
    quant: dict,
    phases: dict[str, PhaseStats] | None = None,
    settings: LatencySettings | None = None,
) -> dict[str, Any]:
    """The run's memory and latency figures (keys and units: :data:`harness.toolkit.profile_keys.PROFILE_KEYS`).

    ``timings`` are the evaluation's :class:`harness.runs.evaluation.EvalTiming`
    per benchmark and ``phases["eval"]`` what :class:`watch` saw around it
    (both empty when profiling alone); ``quant`` is the quantization report.
    """
    from harness.base.threads import in_effect as threads_in_effect
    from harness.base.weights import in_memory_bytes

    start = time.perf_counter()
    out: dict[str, Any] = {"device": device, **weight_figures(model_dir, quant)}
    out.update(eval_figures(timings, (phases or {}).get("eval")))
    latency = latency_figures(model, tokenizer, config, device, prompts, settings or LatencySettings())
    out.update(latency)
    if timings:  # the evaluation's largest batch: its longest prompt plus the whole generation budget
        cfg = config
        longest = max((len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts), default=0)
        kv_tokens = min(cfg.batch_size, max(1, len(prompts))) * cfg.sampling.n * (longest + cfg.sampling.max_new_tokens)
    else:  # profiling alone: the batched latency phase
        kv_tokens = latency["batch_size"] * (latency["latency_prompt_tokens"] + latency["latency_gen_tokens"])
    out.update(kv_figures(model, config.kv_bits, kv_tokens))
    out["in_memory_bytes"] = in_memory_bytes(model)  # after a forward: compressed checkpoints decompress then
    out.update(threads_in_effect())  # cpu_threads, omp_wait_policy
    gpu = [v for k, v in out.items() if k.endswith("_peak_gpu_bytes") and v is not None]
    out["peak_gpu_bytes"] = max(gpu) if gpu else None
    out["peak_rss_bytes"] = peak_rss_bytes()
    out["profile_seconds"] = time.perf_counter() - start
    return out


def weight_figures(model_dir: Path, quant: dict) -> dict[str, Any]:
    """Weight bytes as stored: the quantization report's count, else the safetensors headers'."""
    from harness.base.weights import stored_weight_bytes

    weight_bytes = quant.get("weight_bytes")
    if not weight_bytes:
        try:
            weight_bytes = stored_weight_bytes(model_dir)
        except FileNotFoundError:
            weight_bytes = None
    fp_bytes = quant.get("fp_bytes")
    return {
        "weight_bytes": weight_bytes,
        "fp_bytes": fp_bytes,
        "weight_ratio": weight_bytes / fp_bytes if weight_bytes and fp_bytes else None,
    }


def eval_figures(timings: dict, ev: PhaseStats | None) -> dict[str, Any]:
    """Evaluation throughput from its timings, and the loop's overhead from what :class:`watch` saw."""
    wall = sum(t.wall for t in timings.values())
    gen = sum(t.generate for t in timings.values())
    toks = sum(t.tokens for t in timings.values())
    probs = sum(t.problems for t in timings.values())
    return {
        "eval_wall_s": wall or None,
        "eval_generate_s": gen or None,
        "eval_forward_s": ev.forward_s if ev else None,
        "eval_forward_share": ev.forward_share if ev and ev.forward_calls else None,
        "eval_problems_per_s": probs / wall if wall and probs else None,
        "eval_tokens_per_s": toks / gen if gen and toks else None,
        "eval_peak_rss_bytes": ev.peak_rss_bytes if ev else None,
        "eval_peak_gpu_bytes": ev.peak_gpu_bytes if ev else None,
    }


def latency_figures(model, tokenizer, config: RunConfig, device: str, prompts: Sequence[str],
                    settings: LatencySettings) -> dict[str, Any]:
    """TTFT, decode rate, latency percentiles and peaks at batch size 1 and at the evaluation batch size."""
    sampling = config.sampling
    gen_length = settings.gen_length or min(GEN_LENGTH, sampling.max_new_tokens)
    batch = settings.batch_size or min(config.batch_size, max(1, len(prompts))) * sampling.n
    ids = latency_inputs(tokenizer, prompts, batch, settings.prompt_length)
    out: dict[str, Any] = {"latency_prompt_tokens": ids.shape[1], "latency_gen_tokens": gen_length, "batch_size": batch}
    for tag, rows, requests in (("bs1", 1, settings.requests_bs1), ("batch", batch, settings.requests_batch)):
        # each phase its own progress line at the steady interval, as a served model's profile prints
        with stage_progress("profile", unit="rounds") as progress:
            task = progress.add_task(f"batch size {rows}", total=settings.warmup + requests)
            figures, stats = measure_latency(model, tokenizer, ids[:rows], gen_length, requests, settings.warmup,
                                             device, on_round=partial(progress.advance, task))
        out.update({f"{tag}_{k}": v for k, v in figures.items()})
        out[f"{tag}_peak_rss_bytes"] = stats.peak_rss_bytes
        out[f"{tag}_peak_gpu_bytes"] = stats.peak_gpu_bytes
    return out


def kv_figures(model, kv_bits: int, kv_tokens: int) -> dict[str, Any]:
    """KV cache per token at the run's KV bits (and at the compute dtype), and for ``kv_tokens`` positions."""
    per_token = kv_bytes_per_token(model.config, kv_bits)
    return {
        "kv_bits": kv_bits,
        "kv_bytes_per_token": per_token,
        "kv_runtime_bytes_per_token": kv_bytes_per_token(model.config, _compute_bits(model)),
        "kv_cache_tokens": kv_tokens,
        "kv_cache_bytes": per_token * kv_tokens,
    }
