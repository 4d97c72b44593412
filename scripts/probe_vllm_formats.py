"""What vLLM's CPU build does with each FP/MX checkpoint: loads (and with which kernel), refuses, or upcasts.

Run with the vLLM environment's Python on checkpoints written by the harness's ``fp8``/``nvfp4``/``mxfp4``
strategies (or llmcompressor's presets): ``.venv-vllm/bin/python scripts/probe_vllm_formats.py DIR [DIR ...]``.
Each checkpoint is loaded by vLLM's offline ``LLM`` in a fresh process (``--dtype X`` first, default bfloat16;
eager) and asked for 8 greedy tokens; the line printed per checkpoint says whether it generated, and the
kernel and error lines vLLM logged. The results are recorded in ``harness/engines/vllm.py``'s docstring.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

CHILD = """
import sys
from vllm import LLM, SamplingParams
if __name__ == "__main__":
    llm = LLM(model=sys.argv[1], dtype=sys.argv[2], enforce_eager=True, max_model_len=256)
    out = llm.generate(["12 + 34 = "], SamplingParams(max_tokens=8, temperature=0.0))
    print("GENERATED:", repr(out[0].outputs[0].text), flush=True)
"""

INTERESTING = re.compile(r"(Kernel|kernel|scheme|Scheme|quantization|upcast|dequant|not supported|NotImplemented|"
                         r"Error|error:)")


def probe(model_dir: str, dtype: str = "bfloat16", timeout: float = 900.0) -> dict:
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", VLLM_CPU_OMP_THREADS_BIND="0-1")
    try:
        proc = subprocess.run([sys.executable, "-c", CHILD, model_dir, dtype], capture_output=True, text=True,
                              timeout=timeout, env=env)
        log = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        return {"model": model_dir, "result": "timeout", "log": str(exc)[-300:]}
    generated = next((line for line in log.splitlines() if line.startswith("GENERATED:")), None)
    notes = sorted({m.strip()[-200:] for m in log.splitlines() if INTERESTING.search(m)})
    return {"model": model_dir, "dtype": dtype, "result": "generates" if generated else "fails",
            "output": generated, "notes": notes[-12:]}


if __name__ == "__main__":
    args = sys.argv[1:]
    dtype = "bfloat16"
    if args[:1] == ["--dtype"]:
        dtype, args = args[1], args[2:]
    for d in args:
        print(json.dumps(probe(d, dtype)), flush=True)
