"""Latency and memory of a model as a server serves it: streamed TTFT and inter-token latency,
throughput, the server's memory and the KV-cache figures it reports.

The phases mirror :func:`harness.toolkit.profiling.latency_figures` (same prompts,
same fixed generation length with EOS ignored, warm-up first), so an hf row
and a vllm row time the same work: batch size 1 is one request at a time;
the batched phase sends as many concurrent requests as the evaluation's batch
size. Token times are the arrival times of streamed chunks, as a user of the
server sees them (network and detokenization included, on loopback).
"""

from __future__ import annotations

import itertools
import re
import statistics
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from harness.toolkit.profiling import (
    GEN_LENGTH,
    PhaseStats,
    _percentile,
    eval_figures,
    kv_bytes_per_token,
    weight_figures,
)

_METRIC = re.compile(r'^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
#: what the server log says it runs: vLLM's linear kernels and quantization methods
_KERNEL = re.compile(r"\b((?:CPU|Cutlass|Marlin|Machete|Exllama|Conch|Allspark|Triton|Bitblas|Dynamic|Torch)?\w*"
                     r"(?:LinearKernel|ScaledMMLinearKernel|LinearMethod))\b")


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Prometheus text exposition: (name, labels, value) per sample line."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _METRIC.match(line)
        if m:
            try:
                out.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))))
            except ValueError:
                continue
    return out


def server_metrics(client) -> list[tuple[str, dict[str, str], float]]:
    try:
        r = client.http.get("/metrics", timeout=5.0)
    except Exception:
        return []
    return parse_metrics(r.text) if r.status_code == 200 else []


def kv_metrics(samples) -> dict[str, Any]:
    """The KV-cache capacity, dtype and usage a vLLM server reports (empty for servers that do not)."""
    out: dict[str, Any] = {}
    for name, labels, value in samples:
        if name == "vllm:cache_config_info":
            for key, label in (("kv_cache_capacity_bytes", "kv_cache_memory_bytes"),
                               ("kv_cache_capacity_tokens", "kv_cache_size_tokens")):
                if labels.get(label, "None") not in ("None", ""):
                    out[key] = int(float(labels[label]))
            out["kv_cache_dtype"] = labels.get("cache_dtype")
            out["kv_block_size"] = int(labels["block_size"]) if labels.get("block_size", "").isdigit() else None
        elif name in ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"):
            out["kv_cache_usage"] = value
    return out


def kernels_from_log(text: str) -> list[str]:
    return sorted(set(_KERNEL.findall(text)))


class ServerWatch:
    """``with session.measure() as w``: wall time, the server tree's peak RSS and peak KV usage."""

    def __init__(self, session, every_s: float = 0.25):
        self.session = session
        self.every_s = every_s
        self.stats = PhaseStats()
        self.kv_usage_peak: float | None = None
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        server = self.session.server
        n = 0
        while True:
            if server is not None:
                self.stats.peak_rss_bytes = max(self.stats.peak_rss_bytes or 0, server.rss_bytes())
            if n % 4 == 0:
                usage = kv_metrics(server_metrics(self.session.client)).get("kv_cache_usage")
                if usage is not None:
                    self.kv_usage_peak = max(self.kv_usage_peak or 0.0, usage)
            n += 1
            if self._halt.wait(self.every_s):
                return

    def __enter__(self) -> ServerWatch:
        self._start = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self._thread.join()
        self.stats.wall_s = time.perf_counter() - self._start


def _phase(session, ids: list[list[int]], gen_length: int, requests: int, warmup: int) -> dict[str, float | None]:
    """``requests`` rounds of ``len(ids)`` concurrent streamed requests (after ``warmup`` rounds)."""
    extra = {"ignore_eos": True, "min_tokens": gen_length}
    rows = len(ids)
    ttft, itl, latency, decode, throughput = [], [], [], [], []
    with ThreadPoolExecutor(max_workers=rows) as pool:
        for r in range(warmup + requests):
            t0 = time.perf_counter()
            streams = list(pool.map(lambda p: session.client.stream(p, gen_length, **extra), ids))
            end = time.perf_counter()
            if r < warmup:
                continue
            tokens = sum(n for _, _, n in streams)
            firsts = []
            for start, times, _ in streams:
                if not times:
                    continue
                ttft.append(times[0] - start)
                latency.append(times[-1] - start)
                itl.extend(b - a for a, b in itertools.pairwise(times))
                firsts.append(times[0])
            if firsts and end > max(firsts):
                decode.append((tokens - rows) / (end - min(firsts)))
            throughput.append(tokens / (end - t0))

    def ms(xs: Sequence[float], q: float) -> float | None:
        return 1000 * _percentile(xs, q) if xs else None

    return {
        "ttft_ms": 1000 * statistics.median(ttft) if ttft else None,
        "ttft_p50_ms": ms(ttft, 50), "ttft_p95_ms": ms(ttft, 95),
        "itl_p50_ms": ms(itl, 50), "itl_p95_ms": ms(itl, 95),
        "decode_tokens_per_s": statistics.median(decode) if decode else None,
        "tokens_per_s": statistics.median(throughput) if throughput else None,
        "latency_p50_ms": ms(latency, 50), "latency_p95_ms": ms(latency, 95),
    }


