"""The generation-engine interface: what runs an artifact, and how a run talks to it.

An engine says which artifact formats it can run and on which devices,
refuses before anything starts when it cannot (one line: the engine, the
format, the engines that can), and starts a :class:`Session` on a model
directory. A session generates completions (text and token counts) under the
run's sampling settings and measures latency and memory as *it* serves the
model, so a W4A16 row is timed on the int4 kernel that serves it, not on a
decompressed copy. Sessions are context managers that always stop what they
started (a server process, a worker process).

Engines are plugins (``register_engines``); the pipeline picks one by the
run's ``engine`` field and never branches on its name. What an engine can run
it declares (:attr:`Engine.formats`, :attr:`Engine.runs_checkpoint`), so no
engine names another; the formats themselves are plugins too
(:class:`ArtifactFormat`, ``register_formats``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.base.cpu_dtype import CpuClass, DtypeChoice, choose
from harness.base.errors import UserError

if TYPE_CHECKING:
    from harness.core.config import Sampling


class ArtifactFormat:
    """Base class for artifact-format plugins: one kind of written checkpoint, and how to tell it.

    Strategies name the format they write and engines the formats they run, both by :attr:`name`;
    a format object is what recognises a checkpoint already on disk (a model given by path, or a
    strategy that misdeclares), the way vLLM's quantization configs each claim their own checkpoints.
    Formats are plugins (``register_formats``), so a new one needs no edit of the harness;
    :func:`harness.core.formats.artifact_format` asks them in decreasing :attr:`priority`.
    """

    name: str = ""
    description: str = ""
    #: the formats are asked highest first (ties in registration order, built-ins first) and the first
    #: that recognises a checkpoint names it: a format that claims a subset of another's checkpoints
    #: (a finer compressed-tensors scheme) sets a higher priority than the one it refines
    priority: int = 0
    #: only engines that name it run it: one that runs "whatever the strategy loads" (``formats = ("*",)``,
    #: transformers in process) cannot load it (a GGUF file is llama.cpp's, not transformers')
    named_engines_only: bool = False

    def recognises(self, model_dir: Path, config: dict[str, Any]) -> bool:
        """Whether the checkpoint in ``model_dir`` is of this format. ``config`` is its parsed
        ``config.json`` (empty when it has none), read once for every format asked."""
        raise NotImplementedError


@dataclass
class Completion:
    """One completion: its text and how many tokens it took (stop token included)."""

    text: str
    n_tokens: int


#: ``on_batch(indices, completions)``: called as results finish, so callers store them at once
OnBatch = Callable[[list[int], list[list[Completion]]], None]


@dataclass
class EngineSettings:
    """What a session is started with, besides the model directory.

    ``options`` is the engine's options dataclass (``--engine-opt``);
    ``url`` and ``python`` say where a server is or which environment starts
    one (never part of a run's identity: they do not change a result).
    """

    device: str = "cpu"
    strategy: Any = None  # the Strategy whose artifact this is (its ``load`` for in-process engines)
    options: Any = None
    url: str | None = None
    python: str | None = None
    fresh_process: bool = False
    console: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def say(self, text: str) -> None:
        """A progress line on the run's console (stderr), or nowhere when there is none."""
        if self.console is not None:
            self.console.print(text)


@dataclass
class TokenScores:
    """One model's teacher-forced view of a text's continuation: what it would have said at each token.

    ``full`` holds the whole vocabulary's log-probabilities (a ``[T, V]``
    tensor) when the engine has them; a server gives each position's ``top``
    k instead. Divergence from a reference model is computed from either
    (:mod:`harness.toolkit.divergence`)."""

    targets: list[int]  #: the continuation's token ids, as the model's tokenizer splits it
    target_logprobs: list[float]  #: the model's log-probability of each of them
    full: Any = None  #: ``[T, V]`` log-probabilities over the whole vocabulary, or None
    top: list[dict[int, float]] | None = None  #: each position's top-k token id -> log-probability


class Session:
    """A started engine on one model directory: generate, score, profile, stop."""

    engine: str = ""
    #: the dtype the model computes in here ("float32", "bfloat16"), when the session knows it
    compute_dtype: str | None = None
    #: how many log-probabilities per position :meth:`score` gives (None: the whole vocabulary, exact)
    score_top_k: int | None = None

    def generate(
        self,
        prompts: Sequence[str],
        sampling: Sampling,
        batch_size: int = 64,
        seed: int = 0,
        on_batch: OnBatch | None = None,
    ) -> list[list[Completion]]:
        """``sampling.n`` completions per prompt, in the prompts' order; ``on_batch`` as they finish.

        ``batch_size`` is how many sequences run at once (a generate batch, or
        concurrent requests to a server)."""
        raise NotImplementedError

    def score(self, pairs: Sequence[tuple[str, str]], batch_size: int = 8) -> Iterator[TokenScores]:
        """For each ``(prompt, continuation)``, in order: the model's log-probabilities of the
        continuation's tokens given everything before them (teacher forcing).

        The prompt and the continuation are tokenized apart (no special tokens
        added) and joined, so two models with one tokenizer score the same ids."""
        raise NotImplementedError(f"engine {self.engine!r} cannot score a given text")

    def measure(self):
        """A context manager around the evaluation whose ``.stats`` (a ``PhaseStats``) go to :meth:`profile`."""
        raise NotImplementedError

    def profile(self, prompts: Sequence[str], config, settings, timings: dict, eval_stats=None,
                quant: dict | None = None) -> dict[str, Any]:
        """Latency and memory figures as this engine serves the model.

        The keys are ``harness.toolkit.profile_keys.PROFILE_KEYS``.

        The session knows its device from the :class:`EngineSettings` it was started with; no engine
        receives core's internal plan, so an engine plugin depends only on this interface.

        ``config`` is the run's :class:`~harness.core.config.RunConfig`, ``settings`` a
        :class:`~harness.toolkit.profiling.LatencySettings`, ``timings`` the evaluation's
        :class:`~harness.runs.evaluation.EvalTiming` per benchmark (empty when profiling alone),
        ``eval_stats`` what :meth:`measure` saw, ``quant`` the quantization report."""
        raise NotImplementedError

    def stop(self) -> None:
        """Release what the session holds. Safe to call twice."""

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Engine:
    """Base class for engine plugins."""

    name: str = ""
    description: str = ""
    #: names of the artifact formats this engine runs (:class:`ArtifactFormat`); "*" runs whatever the strategy loads
    formats: tuple[str, ...] = ()
    #: False for an engine that talks to a server already running a model it was not handed (``openai``): it
    #: accepts every format because it cannot see the checkpoint, so a refusal never names it as an engine
    #: that can run one
    runs_checkpoint: bool = True
    #: its sessions implement :meth:`Session.score` (teacher-forced log-probabilities): runs on it measure
    #: their divergence from the reference; on an engine without it the stage is left out of the run
    can_score: bool = False
    #: device kinds: "cpu", "cuda"
    devices: tuple[str, ...] = ("cpu", "cuda")
    #: True when it generates inside the harness's process (a run that trained here then
    #: evaluates in a fresh process, so that its profile is taken in a clean state)
    in_process: bool = False
    #: dataclass of ``--engine-opt`` options (fields that can change a result: they are the run's identity)
    options_class: type = object
    #: the dtype it computes in on each CPU class when nothing else decides (:mod:`harness.base.cpu_dtype`:
    #: measured per class, since whether bf16 beats fp32 depends on the CPU and the engine's kernels)
    cpu_dtypes: Mapping[CpuClass, DtypeChoice] = {}

    def unavailable_reason(self, settings: EngineSettings | None = None) -> str | None:
        """Why this engine cannot start here (an environment missing, a server not answering), or None."""
        return None

    def make_options(self, opts: dict[str, Any]) -> Any:
        from harness.base.options import build_options

        return build_options(self.options_class, opts, owner=f"engine {self.name!r}")

    def accepts(self, artifact_format: str, known_formats: Iterable[ArtifactFormat] = ()) -> bool:
        """Whether it runs ``artifact_format``: named in :attr:`formats`, or "*" and the format (among
        ``known_formats``, the registered ones) is not one only the engines that name it run."""
        if artifact_format in self.formats:
            return True
        return "*" in self.formats and not any(f.name == artifact_format and f.named_engines_only
                                               for f in known_formats)

    def alternatives(self, artifact_format: str, others: Iterable[Engine],
                     known_formats: Iterable[ArtifactFormat] = ()) -> list[str]:
        """The other engines that run checkpoints of ``artifact_format`` themselves: what a refusal offers."""
        known = list(known_formats)
        return [e.name for e in others
                if e.name != self.name and e.runs_checkpoint and e.accepts(artifact_format, known)]

    def check(self, artifact_format: str, device: str, others: Sequence[Engine] = (),
              settings: EngineSettings | None = None, known_formats: Iterable[ArtifactFormat] = ()) -> None:
        """Refuse before anything starts: a format or device this engine cannot run, or no environment.

        ``others`` are the other installed engines, named in the refusal when they can run the format;
        ``known_formats`` (the registered formats) describe the refused format in the same line."""
        known = list(known_formats)
        if not self.accepts(artifact_format, known):
            described = next((f.description for f in known if f.name == artifact_format), None)
            can = self.alternatives(artifact_format, others, known)
            raise UserError(
                f"engine {self.name!r} cannot run {artifact_format!r} artifacts"
                f"{f' ({described})' if described else ''}; engines that can: {', '.join(can) or 'none installed'}"
            )
        kind = device.split(":")[0]
        if kind not in self.devices:
            raise UserError(f"engine {self.name!r} runs on {', '.join(self.devices)}, not on {device!r}")
        reason = self.unavailable_reason(settings)
        if reason:
            raise UserError(f"engine {self.name!r} is unavailable: {reason}")

    def compute_dtype(self, device: str, options: Any = None, artifact_format: str = "") -> DtypeChoice:
        """The dtype a session with ``options`` on ``device`` computes ``artifact_format`` checkpoints in, and
        why. Part of a run's identity (``RunConfig.compute``): bf16 and fp32 arithmetic give other results.
        The default: on a GPU bfloat16, on a CPU this engine's :attr:`cpu_dtypes` for this CPU's class."""
        if device.startswith("cuda"):
            return DtypeChoice("bfloat16", "the GPU default")
        return choose(self.cpu_dtypes)

    def start(self, model_dir: Path, settings: EngineSettings) -> Session:
        """A started session on ``model_dir`` (use it as a context manager: it always stops)."""
        raise NotImplementedError
