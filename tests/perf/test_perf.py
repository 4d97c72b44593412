"""Performance suite: generation throughput per strategy, the grader, the evaluation loop's overhead,
and throughput against lm-evaluation-harness's transformers backend.

Speed targets live here, not in the unit tests. Timings on a shared CPU are
noisy, so targets compare ratios measured in one process (forward time over
wall time, our throughput over lm-eval's on the same outputs), never
absolute times.
"""

from __future__ import annotations

import itertools
import os
import statistics
import time

import pytest

GEN_TOKENS = 32
BATCH = 32
#: issue 6's targets: recorded in the benchmark JSON; asserted only with HARNESS_PERF_STRICT=1
#: (on a quiet machine), because on a shared 2-core runner other jobs move them
FORWARD_SHARE_TARGET = 0.9
LM_EVAL_RATIO_TARGET = 1.0
STRICT = os.environ.get("HARNESS_PERF_STRICT") == "1"

#: (strategy, bits); the quantized ones quantize the model first (a few seconds each)
STRATEGIES = [
    pytest.param(s, b, id=f"{s}{b or ''}", marks=[pytest.mark.slow] if s != "none" else [])
    for s, b in [("none", None), ("rtn", 8), ("rtn", 4), ("bnb", 8), ("bnb", 4)]
]


def _median_s(benchmark) -> float | None:
    """Median seconds of one call when benchmarking, None when benchmarks are disabled."""
    stats = getattr(benchmark, "stats", None)
    return stats.stats.median if stats else None


@pytest.mark.parametrize("strategy,bits", STRATEGIES)
def test_generation_throughput(benchmark, loaded, problems, prompt_for, strategy, bits):
    from harness.core.config import Sampling
    from harness.toolkit.generation import generate

    model, tokenizer = loaded(strategy, bits)
    prompts = [prompt_for(p) for p in problems]
    sampling = Sampling(max_new_tokens=GEN_TOKENS)
    out = benchmark(generate, model, tokenizer, prompts, sampling, batch_size=BATCH)
    tokens = sum(c[0].n_tokens for c in out)
    assert len(out) == len(prompts) and all(len(c) == 1 for c in out)
    assert 0 < tokens <= len(prompts) * GEN_TOKENS
    median = _median_s(benchmark)
    benchmark.extra_info.update(tokens=tokens, prompts=len(prompts), tokens_per_s=tokens / median if median else None)


SYMBOLIC = [  # answers math-verify has to parse and compare (MATH-style)
    ("so \\boxed{\\frac{1}{2}}", "0.5", True),
    ("\\boxed{x^2+2x+1}", "(x+1)^2", True),
    ("\\boxed{(1,2)}", "(1, 2)", True),
    ("\\boxed{\\pi}", "3.14", False),
    ("\\boxed{3n}", "3", False),
]


def _arith_cases(problems) -> list[tuple[str, str, bool]]:
    cases = []
    for p in problems:
        cases += [
            (f"Step by step... so the answer is \\boxed{{{p.answer}}}.", p.answer, True),
            (f"The result is \\boxed{{{p.answer}1}}", p.answer, False),
            (f"I think it is {p.answer}, but no box.", p.answer, False),
            (f"\\boxed{{{p.answer}.0}}", p.answer, True),
        ]
    return cases


#: free-form completions graded with extraction="lenient" (issue 19): no box, no "the answer is"
LENIENT = [
    ("We add them up.\nAnswer: $\\frac{1}{3}$", "1/3", True),
    ("Multiplying out, so we get $x^2+2x+1$.", "(x+1)^2", True),
    ("The final display is\n\\[ 12 \\]", "12", True),
    ("Counting again gives 41 ways. I hope it is correct.", "42", False),
    ("so the two solutions are $x = 2$ and $x = 5$.", "2, 5", True),
]
#: answers in several boxes against a reference with several parts
MULTIPART = [
    ("\\boxed{(1, 2)}, \\boxed{(2, 1)}", "(1,2),(2,1)", True),
    ("\\boxed{2} and \\boxed{5}", "2, 5", True),
    ("\\boxed{7}", "2, 5", False),
]


