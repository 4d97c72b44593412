"""Latency and memory of a model as a server serves it: streamed TTFT and inter-token latency,
throughput, the server's memory and the KV-cache figures it reports.

The phases mirror :func:`harness.toolkit.profiling.latency_figures` (same prompts,
same fixed generation length with EOS ignored, warm-up first), so an hf row
and a vllm row time the same work: batch size 1 is one request at a time;
the batched phase sends as many concurrent requests as the evaluation's batch
size. Token times are the arrival times of streamed chunks, as a user of the
server sees them (network and detokenization included, on loopback).

A profile takes minutes, not hours: each phase prints a progress line at the
steady interval, and the batched phase keeps to a time budget (fewer timed
rounds, then fewer tokens per request, as its warm-up round predicts; the round
in flight stopped at the budget), recording what it cut. A stop (Ctrl-C,
SIGTERM) cancels the requests in flight instead of waiting for them.
"""

from __future__ import annotations

import itertools
import os
import re
import statistics
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from harness.engines.server import Streamed
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


#: seconds the concurrent phase may take (warm-up included) unless HARNESS_PROFILE_BATCH_BUDGET_S says otherwise
BATCH_BUDGET_S = 120.0
#: the fewest tokens per request a budget cuts the concurrent phase to (a decode rate needs a few steps)
MIN_BATCH_TOKENS = 8


def batch_budget_s() -> float:
    try:
        return max(1.0, float(os.environ.get("HARNESS_PROFILE_BATCH_BUDGET_S") or BATCH_BUDGET_S))
    except ValueError:
        return BATCH_BUDGET_S


def _round(client, ids: list[list[int]] | list[str], gen_length: int,
           deadline: float | None) -> tuple[list[Streamed], float]:
    """``len(ids)`` concurrent streamed requests: each stream as it arrived and when the round ended.

    At ``deadline`` the requests still running are cancelled (``client`` is given up: a phase's own) and the
    round ends with what arrived; a stop (Ctrl-C, SIGTERM) cancels them the same way, then goes on up."""
    seen = [Streamed() for _ in ids]
    pool = ThreadPoolExecutor(max_workers=len(ids), thread_name_prefix="profile-request")
    try:
        futures = [pool.submit(client.stream, p, gen_length, s, ignore_eos=True, min_tokens=gen_length)
                   for p, s in zip(ids, seen)]
        _, pending = wait(futures, timeout=None if deadline is None else max(0.0, deadline - time.perf_counter()))
        end = time.perf_counter()
        if pending:
            client.cancel()
        for f in futures:
            if not (client.cancelled and f.exception() is not None):  # a cancelled request raises: not a failure
                f.result()
    except BaseException:
        client.cancel()  # nothing waits for the requests in flight
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return seen, end


def _figures(rounds: list[tuple[float, list[Streamed], float]]) -> dict[str, float | None]:
    """TTFT, inter-token latency, decode rate, throughput and latency of timed rounds (start, streams, end).

    The decode rate and the inter-token latency come from the same arrivals: a round's tokens after each
    stream's first over the time from its first arrival to its last, so at batch size 1 it is 1000 / the mean
    inter-token latency (the median gap, ``itl_p50``, ignores the few steps that stall)."""
    ttft, itl, latency, decode, throughput = [], [], [], [], []
    for t0, streams, end in rounds:
        arrived = [s for s in streams if s.times]
        ttft += [s.times[0] - s.start for s in arrived]
        latency += [s.times[-1] - s.start for s in arrived if s.done]  # a stream cut at the budget: no latency
        for s in arrived:
            itl.extend(b - a for a, b in itertools.pairwise(s.times))
        steps = sum(len(s.times) - 1 for s in arrived)
        if steps:
            decode.append(steps / (max(s.times[-1] for s in arrived) - min(s.times[0] for s in arrived)))
        if end > t0:
            throughput.append(sum(s.tokens or len(s.times) for s in streams) / (end - t0))

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


