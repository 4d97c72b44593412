"""Options shared by ``run``, ``profile`` and ``sweep``: one definition, one meaning."""

from __future__ import annotations

import os
from pathlib import Path

import click

from harness.base.errors import UserError
from harness.base.options import parse_kv
from harness.core.config import PRESETS, RunConfig, field_default
from harness.core.resolve import resolve_config
from harness.grading.extraction import EXTRACTION_POLICIES


class CreatablePath(click.Path):
    """A path the command will create: refused at once, in one line, when its folder cannot be made.

    Without this a ``--store`` under a file, or under a folder this user may not
    write, surfaced as a traceback from deep inside the first ``mkdir``.
    """

    def convert(self, value, param, ctx):
        path = Path(super().convert(value, param, ctx)).expanduser()
        ancestor = path if path.is_dir() else path.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            self.fail(f"{value!r} cannot be created: {ancestor} is a file, not a folder", param, ctx)
        if not os.access(ancestor, os.W_OK | os.X_OK):
            self.fail(f"{value!r} cannot be created: no permission to write in {ancestor}", param, ctx)
        return str(path) if isinstance(value, str) else value


class BitsOption(click.Option):
    """``--bits``, whose help lists the bit widths each strategy accepts.

    Read from the plugin registry when help is shown, never when a command
    runs: loading the registry imports no torch, but it takes most of a second.
    """

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        record = super().get_help_record(ctx)
        if record is None:
            return None
        return record[0], f"{record[1]}; {allowed_bits()}"


def allowed_bits() -> str:
    """Each strategy's bit widths, strategies with the same widths together, first width the default;
    a general pointer when the registry cannot be read (a plugin that fails to load must not break help)."""
    try:
        from harness.core.plugin_manager import get_registry

        strategies = get_registry().strategies
        groups: dict[tuple, list[str]] = {}
        for name in strategies.names():
            groups.setdefault(tuple(strategies.get(name).bits), []).append(name)
    except Exception:  # noqa: BLE001 -- help text only; `harness plugins NAME` reports the failure
        groups = {}
    if not groups:
        return "each strategy's allowed widths: `harness plugins NAME`"
    listed = "; ".join(f"{', '.join(names)}: {', '.join(map(str, bits))}" for bits, names in groups.items())
    return f"allowed per strategy: {listed}"


def store_option(f):
    return click.option("--store", type=CreatablePath(dir_okay=False), default=None,
                        help="result store (SQLite); default $HARNESS_STORE or the user cache")(f)


def cache_option(f):
    return click.option("--cache-dir", type=CreatablePath(file_okay=False), default=None,
                        help="artifact cache; default $HARNESS_CACHE_DIR or the user cache")(f)


def model_options(f):
    """Model, strategy and bits: what ``run`` and ``profile`` share."""
    for opt in reversed([
        click.option("--model", default=field_default("model"), show_default=True,
                     help="tiny-arith, a hub id or a local path"),
        click.option("--strategy", default=field_default("strategy"), show_default=True,
                     help="quantization strategy (see `harness plugins`)"),
        click.option("--bits", cls=BitsOption, type=int, default=None,
                     help="weight bits (default: the strategy's first)"),
        click.option("--act-bits", type=int, default=field_default("act_bits"), show_default=True,
                     help="activation bits (16: not quantized)"),
        click.option("--kv-bits", type=int, default=field_default("kv_bits"), show_default=True,
                     help="KV-cache bits (16: not quantized)"),
        click.option("--strategy-opt", "strategy_opts", multiple=True, metavar="KEY=VALUE",
                     help="strategy option (repeatable)"),
        click.option("--trainer", default=field_default("trainer"), show_default=True, help="RL trainer, or none"),
        click.option("--trainer-opt", "trainer_opts", multiple=True, metavar="KEY=VALUE",
                     help="trainer option (repeatable)"),
        click.option("--train-data", default=None, help="benchmark whose train split trains the model (default: the "
                     "embedded model's own benchmark: arith for tiny-arith, chain for tiny-reason; else arith)"),
        click.option("--max-steps", type=int, default=None, help="training steps (overrides the trainer's default)"),
        click.option("--calib", default=None, help="calibration benchmark (default: the training data)"),
        click.option("--seed", type=int, default=field_default("seed"), show_default=True,
                     help="seed of training, calibration and sampling (part of the run id)"),
        click.option("--device", default=field_default("device"), show_default=True,
                     help="auto (CUDA when present), cpu, cuda[:N]"),
        click.option("--data-dir", type=click.Path(file_okay=False), default=None, envvar="HARNESS_DATA_DIR",
                     help="folder of benchmark JSONL files (env HARNESS_DATA_DIR)"),
    ]):
        f = opt(f)
    return f


