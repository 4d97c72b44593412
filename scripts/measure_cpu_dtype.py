"""Which dtype each engine should compute in on this CPU: bf16 against fp32, measured alike.

Why: on CPUs the fast dtype depends on the vector extensions (AVX2, AVX-512, AVX512_BF16, AMX) and on
the engine's kernels, so the harness's per-engine CPU default (``harness.base.cpu_dtype``) is a table of
measurements, and this script is how a row of it is made or checked on a new CPU:

    python scripts/measure_cpu_dtype.py --model /tmp/qwen3-0.6b-shaped [--engines hf,vllm] [--json]

For each engine and dtype: batch-1 decode tokens/s and TTFT, and decode tokens/s with ``--batch``
requests at once, ``--gen`` greedy tokens each (end of sequence ignored), after one warm-up round.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

DTYPES = ("float32", "bfloat16")


def prompt_ids(model_dir: Path, batch: int) -> list[list[int]]:
    from harness.base.model import load_tokenizer
    from harness.core.plugin_manager import get_registry
    from harness.core.prompts import get_template
    from harness.toolkit.profiling import latency_inputs

    tok = load_tokenizer(model_dir)
    problems = get_registry().benchmarks.get("arith").load("test")[:batch]
    texts = [get_template("boxed").render(p.problem, tok) for p in problems]
    return latency_inputs(tok, texts, batch, None).tolist()


def hf_figures(model_dir: Path, ids: list[list[int]], dtype: str, gen: int) -> dict:
    import torch

    from harness.base.model import load_model, load_tokenizer
    from harness.toolkit.profiling import measure_latency

    model, tok = load_model(model_dir, "cpu", dtype=getattr(torch, dtype)), load_tokenizer(model_dir)
    out = {}
    for tag, rows in (("bs1", ids[:1]), ("batch", ids)):
        figures, _ = measure_latency(model, tok, torch.tensor(rows), gen, requests=2, warmup=1, device="cpu")
        out[f"{tag}_decode_tokens_per_s"] = figures.get("decode_tokens_per_s")
        out[f"{tag}_ttft_ms"] = figures.get("ttft_ms")
    return out


class _Silent:
    def add_task(self, *args, **kwargs) -> int:
        return 0

    def advance(self, *args, **kwargs) -> None:
        pass


def vllm_figures(model_dir: Path, ids: list[list[int]], dtype: str, gen: int) -> dict:
    from harness.core.engine import EngineSettings
    from harness.engines.serving_profile import _bs1_phase
    from harness.engines.vllm import VLLMEngine, VLLMOptions, find_python

    python = find_python(None)
    if python is None:
        raise SystemExit("no vLLM environment (HARNESS_VLLM_PYTHON or .venv-vllm)")
    with tempfile.TemporaryDirectory() as logs:
        settings = EngineSettings(device="cpu", options=VLLMOptions(dtype=dtype), python=python,
                                  extra={"log_dir": logs})
        with VLLMEngine().start(model_dir, settings) as session:
            out = {}
            for tag, rows in (("bs1", ids[:1]), ("batch", ids)):
                figures = _bs1_phase(session, rows, gen, 2, 1, _Silent())
                out[f"{tag}_decode_tokens_per_s"] = figures.get("decode_tokens_per_s")
                out[f"{tag}_ttft_ms"] = figures.get("ttft_ms")
            out["server_rss_bytes"] = session.server.rss_bytes()
    return out


MEASURE = {"hf": hf_figures, "vllm": vllm_figures}


def main() -> None:
    from harness.base.cpu_dtype import cpu_features

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--engines", default="hf,vllm")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--gen", type=int, default=32)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    ids = prompt_ids(args.model, args.batch)
    report = {"cpu_features": sorted(cpu_features()), "model": str(args.model), "batch": args.batch,
              "gen": args.gen, "engines": {}}
    for engine in args.engines.split(","):
        for dtype in DTYPES:
            start = time.perf_counter()
            figures = MEASURE[engine](args.model, ids, dtype, args.gen)
            figures["wall_s"] = round(time.perf_counter() - start, 1)
            report["engines"].setdefault(engine, {})[dtype] = figures
            print(f"{engine} {dtype}: " + ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}"
                                                    for k, v in figures.items()), flush=True)
    if args.json:
        print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
