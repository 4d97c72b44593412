"""What a run's profile holds: every figure's unit and meaning, in one table.

Kept apart from the measuring (:mod:`harness.toolkit.profiling` in process, :mod:`harness.engines.serving_profile`
on a server) because its readers are elsewhere too: ``harness profile`` prints units from it and the model card
explains each figure with it, neither of which measures anything.
"""

from __future__ import annotations

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