def profile_server(session, prompts: Sequence[str], config, settings, timings: dict, eval_stats, quant: dict,
                   device: str | None = None) -> dict[str, Any]:
    """The profile of a served model (keys: :data:`harness.toolkit.profiling.PROFILE_KEYS`)."""
    from harness.toolkit.profiling import latency_inputs

    start = time.perf_counter()
    sampling = config.sampling
    gen_length = settings.gen_length or min(GEN_LENGTH, sampling.max_new_tokens)
    batch = settings.batch_size or min(config.batch_size, max(1, len(prompts))) * sampling.n
    ids = latency_inputs(session.tokenizer, prompts, batch, settings.prompt_length).tolist()
    out: dict[str, Any] = {"device": device}
    out.update(weight_figures(session.model_dir, quant))
    out.update(eval_figures(timings, eval_stats))
    out.update(eval_forward_s=None, eval_forward_share=None)  # a server's forward is not visible from here
    out.update(latency_prompt_tokens=len(ids[0]), latency_gen_tokens=gen_length, batch_size=batch)
    kv_peak = getattr(eval_stats, "kv_usage_peak", None) if eval_stats is not None else None
    for tag, rows, requests in (("bs1", 1, settings.requests_bs1), ("batch", batch, settings.requests_batch)):
        with ServerWatch(session) as w:
            figures = _phase(session, ids[:rows], gen_length, requests, settings.warmup)
        out.update({f"{tag}_{k}": v for k, v in figures.items()})
        out[f"{tag}_peak_rss_bytes"] = w.stats.peak_rss_bytes
        out[f"{tag}_peak_gpu_bytes"] = None
        if w.kv_usage_peak is not None:
            kv_peak = max(kv_peak or 0.0, w.kv_usage_peak)
    out.update(_kv_figures(session, config, prompts, out, kv_peak))
    out.update(_server_figures(session, quant))
    peaks = [v for k, v in out.items() if k.endswith("peak_rss_bytes") and v]
    out["peak_rss_bytes"] = max(peaks) if peaks else out.get("server_rss_bytes")
    out["peak_gpu_bytes"] = None
    out["in_memory_bytes"] = None
    out["profile_seconds"] = time.perf_counter() - start
    return out


def _kv_figures(session, config, prompts, out: dict, kv_peak: float | None) -> dict[str, Any]:
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(session.model_dir)
    per_token = kv_bytes_per_token(cfg, config.kv_bits)
    if out.get("eval_wall_s"):
        longest = max((len(session.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts), default=0)
        sequences = min(config.batch_size, max(1, len(prompts))) * config.sampling.n
        tokens = sequences * (longest + config.sampling.max_new_tokens)
    else:
        tokens = out["batch_size"] * (out["latency_prompt_tokens"] + out["latency_gen_tokens"])
    served = kv_metrics(server_metrics(session.client))
    dtype_bits = {"fp8": 8, "fp8_e4m3": 8, "fp8_e5m2": 8}.get(served.get("kv_cache_dtype") or "", None)
    runtime_bits = dtype_bits or _dtype_bits(session.dtype or "float32")
    return {
        "kv_bits": config.kv_bits,
        "kv_bytes_per_token": per_token,
        "kv_runtime_bytes_per_token": kv_bytes_per_token(cfg, runtime_bits),
        "kv_cache_tokens": tokens,
        "kv_cache_bytes": per_token * tokens,
        "kv_cache_capacity_bytes": served.get("kv_cache_capacity_bytes"),
        "kv_cache_capacity_tokens": served.get("kv_cache_capacity_tokens"),
        "kv_cache_dtype": served.get("kv_cache_dtype"),
        "kv_cache_usage_peak": kv_peak,
    }


def _dtype_bits(dtype: str) -> int:
    return 32 if dtype in ("float32", "float", "fp32") else 16


def _server_figures(session, quant: dict) -> dict[str, Any]:
    from harness.api import quant_method

    log = session.log_path.read_text(errors="replace") if session.log_path and session.log_path.exists() else ""
    threads = re.findall(r"core ids=\[([\d, ]*)\]", log)
    return {
        "engine": session.engine,
        "engine_version": session.version,
        "quant_method": quant_method(session.model_dir) if session.model_dir else None,
        "kernels": kernels_from_log(log),
        "server_rss_bytes": session.server.rss_bytes() if session.server is not None else None,
        "server_start_s": session.server.started_s if session.server is not None else None,
        "cpu_threads": len(threads[-1].split(",")) if threads and threads[-1].strip() else None,
    }
