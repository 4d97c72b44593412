"""``llamacpp``: llama.cpp's OpenAI-compatible server (llama-cpp-python's), started from its own environment.

GGUF files only (the ``gguf`` strategy's), on llama.cpp's integer kernels, which run on any x86 CPU (vLLM's
CPU build runs 4-bit weights only with AVX-512). The environment is found like vLLM's: ``--llamacpp-python``,
else ``HARNESS_LLAMACPP_PYTHON``, else ``.venv-llamacpp/`` beside the checkout
(``scripts/setup_llamacpp_env.sh`` makes it). The server runs on a free loopback port with as many threads
as the harness may use cores (the first N under ``--threads N``), is health-checked through ``/v1/models``
(it has no ``/health``) with a progress line, and is stopped on every exit path by the guard vLLM's server
uses (:mod:`harness.engines.server`).

Prompts are sent as text: the server tokenizes with the GGUF file's vocabulary, which the converter wrote
from the model's tokenizer (token ids equal transformers', tests/test_gguf.py). The server answers one
request at a time, so "concurrent" profile requests queue: its batched figures are those of a server that
serves one user at a time, which is how llama-cpp-python's server runs.

Teacher-forced scoring (the divergence stage) does not go through the server: its prompt log-probabilities
are keyed by token text, need the whole model re-run with every position's logits per request, and (from
reading its source, not measured) are aligned to the wrong positions when the vocabulary has no BOS token.
The session scores in one process of the engine's environment instead (``llama_cpp.Llama`` with
``logits_all``, :func:`harness.toolkit.llamacpp.score`), on the token ids transformers' tokenizer gives
(equal to the file's), keeping each position's top :data:`SCORE_TOP_K`, as a vLLM server is scored, so the
figure is labelled as that top-k approximation. A GGUF run's reference is the F32 GGUF of the same model on
this engine (the ``gguf`` strategy's ``reference_bits``).
"""

from __future__ import annotations

import re
import shlex
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import hookimpl
from harness.api import DtypeChoice, Engine, EngineSettings, TokenScores, UserError
from harness.base.options import shell_words
from harness.base.threads import server_cores
from harness.engines.openai import CompletionsClient, OpenAIOptions, ServerSession
from harness.engines.server import ServerProcess, free_port
from harness.toolkit import llamacpp

