"""llama.cpp for plugins: its environment, the GGUF quantization types, conversion and quantization.

Shared by the ``gguf`` strategy (which writes GGUF files) and the ``llamacpp`` engine (which serves them), so
that both use one llama.cpp release: the converter kept beside the engine's environment
(``scripts/setup_llamacpp_env.sh``) and its ``llama_model_quantize``. Conversion runs in the harness's own
environment through the versioned seam :mod:`harness.compat.llamacpp`; quantization runs in the engine's
environment, whose ``llama_cpp`` module holds the library.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.base.errors import UserError
from harness.compat import llamacpp as converter_seam
from harness.toolkit.environments import OwnEnvironment

if TYPE_CHECKING:
    import numpy as np

ENVIRONMENT = OwnEnvironment(
    what="llama.cpp", flag="--llamacpp-python", env_var="HARNESS_LLAMACPP_PYTHON", folder=".venv-llamacpp",
    create="scripts/setup_llamacpp_env.sh: llama-cpp-python[server] 0.3.36 built from source, about 19 min on "
           "two cores, and its converter",
)


@dataclass(frozen=True)
class GGUFType:
    """One of llama.cpp's quantization types (``llama_ftype``)."""

    name: str
    ftype: int  #: LLAMA_FTYPE_* in llama.h
    bits: int  #: the nominal weight bits the harness files it under (the k-quants mix widths: see the bpw)
    description: str


#: the types the harness offers (llama.h's LLAMA_FTYPE_MOSTLY_*), by name
TYPES: dict[str, GGUFType] = {t.name: t for t in (
    GGUFType("F32", 0, 32, "float32, unquantized"),
    GGUFType("F16", 1, 16, "float16"),
    GGUFType("Q8_0", 7, 8, "8-bit, blocks of 32 with an f16 scale"),
    GGUFType("Q6_K", 18, 6, "6-bit k-quant, super-blocks of 256"),
    GGUFType("Q5_K_M", 17, 5, "5-bit k-quant, some tensors at 6 bits"),
    GGUFType("Q5_0", 8, 5, "5-bit, blocks of 32"),
    GGUFType("Q4_K_M", 15, 4, "4-bit k-quant, attention V and FFN down at 6 bits in half the layers"),
    GGUFType("Q4_K_S", 14, 4, "4-bit k-quant"),
    GGUFType("Q4_0", 2, 4, "4-bit, blocks of 32 with an f16 scale"),
    GGUFType("Q3_K_M", 12, 3, "3-bit k-quant, some tensors at 4-5 bits"),
    GGUFType("Q3_K_S", 11, 3, "3-bit k-quant"),
    GGUFType("Q2_K", 10, 2, "2-bit k-quant, some tensors at 3-4 bits"),
)}
#: the type each ``--bits`` names when no type is given
TYPE_FOR_BITS = {32: "F32", 16: "F16", 8: "Q8_0", 6: "Q6_K", 5: "Q5_K_M", 4: "Q4_K_M", 3: "Q3_K_M", 2: "Q2_K"}

#: quantizes SRC into DST as FTYPE with NTHREAD threads, in the engine's environment (llama_cpp has the library);
#: IMATRIX, when given, is an .npz of {tensor name: mean squared input activations}, handed to llama.cpp as its
#: null-terminated array of llama_model_imatrix_data (the arrays stay referenced until the call returns)
_QUANTIZE = """
import ctypes, sys
import llama_cpp
src, dst, ftype, nthread = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
params = llama_cpp.llama_model_quantize_default_params()
params.ftype = ftype
params.nthread = nthread
held = []
if len(sys.argv) > 5:
    import numpy as np
    data = np.load(sys.argv[5])
    entries = (llama_cpp.llama_model_imatrix_data * (len(data.files) + 1))()
    for entry, name in zip(entries, data.files):
        values = np.ascontiguousarray(data[name], dtype=np.float32)
        held.append((name.encode(), values))
        entry.name, entry.size = held[-1][0], values.size
        entry.data = values.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
    params.imatrix = ctypes.cast(entries, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
sys.exit(llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params)))
"""
#: teacher-forced scoring in the engine's environment: GGUF THREADS K N_CTX; reads one JSON line [prompt ids,
#: continuation ids] per pair, writes one JSON line per pair: the continuation's log-probabilities under the file's
#: model (llama.cpp's own forward, every position's logits kept) and each position's top K
_SCORE = """
import json, sys
import numpy as np
import llama_cpp
gguf, threads, k, n_ctx = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
llm = llama_cpp.Llama(model_path=gguf, logits_all=True, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                      verbose=False)
for line in sys.stdin:
    prompt, continuation = json.loads(line)
    ids = prompt + continuation
    if len(ids) > n_ctx:
        sys.exit(f"error: {len(ids)} tokens do not fit the context of {n_ctx} (raise the engine's n_ctx)")
    llm.reset()
    llm.eval(ids)
    logits = np.asarray(llm.scores[len(prompt) - 1:len(ids) - 1], dtype=np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    top = np.argsort(-logp, axis=1, kind="stable")[:, :k]
    print(json.dumps({"target_logprobs": [float(logp[i, t]) for i, t in enumerate(continuation)],
                      "top": [[[int(t), float(logp[i, t])] for t in row] for i, row in enumerate(top)]}), flush=True)
"""
#: prints the llama-cpp-python version of the engine's environment
_VERSION = "import llama_cpp; print(llama_cpp.__version__)"


def gguf_type(name: str) -> GGUFType:
    """The type called ``name`` (any case); UserError naming the allowed ones."""
    found = TYPES.get(name.upper())
    if found is None:
        raise UserError(f"unknown GGUF type {name!r}; choose one of {', '.join(TYPES)}")
    return found


