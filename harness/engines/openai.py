"""``openai``: any OpenAI-compatible completions server (a remote vLLM, SGLang, llama.cpp's server).

``--engine openai --engine-url http://host:port`` sends the evaluation's
requests to a server that is already running; ``vllm`` starts one and uses
this same client. One request per (prompt, sample), ``n=1`` each with its own
seed: every server supports it, greedy decoding forbids ``n>1`` on vLLM, and
each completion's ``usage.completion_tokens`` is then exact. Requests run
concurrently (``batch_size`` at a time), so the server batches them as it
would serve users; results reach ``on_batch`` as they finish, so a server that
dies mid-evaluation loses only what was in flight. A stop (Ctrl-C, SIGTERM) cancels
the requests in flight at once (:meth:`CompletionsClient.cancel`) instead of waiting for them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from harness import hookimpl
from harness.api import Completion, Engine, EngineSettings, OnBatch, Session
from harness.base.errors import HarnessError, UserError
from harness.engines.server import INTERRUPT_GRACE_S, Streamed, tracking_backend

CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 600.0
#: seconds an idle pooled connection is reused for: well under uvicorn's (and so vLLM's) 5 s keep-alive, so the
#: client does not pick a connection the server is closing at that moment
KEEPALIVE_EXPIRY_S = 2.0

T = TypeVar("T")


class EngineError(HarnessError):
    """A server failed during a run (it died, or answered with an error): one line, exit 2."""


class Cancelled(EngineError):
    """A request the client was told to give up (:meth:`CompletionsClient.cancel`)."""


@dataclass
class OpenAIOptions:
    send_token_ids: bool = field(
        default=False,
        metadata={"help": "send prompts as token ids from the run's tokenizer instead of text (the server "
                          "must serve the same tokenizer; exact inputs whatever special tokens it would add)"},
    )
    model_name: str = field(default="", metadata={"help": "model name to request; default: the server's first"})


class CompletionsClient:
    """The ``/v1/completions`` API of one server, shared by threads (httpx clients are thread-safe)."""

    def __init__(self, url: str, model: str | None = None, timeout_s: float = REQUEST_TIMEOUT_S,
                 defaults: dict[str, Any] | None = None, counts_stop_token: bool = True):
        """``defaults``: body fields every request carries (a server's own sampling defaults that would change a
        greedy answer, e.g. llama-cpp-python's repeat penalty); ``counts_stop_token``: False for a server whose
        ``completion_tokens`` leaves out the end-of-sequence token that ended a completion (the harness counts
        it, as transformers and vLLM do)."""
        import httpx

        self.url = url.rstrip("/").removesuffix("/v1")
        limits = httpx.Limits(max_connections=512, max_keepalive_connections=512, keepalive_expiry=KEEPALIVE_EXPIRY_S)
        transport = httpx.HTTPTransport(limits=limits)
        self._backend = tracking_backend()
        transport._pool._network_backend = self._backend  # httpcore's pool takes no backend through httpx
        self.http = httpx.Client(base_url=self.url, timeout=httpx.Timeout(timeout_s, connect=CONNECT_TIMEOUT_S),
                                 transport=transport)
        self._model = model
        self._timeout_s = timeout_s
        self.defaults = dict(defaults or {})
        self.counts_stop_token = counts_stop_token

    def fork(self) -> CompletionsClient:
        """A client of the same server with connections of its own: cancelling one leaves the other alone."""
        return CompletionsClient(self.url, self._model, self._timeout_s, self.defaults, self.counts_stop_token)

    def cancel(self) -> None:
        """Give up every request in flight now (their threads raise :class:`Cancelled` at once) and refuse new
        ones; the server sees the connections close and stops generating for them."""
        self._backend.cancel()

    @property
    def cancelled(self) -> bool:
        return self._backend.cancelled

    def _sent(self, what: str, send: Callable[[], T]) -> T:
        """``send()``, once more if the server dropped it on a kept-alive connection; else EngineError.

        A server that closes an idle connection just as a request goes out on it closes the socket without
        a byte of response: it never saw the request, so sending it again on a fresh connection is safe
        (a completion request holds no state, and its seed fixes its answer). A server that died fails the
        health check and is reported as it is.
        """
        import httpx

        for attempt in (1, 2):
            if self.cancelled:
                raise Cancelled(f"{what} to {self.url} cancelled")
            try:
                out = send()
            except httpx.HTTPError as exc:
                if self.cancelled:
                    raise Cancelled(f"{what} to {self.url} cancelled") from None
                dropped = (isinstance(exc, httpx.RemoteProtocolError) and "without sending a response" in str(exc)
                           and self.healthy())
                if attempt == 2 or not dropped:
                    raise EngineError(f"{what} to {self.url} failed: {type(exc).__name__}: {exc}") from None
                continue
            if self.cancelled:  # a shut socket can read as the normal end of a response: not an answer
                raise Cancelled(f"{what} to {self.url} cancelled")
            return out
        raise AssertionError("unreachable: the second attempt returns or raises")

    def close(self) -> None:
        self.http.close()

    def answers(self) -> str | None:
        """None when the server answers ``/v1/models``, else why not (one line)."""
        import httpx

        try:
            r = self.http.get("/v1/models", timeout=CONNECT_TIMEOUT_S)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if r.status_code != 200:
            return f"GET /v1/models answered HTTP {r.status_code}"
        return None

    def healthy(self) -> bool:
        import httpx

        try:
            return self.http.get("/health", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    @property
    def model(self) -> str:
        if not self._model:
            data = self.http.get("/v1/models").json().get("data") or []
            if not data:
                raise EngineError(f"the server at {self.url} serves no model")
            self._model = data[0]["id"]
        return self._model

    def body(self, prompt: str | list[int], max_tokens: int, temperature: float, top_p: float,
             seed: int | None, **extra: Any) -> dict[str, Any]:
        body = {**self.defaults, "model": self.model, "prompt": prompt, "max_tokens": max_tokens,
                "temperature": temperature, "top_p": top_p, "n": 1, **extra}
        if seed is not None:
            body["seed"] = seed
        return body

    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """The completions API's answer to ``body``; raises :class:`EngineError` naming the server when it fails."""
        r = self._sent("request", lambda: self.http.post("/v1/completions", json=body))
        if r.status_code != 200:
            raise EngineError(f"{self.url}/v1/completions answered HTTP {r.status_code}: {r.text[:300]}")
        return r.json()

    def complete(self, prompt: str | list[int], max_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
                 seed: int | None = None, **extra: Any) -> Completion:
        """One completion; raises :class:`EngineError` naming the server when it fails."""
        data = self.post(self.body(prompt, max_tokens, temperature, top_p, seed, **extra))
        choice = data["choices"][0]
        tokens = int(data["usage"]["completion_tokens"])
        if not self.counts_stop_token and choice.get("finish_reason") == "stop":
            tokens += 1  # the end-of-sequence token that stopped it
        return Completion(choice["text"], tokens)

    def stream(self, prompt: str | list[int], max_tokens: int, into: Streamed | None = None,
               **extra: Any) -> tuple[float, list[float], int]:
        """A streamed greedy completion: (start, arrival time of each chunk, completion tokens).

        ``into`` sees the arrivals as they come, so a caller still has them when the stream is cancelled."""
        import json
        import time

        body = self.body(prompt, max_tokens, 0.0, 1.0, None, stream=True,
                         stream_options={"include_usage": True}, **extra)
        seen = into if into is not None else Streamed()

        def send() -> tuple[float, list[float], int]:  # timed from its own start: a resend is timed afresh
            seen.times.clear()
            seen.done = False
            seen.start = time.perf_counter()
            with self.http.stream("POST", "/v1/completions", json=body) as r:
                if r.status_code != 200:
                    raise EngineError(f"{self.url}/v1/completions (stream) answered HTTP {r.status_code}")
                for line in r.iter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    now = time.perf_counter()
                    if chunk.get("choices"):  # one chunk per decode step (its text may be empty: a partial character)
                        seen.times.append(now)
                    if chunk.get("usage"):
                        seen.tokens = int(chunk["usage"]["completion_tokens"])
            seen.done = not self.cancelled  # a shut socket can read as the end of the response
            return seen.start, list(seen.times), seen.tokens or len(seen.times)

        return self._sent("streamed request", send)


class ServerSession(Session):
    """Generation and profiling through :class:`CompletionsClient`; ``server`` is set when we started it."""

    def __init__(self, engine: str, client: CompletionsClient, model_dir: Path | None, options: OpenAIOptions,
                 server=None, version: str | None = None, log_path: Path | None = None, device: str | None = None,
                 console: Any = None):
        self.engine = engine
        self.console = console  #: where progress lines go (the run's stderr console)
        self.device = device  #: where the server computes, as the run resolved it (None: not known)
        self.client = client
        self.model_dir = Path(model_dir) if model_dir else None
        self.options = options
        self.server = server
        self.version = version
        self.log_path = log_path
        self.compute_dtype: str | None = None  # the server's compute dtype, when the harness chose it
        self._tokenizer = None

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from harness.base.model import load_tokenizer

            self._tokenizer = load_tokenizer(self.model_dir)
        return self._tokenizer

    def encode(self, prompt: str) -> str | list[int]:
        if self.options.send_token_ids and self.model_dir is not None:
            return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        return prompt

    def generate(self, prompts: Sequence[str], sampling, batch_size: int = 64, seed: int = 0,
                 on_batch: OnBatch | None = None) -> list[list[Completion]]:
        """Every (prompt, sample) as its own request, ``batch_size`` in flight; ``on_batch`` every
        ``batch_size`` finished prompts (and with what finished before a failure, before it is raised)."""
        results: list[list[Completion | None]] = [[None] * sampling.n for _ in prompts]
        missing = [sampling.n] * len(prompts)
        encoded = [self.encode(p) for p in prompts]
        finished: list[int] = []
        lock = threading.Lock()

        def one(i: int, k: int) -> None:
            sample_seed = None if sampling.greedy else seed * 100_003 + i * 1_009 + k
            c = self.client.complete(encoded[i], sampling.max_new_tokens, sampling.temperature, sampling.top_p,
                                     sample_seed)
            with lock:
                results[i][k] = c
                missing[i] -= 1
                if missing[i] == 0:
                    finished.append(i)

        def flush(force: bool) -> None:
            with lock:
                if not finished or (len(finished) < batch_size and not force):
                    return
                idx = list(finished)
                finished.clear()
            if on_batch:
                on_batch(idx, [list(results[i]) for i in idx])

        pool = ThreadPoolExecutor(max_workers=max(1, batch_size), thread_name_prefix=f"{self.engine}-request")
        pending = {pool.submit(one, i, k) for i in range(len(prompts)) for k in range(sampling.n)}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    f.result()
                flush(False)
        except BaseException as exc:
            stopped = isinstance(exc, KeyboardInterrupt)  # Ctrl-C, SIGTERM, SIGHUP: a stop, at once
            if stopped:
                self.client.cancel()  # the requests in flight end now, and the interpreter's exit never waits
            pool.shutdown(wait=False, cancel_futures=True)
            flush(True)
            if not stopped:
                self._explain_failure()
            raise
        pool.shutdown()
        flush(True)
        return results  # type: ignore[return-value]

    def _explain_failure(self) -> None:
        import subprocess

        if self.server is None:
            return
        try:
            self.server.proc.wait(timeout=5)  # a server that died takes its guard with it within seconds
        except subprocess.TimeoutExpired:
            return
        if not self.server.alive():
            from harness.engines.server import log_tail

            raise EngineError(
                f"the {self.engine} server died during the evaluation (exit status {self.server.proc.returncode}); "
                f"the samples already finished are stored: run the same command to resume. "
                f"Last lines of {self.log_path}:\n{log_tail(self.log_path, 8)}"
            )

    def measure(self):
        from harness.engines.serving_profile import ServerWatch

        return ServerWatch(self)

    def profile(self, prompts: Sequence[str], config, settings, timings: dict, eval_stats=None,
                quant: dict | None = None) -> dict[str, Any]:
        from harness.engines.serving_profile import profile_server

        device = self.device or (config.device if config.device != "auto" else None)
        return profile_server(self, prompts, config, settings, timings, eval_stats, quant or {}, device)

    def stop(self, grace_s: float | None = None) -> None:
        self.client.cancel()  # whatever is still in flight (a stop mid-request): the server sees it go
        self.client.close()
        if self.server is not None:
            self.server.stop(grace_s)

    def __exit__(self, exc_type, *exc: object) -> None:
        """A stop (Ctrl-C, SIGTERM) gives a server we started a short grace: the harness ends within seconds."""
        interrupted = exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
        self.stop(INTERRUPT_GRACE_S if interrupted else None)


class OpenAIEngine(Engine):
    name = "openai"
    description = "an OpenAI-compatible completions server already running at --engine-url"
    #: whatever the server loads: the harness cannot see its checkpoint, so it refuses nothing
    formats = ("*",)
    #: ...and for the same reason it is never offered as an engine that can run a given checkpoint
    runs_checkpoint = False
    devices = ("cpu", "cuda")
    options_class = OpenAIOptions

    def unavailable_reason(self, settings: EngineSettings | None = None) -> str | None:
        if settings is None:
            return None
        if not settings.url:
            return "give the server's address with --engine-url URL (e.g. http://127.0.0.1:8000)"
        client = CompletionsClient(settings.url)
        try:
            why = client.answers()
        finally:
            client.close()
        return f"the server at {settings.url} does not answer ({why})" if why else None

    def start(self, model_dir: Path, settings: EngineSettings) -> ServerSession:
        options = settings.options or OpenAIOptions()
        client = CompletionsClient(settings.url, options.model_name or None)
        why = client.answers()
        if why:
            client.close()
            raise UserError(f"engine 'openai': the server at {settings.url} does not answer ({why})")
        version = None
        try:
            r = client.http.get("/version", timeout=CONNECT_TIMEOUT_S)
            version = r.json().get("version") if r.status_code == 200 else None
        except Exception:
            version = None
        return ServerSession(self.name, client, model_dir, options, version=version, device=settings.device,
                             console=settings.console)


@hookimpl
def register_engines(register):
    register(OpenAIEngine())