def _plan(warm: list[Streamed], warm_s: float, left_s: float, requests: int, gen: int) -> tuple[int, int]:
    """Timed rounds and tokens per request that fit ``left_s``, estimated from a warm-up round: the time until
    every stream's first token, then its slowest stream's seconds per token for the rest."""
    arrived = [s for s in warm if len(s.times) > 1]
    if len(arrived) < len(warm):  # some stream never got past its first token: a round is all we know
        first, step = warm_s, warm_s
    else:
        first = max(s.times[0] - s.start for s in arrived)
        step = max((s.times[-1] - s.times[0]) / (len(s.times) - 1) for s in arrived)
    step = max(step, 1e-6)
    one = first + (gen - 1) * step
    rounds = max(1, min(requests, int(left_s // one) if one > 0 else requests))
    if rounds * one > left_s:
        gen = max(MIN_BATCH_TOKENS, min(gen, 1 + int(max(0.0, left_s - first) // step)))
    return rounds, gen


def _batch_phase(session, ids, gen_length: int, requests: int, warmup: int, progress, budget_s: float):
    """The concurrent phase inside ``budget_s``: fewer timed rounds, then fewer tokens per request, when the
    warm-up says the full phase would not fit, and the round in flight stopped at the budget whatever the
    estimate said; (figures, timed rounds, tokens per request, what was cut or None)."""
    task = progress.add_task(f"{len(ids)} concurrent requests", total=warmup + requests)
    start = time.perf_counter()
    warm: list[Streamed] = []
    for _ in range(warmup):  # untimed; one stopped at its share of the budget has still warmed the server
        client = session.client.fork()
        try:
            warm, _ = _round(client, ids, gen_length, time.perf_counter() + budget_s / (1 + requests))
        finally:
            client.close()
        progress.advance(task)
    rounds, gen = requests, gen_length
    if warm:
        rounds, gen = _plan(warm, time.perf_counter() - start, start + budget_s - time.perf_counter(), requests,
                            gen_length)
    timed: list[tuple[float, list[Streamed], float]] = []
    client = session.client.fork()
    try:
        while len(timed) < rounds and not client.cancelled:
            t0 = time.perf_counter()
            streams, end = _round(client, ids, gen, start + budget_s)
            timed.append((t0, streams, end))
            progress.advance(task)
    finally:
        client.close()
    cut = None
    if client.cancelled or (rounds, gen) != (requests, gen_length):
        cut = (f"budget {budget_s:.0f} s: {len(timed)} of {requests} timed rounds, {gen} of {gen_length} tokens "
               f"per request{'; the last round stopped at the budget' if client.cancelled else ''}")
    return _figures(timed), len(timed), gen, cut


def _bs1_phase(session, ids, gen_length: int, requests: int, warmup: int, progress) -> dict[str, float | None]:
    client = session.client.fork()
    task = progress.add_task("batch size 1", total=warmup + requests)
    timed = []
    try:
        for r in range(warmup + requests):
            t0 = time.perf_counter()
            streams, end = _round(client, ids, gen_length, None)
            if r >= warmup:
                timed.append((t0, streams, end))
            progress.advance(task)
    finally:
        client.close()
    return _figures(timed)


def profile_server(session, prompts: Sequence[str], config, settings, timings: dict, eval_stats, quant: dict,
                   device: str | None = None) -> dict[str, Any]:
    """The profile of a served model (keys: :data:`harness.toolkit.profile_keys.PROFILE_KEYS`), with a progress line
    at the steady interval in each phase."""
    from harness.base.progress import stage_progress
    from harness.toolkit.profiling import latency_inputs

    start = time.perf_counter()
    sampling = config.sampling
    gen_length = settings.gen_length or min(GEN_LENGTH, sampling.max_new_tokens)
    batch = settings.batch_size or min(config.batch_size, max(1, len(prompts))) * sampling.n
    ids = latency_inputs(session.tokenizer, prompts, batch, settings.prompt_length).tolist()
    prompt_tokens = len(ids[0])
    if not session.options.send_token_ids:
        # a server that takes text only (llama-cpp-python's, most OpenAI-compatible ones): the same tokens as text,
        # which its tokenizer (the model's own) splits back into them
        ids = [session.tokenizer.decode(row, skip_special_tokens=False) for row in ids]
    out: dict[str, Any] = {"device": device}
    out.update(weight_figures(session.model_dir, quant))
    out.update(eval_figures(timings, eval_stats))
    out.update(eval_forward_s=None, eval_forward_share=None)  # a server's forward is not visible from here
    out.update(latency_prompt_tokens=prompt_tokens, latency_gen_tokens=gen_length, batch_size=batch)
    kv_peak = getattr(eval_stats, "kv_usage_peak", None) if eval_stats is not None else None
    budget = batch_budget_s()
    console = getattr(session, "console", None)
    for tag in ("bs1", "batch"):  # each phase its own progress line, at the steady interval however long it takes
        with ServerWatch(session) as w, stage_progress("profile", console, unit="rounds") as progress:
            if tag == "bs1":
                figures = _bs1_phase(session, ids[:1], gen_length, settings.requests_bs1, settings.warmup, progress)
            else:
                figures, rounds, gen, cut = _batch_phase(session, ids, gen_length, settings.requests_batch,
                                                         settings.warmup, progress, budget)
                out.update(batch_rounds=rounds, batch_gen_tokens=gen, batch_budget_s=budget, batch_cut=cut)
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
    runtime_bits = dtype_bits or _dtype_bits(session.compute_dtype or "float32")
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
    bound = re.findall(r"core ids=\[([\d, ]*)\]", log)  # vLLM's CPU worker: one OpenMP thread per listed core
    threads = len(bound[-1].split(",")) if bound and bound[-1].strip() else None
    return {
        "engine": session.engine,
        "engine_version": session.version,
        "quant_method": quant_method(session.model_dir) if session.model_dir else None,
        "kernels": kernels_from_log(log),
        "server_rss_bytes": session.server.rss_bytes() if session.server is not None else None,
        "server_start_s": session.server.started_s if session.server is not None else None,
        "cpu_threads": threads,
        "engine_threads": threads,
        "engine_cpu_binding": compute_cores(session.server),
    }


def compute_cores(server) -> str | None:
    """The cores the server's compute threads may run on (``0-3``), read from the kernel: every thread of vLLM's
    worker processes when there are any (``VLLM::Worker``; it pins each OpenMP thread to one core, so the
    process's own affinity, its main thread's, names one core), else of every process of the server; None when
    the harness did not start the server."""
    import psutil

    from harness.engines.server import id_list

    if server is None:
        return None
    procs = server.tree()
    workers = [p for p in procs if "Worker" in _name(p)] or procs
    cores: set[int] = set()
    for p in workers:
        try:
            tids = [t.id for t in p.threads()]
        except psutil.Error:
            continue
        for tid in tids:
            try:
                cores.update(os.sched_getaffinity(tid))
            except (OSError, AttributeError):  # gone, or no affinity on this platform
                pass
    return id_list(cores) if cores else None


def _name(proc) -> str:
    try:
        return proc.name()
    except Exception:
        return ""