def eval_options(f):
    for opt in reversed([
        click.option("--benchmarks", default=None, help="comma-separated benchmark names (default: the embedded "
                     "model's own benchmark: arith for tiny-arith, chain for tiny-reason; else arith)"),
        click.option("--split", default=None,
                     help="the split evaluated: test (default; every reported row) or another the benchmarks "
                          "have, e.g. validation to choose settings without reading the test split "
                          "(`harness benchmarks` lists each one's splits)"),
        click.option("--limit", type=int, default=None, help="first N problems of each benchmark"),
        click.option("--preset", type=click.Choice(sorted(PRESETS)), default=field_default("preset"), show_default=True,
                     help="evaluation settings: default (greedy, boxed prompt) or rlquant (the seed study's)"),
        click.option("--prompt", default=None, help="prompt template (boxed, r1, plain, raw); overrides the preset"),
        click.option("--temperature", type=float, default=None, help="0 = greedy (overrides the preset)"),
        click.option("--top-p", type=float, default=None,
                     help="nucleus sampling: draw from the most likely tokens whose probabilities sum to P, "
                          "0 < P <= 1 (1: all tokens; ignored when greedy; overrides the preset)"),
        click.option("-n", "--samples", "n", type=int, default=None,
                     help="samples per problem (sampled decoding only); pass@k is reported up to k = N"),
        click.option("--repeats", type=int, default=None, metavar="K",
                     help="evaluate every problem K times with sampled decoding (--temperature above 0) and "
                          "report mean accuracy, its standard deviation between repeats and avg@K; the same "
                          "run as -n K"),
        click.option("--max-new-tokens", type=int, default=None,
                     help="most tokens generated per completion; a longer one is cut off there and graded as "
                          "it stands (overrides the preset)"),
        click.option("--extraction", type=click.Choice(EXTRACTION_POLICIES), default=None,
                     help="how answers are found: strict (box, 'the answer is') or lenient (also an unformatted "
                          "completion's final expression); default: the prompt template's, else strict"),
        click.option("--divergence/--no-divergence", default=None,
                     help="after evaluating, score the model against its full-precision reference on the "
                          "reference's own completions (KL, top-1 agreement, flips); the reference run is "
                          "evaluated first when the store lacks it (default: on, unless HARNESS_DIVERGENCE=0)"),
        click.option("--batch-size", type=click.IntRange(min=1), default=field_default("batch_size"), show_default=True,
                     help="prompts generated together"),
    ]):
        f = opt(f)
    return f


def engine_options(f):
    """The generation engine: which one, its options (part of the run's identity) and where it runs (not)."""
    for opt in reversed([
        click.option("--engine", default=field_default("engine"), show_default=True,
                     help="what generates: hf (transformers, in process), vllm (vLLM's server), llamacpp (llama.cpp's "
                          "server, GGUF files), openai (--engine-url)"),
        click.option("--engine-opt", "engine_opts", multiple=True, metavar="KEY=VALUE",
                     help="engine option (repeatable), e.g. dtype=bfloat16 or server_args='--kv-cache-dtype fp8'"),
        click.option("--engine-url", default=None, envvar="HARNESS_ENGINE_URL",
                     help="address of a running OpenAI-compatible server (engine openai; env HARNESS_ENGINE_URL)"),
        click.option("--vllm-python", "engine_python", default=None,
                     help="Python of the vLLM environment (default: $HARNESS_VLLM_PYTHON, else .venv-vllm)"),
        click.option("--llamacpp-python", "llamacpp_python", default=None,
                     help="Python of the llama.cpp environment (default: $HARNESS_LLAMACPP_PYTHON, else "
                          ".venv-llamacpp)"),
    ]):
        f = opt(f)
    return f


def build_config(**kw) -> RunConfig:
    """RunConfig from CLI keywords, through the same :func:`harness.core.resolve.resolve_config` a sweep
    cell goes through: the preset first, explicit flags over it."""
    values = dict(kw)
    llamacpp_python = values.pop("llamacpp_python", None)
    if llamacpp_python:
        if values.get("engine_python"):
            raise UserError("--vllm-python and --llamacpp-python name one engine's environment each; pass the "
                            "one of the run's engine")
        values["engine_python"] = llamacpp_python
    for name, flag in (("trainer_opts", "--trainer-opt"), ("strategy_opts", "--strategy-opt"),
                       ("engine_opts", "--engine-opt")):
        values[name] = parse_kv(kw.get(name) or (), flag)
    return resolve_config(values)