#: the name the server answers to (``--model_alias``)
SERVED_NAME = "harness"
#: llama-cpp-python's completion defaults that are not the harness's sampling: a repeat penalty of 1.1 (measured:
#: with it, greedy F32 answers matched transformers' on 53 of 100 arith problems; "15 * 2 = 90" became "105"
#: because the digits repeat), top-k 40 and min-p 0.05 (no effect on greedy, but they truncate sampled decoding)
GREEDY_AS_HF = {"repeat_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0, "top_k": 0, "min_p": 0.0}
#: log-probabilities kept per position when scoring (as for vLLM's prompt_logprobs)
SCORE_TOP_K = 20
#: what llama.cpp's loader prints about the file it loaded ("print_info: file type   = Q4_K - Medium")
_FILE_TYPE = re.compile(r"file type\s*=\s*(.+?)\s*$", re.MULTILINE)


class LlamaCppSession(ServerSession):
    """A session on a llama.cpp server the harness started: its profile names the GGUF type the server loaded,
    as its log says, beside the file's name; it scores text with llama.cpp in a process of its own."""

    score_top_k = SCORE_TOP_K
    #: the engine environment's Python, the server's thread count and context window: what scoring uses too
    python: str = ""
    threads: int = 1
    n_ctx: int = 2048

    def score(self, pairs: Sequence[tuple[str, str]], batch_size: int = 8) -> Iterator[TokenScores]:
        """Teacher-forced top-k log-probabilities from llama.cpp's own forward pass over the GGUF file: prompt and
        continuation tokenized apart by the model's tokenizer and joined (``batch_size`` is not used: one process
        scores the pairs in order)."""
        ids = [tuple(self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in pair) for pair in pairs]
        scored = llamacpp.score(llamacpp.gguf_file(self.model_dir), self.python,
                                ((p, c) for p, c in ids if p and c), self.score_top_k, self.threads, self.n_ctx)
        for prompt, continuation in ids:
            if not prompt or not continuation:
                yield TokenScores([], [], top=[])
                continue
            target_logprobs, top = next(scored)
            yield TokenScores(list(continuation), target_logprobs, top=top)

    def profile(self, prompts: Sequence[str], config, settings, timings: dict, eval_stats=None,
                quant: dict | None = None) -> dict[str, Any]:
        out = super().profile(prompts, config, settings, timings, eval_stats, quant)
        gguf = llamacpp.gguf_file(self.model_dir) if self.model_dir else None
        log = self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""
        loaded = _FILE_TYPE.findall(log)
        out["quant_method"] = f"gguf {gguf.stem.removeprefix('model-')}" if gguf else "gguf"
        out["kernels"] = [f"llama.cpp {loaded[-1]}"] if loaded else []
        return out


@dataclass
class LlamaCppOptions:
    n_ctx: int = field(default=2048, metadata={"help": "the server's context window in tokens (--n_ctx)"})
    server_args: str = field(default="", metadata={
        "help": "extra llama_cpp.server flags, shell-quoted (e.g. '--n_batch 256'); part of the run's identity"})

    def __post_init__(self) -> None:
        if self.n_ctx < 1:
            raise ValueError(f"n_ctx must be >= 1, got {self.n_ctx}")
        shell_words(self.server_args, "server_args")


class LlamaCppEngine(Engine):
    name = "llamacpp"
    description = "llama.cpp's OpenAI-compatible server (llama-cpp-python), from its own environment " \
                  "(--llamacpp-python); GGUF files"
    formats = ("gguf",)
    devices = ("cpu",)
    options_class = LlamaCppOptions
    can_score = True  #: top-k log-probabilities (LlamaCppSession.score), against the F32 GGUF of the same model

    def compute_dtype(self, device: str, options: Any = None, artifact_format: str = "") -> DtypeChoice:
        return DtypeChoice("float32", "llama.cpp's CPU kernels: float32 activations against the GGUF type's "
                                      "weights (8-bit activations inside its integer dot products)")

    def unavailable_reason(self, settings: EngineSettings | None = None) -> str | None:
        explicit = settings.python if settings is not None else None
        return None if llamacpp.ENVIRONMENT.find(explicit) else llamacpp.ENVIRONMENT.missing_reason(explicit)

    def command(self, python: str, gguf: Path, port: int, options: LlamaCppOptions, threads: int) -> list[str]:
        return [python, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1", "--port", str(port),
                "--model_alias", SERVED_NAME, "--n_ctx", str(options.n_ctx), "--n_threads", str(threads),
                "--n_threads_batch", str(threads), *shlex.split(options.server_args)]

    def start(self, model_dir: Path, settings: EngineSettings) -> ServerSession:
        python = llamacpp.ENVIRONMENT.find(settings.python)
        if python is None:
            raise UserError(f"engine 'llamacpp' is unavailable: {llamacpp.ENVIRONMENT.missing_reason(settings.python)}")
        gguf = llamacpp.gguf_file(Path(model_dir))
        if gguf is None:
            raise UserError(f"engine 'llamacpp' runs GGUF files; {model_dir} holds none")
        options: LlamaCppOptions = settings.options or LlamaCppOptions()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        client = CompletionsClient(url, model=SERVED_NAME, defaults=GREEDY_AS_HF, counts_stop_token=False)
        log_dir = Path(settings.extra.get("log_dir") or tempfile.mkdtemp(prefix="harness-llamacpp-"))
        log_path = log_dir / f"llamacpp-{port}.log"
        threads = len(server_cores())
        command = self.command(python, gguf, port, options, threads)
        settings.say(f"[bold]llamacpp[/bold] starting the server on {gguf.name} ({threads} threads, port {port}, "
                     f"log {log_path})")
        server = ServerProcess(command, name="llama.cpp server", log_path=log_path,
                               health=lambda: client.answers() is None,
                               env=llamacpp.ENVIRONMENT.server_environment(python), say=settings.say)
        try:
            server.start()
        except BaseException:
            client.close()
            raise
        settings.say(f"[bold]llamacpp[/bold] healthy after {server.started_s:.0f} s")
        session = LlamaCppSession(self.name, client, model_dir, OpenAIOptions(send_token_ids=False,
                                                                               model_name=SERVED_NAME),
                                server=server, version=f"llama-cpp-python {llamacpp.library_version(python)}",
                                log_path=log_path, device=settings.device, console=settings.console)
        session.compute_dtype = self.compute_dtype(settings.device).dtype
        session.python, session.threads, session.n_ctx = python, threads, options.n_ctx
        return session


@hookimpl
def register_engines(register):
    register(LlamaCppEngine())
