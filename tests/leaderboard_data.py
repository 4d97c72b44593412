"""A store of synthetic runs, written through the Store API, for the leaderboard tests.

Hand-made so every expected figure is known: which rows are on the Pareto
front, which paired difference is significant and with what sign, and text
that must be escaped (a completion with a <script>, a row name with <b>).
"""

from __future__ import annotations

from pathlib import Path

from harness.core.config import RunConfig
from harness.runs.evaluation import compute_metrics
from harness.runs.store import Store

XSS = "<script>alert(1)</script>"
BOLD_ROW = "<b>STE</b> 8-bit"
N = 60  # problems
KV16 = 2048.0  # KV-cache bytes per token of the synthetic model at 16 bits
KV4 = 512.0    # ... and at 4 bits


def _samples(correct: set[int], completion: str = "The answer is \\boxed{1}.", n: int = N) -> list[dict]:
    return [
        {"problem_id": f"p{i:02d}", "sample": 0, "level": str(1 + i % 3), "prompt": f"What is {i} + 1?",
         "completion": completion, "predicted": "1", "reference": str(i + 1),
         "correct": int(i in correct), "formatted": 1, "reward": 1.1 if i in correct else 0.1, "n_tokens": 7}
        for i in range(n)
    ]


def add_run(store: Store, *, trainer="none", strategy="none", bits=16, kv_bits=16, seed=0, correct: set[int],
            weight_bytes: int, preset="default", tags: dict | None = None, completion: str | None = None,
            label: str | None = None, ttft_ms: float | None = 5.0, kv_bytes_per_token: float | None = KV16,
            engine: str = "hf", engine_opts: dict | None = None, profile_extra: dict | None = None,
            n: int = N, strategy_opts: dict | None = None) -> str:
    config = RunConfig(trainer=trainer, strategy=strategy, bits=bits, kv_bits=kv_bits, seed=seed, preset=preset,
                       limit=n, engine=engine, engine_opts=tuple(sorted((engine_opts or {}).items())),
                       strategy_opts=tuple(sorted((strategy_opts or {}).items())))
    rid = config.run_id
    store.start_run(rid, label or config.label, config.to_dict(), {"quant-rl-harness": "test"}, None)
    rows = _samples(correct, completion, n) if completion else _samples(correct, n=n)
    store.add_samples(rid, "arith", rows)
    store.set_metrics(rid, "arith", compute_metrics([{"benchmark": "arith", **r} for r in rows], seed=seed))
    profile = {"device": "cpu", "weight_bytes": weight_bytes, "fp_bytes": 13_000_000,
               "peak_rss_bytes": 500_000_000 + weight_bytes, "eval_tokens_per_s": 1000.0 + bits}
    if ttft_ms is not None:
        profile["bs1_ttft_ms"] = ttft_ms
    if kv_bytes_per_token is not None:  # None: a run profiled before KV bytes were recorded
        profile.update(kv_bits=kv_bits, kv_bytes_per_token=kv_bytes_per_token)
    profile.update(profile_extra or {})
    store.set_profile(rid, profile)
    if tags:
        store.add_artifacts(rid, {"sweep": tags})
    store.finish_run(rid, "complete")
    return rid


GOOD = set(range(54))          # 90 %
WEAK = set(range(0, 54, 2))    # 45 %, a subset of GOOD: every difference points one way


