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

:data:`PROFILE_KEYS` documents every figure ``profile_run`` returns.
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

#: every key of a profile: (unit, meaning)
PROFILE_KEYS: dict[str, tuple[str, str]] = {
    "device": ("", "device the model ran on"),
    "weight_bytes": ("bytes", "weights as stored: packed integers, scales and zero points"),
    "fp_bytes": ("bytes", "the same parameters in bf16 (the full-precision reference)"),
    "weight_ratio": ("", "weight_bytes / fp_bytes"),
    "in_memory_bytes": ("bytes", "parameters and buffers as they sit in memory (CPU decompresses to fp32)"),
    "peak_rss_bytes": ("bytes", "peak resident memory of the process so far"),
    "peak_gpu_bytes": ("bytes", "peak CUDA memory allocated over the measured phases (None on CPU)"),
    "eval_peak_rss_bytes": ("bytes", "RSS high-water mark during evaluation"),
    "eval_peak_gpu_bytes": ("bytes", "peak CUDA memory allocated during evaluation"),
    "kv_bits": ("bits", "KV-cache bit width of the run (16: not quantized)"),
    "kv_bytes_per_token": ("bytes", "KV cache per token at kv_bits: layers x 2 x kv_heads x head_dim x kv_bits/8"),
    "kv_runtime_bytes_per_token": ("bytes", "KV cache per token at the dtype the model actually computes in"),
    "kv_cache_tokens": ("tokens", "cached positions at the evaluated batch size and length"),
    "kv_cache_bytes": ("bytes", "kv_bytes_per_token x kv_cache_tokens"),
    "eval_wall_s": ("s", "evaluation wall time (generation, grading, storing)"),
    "eval_generate_s": ("s", "time inside batched generation"),
    "eval_forward_s": ("s", "time inside the model's forward during evaluation"),
    "eval_forward_share": ("", "eval_forward_s / evaluation wall time: the loop's overhead is 1 minus this"),
    "eval_problems_per_s": ("1/s", "problems evaluated per second of evaluation wall time"),
    "eval_tokens_per_s": ("1/s", "generated tokens per second of generation time"),
    "latency_prompt_tokens": ("tokens", "prompt length of the latency requests"),
    "latency_gen_tokens": ("tokens", "tokens generated per latency request (EOS ignored)"),
    "batch_size": ("", "sequences per call in the batched latency phase (the evaluation batch size)"),
    "bs1_ttft_ms": ("ms", "time to first token, batch size 1 (median)"),
    "bs1_decode_tokens_per_s": ("1/s", "decode tokens per second after the first token, batch size 1 (median "
                                       "over requests); from the same token times as bs1_itl_*: 1000 / the mean "
                                       "inter-token latency, so 1000 / bs1_itl_p50_ms reads higher when a few steps "
                                       "stall (the median gap leaves them out)"),
    "bs1_latency_p50_ms": ("ms", "per-request latency, batch size 1, median"),
    "bs1_latency_p95_ms": ("ms", "per-request latency, batch size 1, 95th percentile"),
    "bs1_peak_rss_bytes": ("bytes", "RSS high-water mark in the batch-size-1 phase"),
    "bs1_peak_gpu_bytes": ("bytes", "peak CUDA memory in the batch-size-1 phase"),
    "batch_ttft_ms": ("ms", "time to first token of a full batch (median)"),
    "batch_decode_tokens_per_s": ("1/s", "decode tokens per second over the whole batch (median)"),
    "batch_latency_p50_ms": ("ms", "per-request latency at the evaluation batch size, median"),
    "batch_latency_p95_ms": ("ms", "per-request latency at the evaluation batch size, 95th percentile"),
    "batch_peak_rss_bytes": ("bytes", "RSS high-water mark in the batched phase"),
    "batch_peak_gpu_bytes": ("bytes", "peak CUDA memory in the batched phase"),
    "cpu_threads": ("", "torch intra-op threads (CPU timings depend on them and on other load); "
                        "a CPU server's bound cores"),
    # which engine measured the figures above, and what it ran (harness.engines)
    "engine": ("", "the generation engine that evaluated and measured the run (hf, vllm, openai, ...)"),
    "engine_version": ("", "that engine's version (transformers X, vllm X)"),
    "quant_method": ("", "quantization method of the checkpoint "
                         "(its config: compressed-tensors ... W4A16, bitsandbytes nf4)"),
    "kernels": ("", "linear kernels the engine ran: a server's own report (CPUWNA16LinearKernel, ...), "
                    "hf's layer classes"),
    "bs1_ttft_p50_ms": ("ms", "time to first streamed token, batch size 1, median (server engines)"),
    "bs1_ttft_p95_ms": ("ms", "time to first streamed token, batch size 1, 95th percentile"),
    "bs1_itl_p50_ms": ("ms", "inter-token latency between streamed tokens, batch size 1, median"),
    "bs1_itl_p95_ms": ("ms", "inter-token latency, batch size 1, 95th percentile"),
    "bs1_tokens_per_s": ("1/s", "generated tokens per second of a batch-size-1 request, first token included"),
    "batch_ttft_p50_ms": ("ms", "time to first token with batch_size concurrent requests, median"),
    "batch_ttft_p95_ms": ("ms", "time to first token with batch_size concurrent requests, 95th percentile"),
    "batch_itl_p50_ms": ("ms", "inter-token latency with batch_size concurrent requests, median"),
    "batch_itl_p95_ms": ("ms", "inter-token latency with batch_size concurrent requests, 95th percentile"),
    "batch_tokens_per_s": ("1/s", "throughput: tokens generated by batch_size concurrent requests per second"),
    "batch_rounds": ("", "timed rounds of batch_size concurrent requests the batched phase ran (server engines)"),
    "batch_gen_tokens": ("tokens", "tokens per request in the timed batched rounds (latency_gen_tokens unless the "
                                   "budget cut it)"),
    "batch_budget_s": ("s", "time the batched phase (warm-up included) may take: HARNESS_PROFILE_BATCH_BUDGET_S"),
    "batch_cut": ("", "what the budget cut from the batched phase (rounds, tokens per request), or empty"),
    "engine_cpu_binding": ("", "cores the server's compute processes may run on (their CPU affinity, e.g. 0-1)"),
    "engine_threads": ("", "compute threads of the server's CPU worker (vLLM: one OpenMP thread per bound core)"),
    "server_rss_bytes": ("bytes", "resident memory of the server's whole process tree after profiling"),
    "server_start_s": ("s", "seconds from starting the server to its health endpoint answering"),
    "kv_cache_capacity_bytes": ("bytes", "KV-cache memory the server reserved (its metrics endpoint)"),
    "kv_cache_capacity_tokens": ("tokens", "token positions that reserved KV cache holds"),
    "kv_cache_dtype": ("", "dtype the server stores the KV cache in (auto: the model's)"),
    "kv_cache_usage_peak": ("", "highest share of the reserved KV cache in use, sampled during evaluation and profile"),
    "omp_wait_policy": ("", "how idle OpenMP threads waited (PASSIVE: sleep; see harness/base/threads.py)"),
    "profile_seconds": ("s", "what the latency measurement itself cost"),
    "compute_dtype": ("", "the dtype the engine computed in (its activations; float32 or bfloat16 on CPU)"),
    "compute_dtype_reason": ("", "why the engine computed in that dtype (the measurement on this CPU class, an "
                                 "option, a kernel's need)"),
    "cpu_extensions": ("", "the CPU's vector extensions (avx2, avx512f, avx512_bf16, amx_bf16, ...): CPU latency "
                           "depends on them"),
}

#: figures only a server engine reports (an in-process engine leaves them empty)
SERVER_KEYS = ("server_rss_bytes", "server_start_s", "kv_cache_capacity_bytes", "kv_cache_capacity_tokens",
               "kv_cache_dtype", "kv_cache_usage_peak", "batch_rounds", "batch_gen_tokens", "batch_budget_s",
               "batch_cut", "engine_cpu_binding", "engine_threads")

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
    """The run's memory and latency figures (keys and units: :data:`PROFILE_KEYS`).

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
            task = progress.add_task(f"batch size {rows}",
                                     total=settings.warmup + requests)
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