@pytest.mark.parametrize("kind", ["arith", "symbolic", "lenient", "multipart"])
def test_grader_throughput(benchmark, problems, kind):
    """Completions graded per second, cold (every cache cleared each round): the RL reward's hot path.

    Issue 19's target: arith and symbolic within 20% of the grader before it.
    Measured against a copy of that grader in one process, alternating rounds
    (busy 2-core machine, 30 rounds, medians): arith 2.7-4.1x its throughput,
    symbolic 0.96-1.01x. ``lenient`` and ``multipart`` have no earlier baseline.
    """
    from harness import grading

    cases = {"arith": _arith_cases(problems), "symbolic": SYMBOLIC, "lenient": LENIENT, "multipart": MULTIPART}[kind]
    extraction = "lenient" if kind == "lenient" else "strict"

    def grade_all() -> list[bool]:
        grading.clear_caches()  # cold: a run grades each completion once
        return [grading.grade(c, ref, extraction=extraction) for c, ref, _ in cases]

    grade_all()  # imports (sympy, math-verify) are not the grader's throughput
    verdicts = benchmark(grade_all)
    assert verdicts == [want for *_, want in cases]
    median = _median_s(benchmark)
    benchmark.extra_info.update(completions=len(cases), per_s=len(cases) / median if median else None)


def test_evaluation_loop_overhead(benchmark, loaded, problems, prompt_for, tmp_path):
    """Share of the evaluation's wall time spent in the model's forward (the rest is the loop's overhead)."""
    from harness.base.memory import watch
    from harness.core.config import Sampling
    from harness.engines.hf import HFSession
    from harness.runs.evaluation import evaluate
    from harness.runs.store import Store

    model, tokenizer = loaded("none", None)
    store = Store(tmp_path / "results.db")
    runs = itertools.count()
    shares: list[float] = []

    def evaluate_once():
        run_id = f"perf-{next(runs)}"  # a fresh run each round: evaluate() skips stored samples
        with watch(model, "cpu") as w:
            timing = evaluate(store, run_id, "arith", problems, HFSession(model, tokenizer), prompt_for,
                              Sampling(max_new_tokens=GEN_TOKENS), BATCH, 0)
        shares.append(w.stats.forward_share)
        return timing

    timing = benchmark(evaluate_once)
    assert timing.problems == len(problems) and timing.tokens > 0
    assert len(store.samples("perf-0")) == len(problems)
    share = statistics.median(shares)
    benchmark.extra_info.update(forward_share=share, target=FORWARD_SHARE_TARGET, rounds=len(shares))
    assert 0 < share <= 1
    benchmark.extra_info["meets_target"] = share >= FORWARD_SHARE_TARGET
    if STRICT:
        assert share >= FORWARD_SHARE_TARGET, f"model forward is only {share:.0%} of evaluation wall time"


def test_throughput_against_lm_eval(benchmark, loaded, problems, prompt_for):
    """Same greedy outputs as lm-eval's HFLM on the same problems, at least its throughput."""
    pytest.importorskip("lm_eval", reason="lm-eval is optional: pip install lm_eval to compare")
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from harness.core.config import Sampling
    from harness.toolkit.generation import generate

    model, tokenizer = loaded("none", None)
    prompts = [prompt_for(p) for p in problems]
    batch = len(prompts)  # one batch: both sides pad identically, so greedy outputs must agree
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch, max_length=4096, device="cpu")
    eos = tokenizer.decode([tokenizer.eos_token_id])
    requests = [
        Instance(request_type="generate_until", doc={}, idx=i,
                 arguments=(p, {"until": [eos], "max_gen_toks": GEN_TOKENS, "do_sample": False}))
        for i, p in enumerate(prompts)
    ]

    def ours():
        return generate(model, tokenizer, prompts, Sampling(max_new_tokens=GEN_TOKENS), batch_size=batch)

    def theirs():
        return lm.generate_until(requests, disable_tqdm=True)

    ours(), theirs()  # warm-up
    t_ours, t_theirs = [], []
    for _ in range(3):  # alternate, so load on the machine hits both alike
        start = time.perf_counter()
        mine = ours()
        t_ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        other = theirs()
        t_theirs.append(time.perf_counter() - start)
    assert [c[0].text for c in mine] == other
    tokens = sum(c[0].n_tokens for c in mine)
    ratio = statistics.median(t_theirs) / statistics.median(t_ours)
    benchmark.extra_info.update(
        tokens=tokens, harness_tokens_per_s=tokens / statistics.median(t_ours),
        lm_eval_tokens_per_s=tokens / statistics.median(t_theirs), speed_ratio=ratio,
    )
    benchmark.extra_info["meets_target"] = ratio >= LM_EVAL_RATIO_TARGET
    benchmark(ours)
    if STRICT:
        assert ratio >= LM_EVAL_RATIO_TARGET, f"harness throughput is {ratio:.2f}x lm-eval's"