def build_store(path: Path) -> Path:
    """Seven complete runs (GRPO with two seeds, a corrected/faithful twin pair) and one unfinished run."""
    s = Store(path)
    # full precision, two seeds of GRPO: one row with seeds 0,1
    add_run(s, correct=GOOD, weight_bytes=13_000_000)
    add_run(s, trainer="grpo", seed=0, correct=GOOD, weight_bytes=13_000_000)
    add_run(s, trainer="grpo", seed=1, correct=GOOD | {55}, weight_bytes=13_000_000)
    add_run(s, trainer="grpo", strategy="rtn", bits=8, correct=GOOD, weight_bytes=4_300_000)
    add_run(s, trainer="grpo", strategy="rtn", bits=4, correct=WEAK, weight_bytes=2_700_000,
            completion=f"Let me think. {XSS} \\boxed{{1}}", label="<b>bold</b> label", ttft_ms=None)
    # a corrected row and its faithful twin, tagged as a sweep tags them
    faithful = RunConfig(trainer="grpo", strategy="rtn", bits=2, preset="rlquant", limit=N).run_id
    corrected = RunConfig(trainer="grpo", strategy="rtn", bits=2, limit=N).run_id
    add_run(s, trainer="grpo", strategy="rtn", bits=2, correct=WEAK, weight_bytes=2_000_000,
            tags={"sweep": "t", "row": BOLD_ROW, "order": 3, "variant": "corrected", "twin": faithful})
    add_run(s, trainer="grpo", strategy="rtn", bits=2, preset="rlquant", correct=set(range(6)),
            weight_bytes=2_000_000,
            tags={"sweep": "t", "row": BOLD_ROW, "order": 3, "variant": "faithful", "twin": corrected})
    # an unfinished run is never shown
    cfg = RunConfig(trainer="grpo", strategy="rtn", bits=3, limit=N)
    s.start_run(cfg.run_id, cfg.label, cfg.to_dict(), {}, None)
    s.close()
    return path


def build_kv_store(path: Path, old_run: bool = False) -> Path:
    """Two rows that differ only in kv_bits (W4A16 and W4A16KV4): equal weight bytes, equal accuracy,
    KV16 vs KV4 bytes per token; with ``old_run``, a third row profiled before KV bytes were recorded."""
    s = Store(path)
    add_run(s, trainer="grpo", strategy="rtn", bits=4, correct=GOOD, weight_bytes=2_700_000)
    add_run(s, trainer="grpo", strategy="rtn", bits=4, kv_bits=4, correct=GOOD, weight_bytes=2_700_000,
            kv_bytes_per_token=KV4)
    if old_run:
        add_run(s, trainer="grpo", strategy="rtn", bits=8, correct=GOOD, weight_bytes=4_300_000,
                kv_bytes_per_token=None)
    s.close()
    return path


VLLM = {"engine": "vllm", "engine_version": "vllm 0.32.0"}


def build_engine_store(path: Path) -> Path:
    """The same two configurations (base bf16, base rtn W4A16) evaluated by ``hf`` and by ``vllm``, and one
    old hf run (rtn W8A16) profiled before latency was recorded.

    Batch-1 decode speeds are chosen so that the fronts tell per-engine fronts from one shared front:
    hf bf16 100 ms/token at 90 %, hf W4 50 ms/token at 45 % (both on the hf front); vllm bf16
    10 ms/token at 90 %, vllm W4 20 ms/token at 90 % (int4 slower on a CPU: off the vllm front).
    One front over both engines would leave no hf row on it.
    """
    s = Store(path)
    add_run(s, correct=GOOD, weight_bytes=13_000_000, ttft_ms=40.0,
            profile_extra={"engine": "hf", "engine_version": "transformers 4.57.1", "kernels": ["Linear"],
                           "bs1_decode_tokens_per_s": 10.0, "bs1_latency_p50_ms": 3200.0})
    add_run(s, strategy="rtn", bits=4, correct=WEAK, weight_bytes=2_700_000, ttft_ms=30.0,
            profile_extra={"bs1_decode_tokens_per_s": 20.0})
    add_run(s, correct=GOOD, weight_bytes=13_000_000, ttft_ms=8.0, engine="vllm",
            profile_extra={**VLLM, "bs1_decode_tokens_per_s": 100.0, "bs1_itl_p50_ms": 10.2})
    add_run(s, strategy="rtn", bits=4, correct=GOOD, weight_bytes=2_700_000, ttft_ms=9.0, engine="vllm",
            profile_extra={**VLLM, "bs1_itl_p50_ms": 20.0, "quant_method": "compressed-tensors",
                           "kernels": ["CPUWNA16LinearKernel"]})
    add_run(s, strategy="rtn", bits=8, correct=GOOD, weight_bytes=4_300_000, ttft_ms=None)
    s.close()
    return path