def converter_dir(python: str) -> Path:
    """The converter kept beside the environment of ``python`` (``scripts/setup_llamacpp_env.sh``)."""
    return Path(os.path.abspath(python)).parent.parent / "llama.cpp"


def environment_reason(explicit: str | None = None) -> str | None:
    """Why llama.cpp cannot be used here (no environment, no converter beside it), or None."""
    python = ENVIRONMENT.find(explicit)
    if python is None:
        return ENVIRONMENT.missing_reason(explicit)
    if not (converter_dir(python) / converter_seam.CONVERTER).is_file():
        return (f"the llama.cpp environment {Path(python).parent.parent} has no converter beside it "
                f"({converter_dir(python)}); rebuild it with scripts/setup_llamacpp_env.sh")
    return None


def library_version(python: str) -> str:
    """llama-cpp-python's version in the environment of ``python``."""
    return _run([python, "-c", _VERSION], "reading llama-cpp-python's version").strip()


def gguf_file(model_dir: Path) -> Path | None:
    """The GGUF file in ``model_dir`` (None when it holds none)."""
    found = sorted(Path(model_dir).glob("*.gguf"))
    return found[0] if found else None


def convert(model_dir: Path, outfile: Path, python: str, pre_tokenizer: str = "") -> Path:
    """``model_dir`` (transformers weights) converted to an f32 GGUF file by the environment's converter, run
    in this process's Python; a model the converter cannot read is refused in one line (its last error)."""
    directory = converter_dir(python)
    converter_seam.converter_version(directory)
    command = converter_seam.command(sys.executable, directory, pre_tokenizer, Path(model_dir), Path(outfile))
    _run(command, f"llama.cpp's converter cannot read the model in {model_dir}")
    return Path(outfile)


def quantize(src: Path, dst: Path, kind: GGUFType, python: str, threads: int, imatrix: Path | None = None) -> Path:
    """``src`` (an f32 GGUF file) quantized to ``kind`` by llama.cpp's ``llama_model_quantize``, weighting each
    input column's error by ``imatrix`` (:func:`write_imatrix`'s file) when given."""
    command = [python, "-c", _QUANTIZE, str(src), str(dst), str(kind.ftype), str(max(1, threads))]
    _run(command + ([str(imatrix)] if imatrix is not None else []),
         f"llama.cpp could not quantize {src.name} to {kind.name}")
    return Path(dst)


def write_imatrix(stats: dict[str, np.ndarray], gguf: Path, python: str, out: Path) -> tuple[Path, int]:
    """``stats`` (transformers weight name -> mean squared input activations) saved under the tensor names
    ``gguf`` (the converted file) gives them, as llama.cpp's converter names them; with how many of the
    file's tensors got one (the token embedding never does: it is a lookup, not a product)."""
    import numpy as np

    directory = converter_dir(python)
    with tempfile.TemporaryDirectory(prefix="harness-imatrix-") as tmp:
        names, mapped = Path(tmp) / "names.json", Path(tmp) / "mapped.json"
        names.write_text(json.dumps(sorted(stats)))
        _run(converter_seam.tensor_names_command(sys.executable, directory, Path(gguf), names, mapped),
             f"naming the importance matrix's tensors as {Path(gguf).name} does")
        to_file = json.loads(mapped.read_text())
    if not to_file:
        raise UserError(f"no tensor of {Path(gguf).name} matches the model's linear layers; the importance matrix "
                        "would be empty")
    np.savez(out, **{to_file[name]: stats[name] for name in sorted(to_file)})
    return Path(out), len(to_file)


def score(gguf: Path, python: str, pairs: Iterable[tuple[list[int], list[int]]], top_k: int, threads: int,
          n_ctx: int) -> Iterator[tuple[list[float], list[dict[int, float]]]]:
    """For each ``(prompt ids, continuation ids)``, in order: the continuation tokens' log-probabilities under
    ``gguf`` and each position's top ``top_k`` (token id -> log-probability), from llama.cpp's own forward pass
    in the engine's environment (one process for all pairs; its answers stream back as they are computed)."""
    # stderr goes to a file, not a pipe: llama.cpp's loader may write more than a pipe holds while we read stdout
    with tempfile.TemporaryFile("w+") as feed, tempfile.TemporaryFile("w+") as errors:
        for prompt, continuation in pairs:
            feed.write(json.dumps([prompt, continuation]) + "\n")
        feed.seek(0)
        proc = subprocess.Popen([python, "-c", _SCORE, str(gguf), str(max(1, threads)), str(top_k), str(n_ctx)],
                                stdin=feed, stdout=subprocess.PIPE, stderr=errors, text=True)
        try:
            for line in proc.stdout:
                answer = json.loads(line)
                yield answer["target_logprobs"], [{int(t): v for t, v in row} for row in answer["top"]]
            if proc.wait() != 0:
                errors.seek(0)
                raise UserError(f"llama.cpp could not score text with {Path(gguf).name}: "
                                f"{_failure_line(errors.read(), proc.returncode)}")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _run(command: list[str], failure: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise UserError(f"{failure}: {_failure_line(done.stderr or done.stdout, done.returncode)}")
    return done.stdout


def _failure_line(output: str, returncode: int) -> str:
    """The line of a failed process's output that says why: its last error line, else its last line."""
    lines = [line for line in output.splitlines() if line.strip()]
    last = next((line for line in reversed(lines) if "Error" in line or "error" in line),
                lines[-1] if lines else f"exit status {returncode}")
    return last.strip()