def divergence(kl: float, reference_run: str, *, spread: float = 0.25, lost: int = 0, gained: int = 0,
               top_k: int | None = None, problems: int = N, tokens: int = 7 * N, top1: float = 0.99,
               engine: str = "hf") -> dict:
    """Stored divergence figures of one benchmark (as :func:`harness.runs.divergence.measure_divergence`
    stores them), the interval ``spread`` of the value either side."""
    return {"kl_mean": {"value": kl, "lo": kl * (1 - spread), "hi": kl * (1 + spread)}, "kl_p99": kl * 10,
            "top1_agree": top1, "nll_delta": kl / 2,
            "flips": {"lost": lost, "gained": gained, "problems": problems, "lost_rate": lost / problems,
                      "gained_rate": gained / problems},
            "reference_run": reference_run, "engine": engine, "top_k": top_k, "problems": problems, "tokens": tokens}


#: the KL of each divergence row, chosen to span more than a decade
KL_W8, KL_W4, KL_W4_GPTQ = 0.002, 0.08, 0.03
KL_SEEDS = (0.1, 0.2, 0.3)


def build_divergence_store(path: Path) -> Path:
    """Rows with divergence from their full-precision reference (hf, 60 problems unless said):

    - ``base`` bf16 (the reference, seeds 0, 1, 2), 13 MB, 90 %;
    - ``rtn W8A16``: 4.3 MB, 90 %, KL 0.002 (exact), lost 1 / gained 1;
    - ``rtn W4A16`` and ``rtn W4A16 symmetric=false``: 2.7 MB each, both 90 % (an accuracy tie), KL 0.08
      and 0.03: only the KL front tells the recipes apart;
    - ``rtn W2A16``: three seeds, 2.0 MB, 45 %, KL 0.1/0.2/0.3 by seed (their mean and range);
    - ``rtn W3A16`` evaluated on 30 problems: 1.5 MB, 100 %: on no 60-problem front;
    - a vllm ``base`` and ``rtn W4A16`` whose KL is a top-20 approximation.
    """
    s = Store(path)
    refs = [add_run(s, seed=seed, correct=GOOD, weight_bytes=13_000_000) for seed in range(3)]
    ref = refs[0]
    for bits, kl, opts in ((8, KL_W8, None), (4, KL_W4, None), (4, KL_W4_GPTQ, {"symmetric": "false"})):
        rid = add_run(s, strategy="rtn", bits=bits, correct=GOOD, weight_bytes=4_300_000 if bits == 8 else 2_700_000,
                      strategy_opts=opts)
        s.set_divergence(rid, "arith", divergence(kl, ref, lost=1 if bits == 8 else 3, gained=1))
    for seed, kl in enumerate(KL_SEEDS):
        rid = add_run(s, strategy="rtn", bits=2, seed=seed, correct=WEAK, weight_bytes=2_000_000)
        s.set_divergence(rid, "arith", divergence(kl, refs[seed], lost=27 + seed, gained=seed))
    short_ref = add_run(s, correct=set(range(30)), weight_bytes=13_000_000, n=30)
    rid = add_run(s, strategy="rtn", bits=3, correct=set(range(30)), weight_bytes=1_500_000, n=30)
    s.set_divergence(rid, "arith", divergence(0.05, short_ref, problems=30, tokens=7 * 30))
    vllm_ref = add_run(s, correct=GOOD, weight_bytes=13_000_000, engine="vllm", profile_extra=VLLM)
    rid = add_run(s, strategy="rtn", bits=4, correct=GOOD, weight_bytes=2_700_000, engine="vllm", profile_extra=VLLM)
    s.set_divergence(rid, "arith", divergence(0.04, vllm_ref, top_k=20, engine="vllm"))
    s.close()
    return path
