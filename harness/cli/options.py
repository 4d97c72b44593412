"""Options shared by ``run``, ``profile`` and ``sweep``: one definition, one meaning."""

from __future__ import annotations

import click

from harness.config import PRESETS, RunConfig, Sampling
from harness.options import parse_kv


def store_option(f):
    return click.option("--store", type=click.Path(dir_okay=False), default=None,
                        help="result store (SQLite); default $HARNESS_STORE or the user cache")(f)


def cache_option(f):
    return click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                        help="artifact cache; default $HARNESS_CACHE_DIR or the user cache")(f)


def model_options(f):
    """Model, strategy and bits: what ``run`` and ``profile`` share."""
    for opt in reversed([
        click.option("--model", default="tiny-arith", show_default=True, help="tiny-arith, a hub id or a local path"),
        click.option("--strategy", default="none", show_default=True, help="quantization strategy (see `harness plugins`)"),
        click.option("--bits", type=int, default=None, help="weight bits (default: the strategy's first)"),
        click.option("--act-bits", type=int, default=16, show_default=True, help="activation bits (16: not quantized)"),
        click.option("--kv-bits", type=int, default=16, show_default=True, help="KV-cache bits (16: not quantized)"),
        click.option("--strategy-opt", "strategy_opts", multiple=True, metavar="KEY=VALUE", help="strategy option (repeatable)"),
        click.option("--trainer", default="none", show_default=True, help="RL trainer, or none"),
        click.option("--trainer-opt", "trainer_opts", multiple=True, metavar="KEY=VALUE", help="trainer option (repeatable)"),
        click.option("--train-data", default="arith", show_default=True, help="benchmark whose train split trains the model"),
        click.option("--max-steps", type=int, default=None, help="training steps (overrides the trainer's default)"),
        click.option("--calib", default=None, help="calibration benchmark (default: the training data)"),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--device", default="auto", show_default=True, help="auto (CUDA when present), cpu, cuda[:N]"),
        click.option("--data-dir", type=click.Path(file_okay=False), default=None, envvar="HARNESS_DATA_DIR",
                     help="folder of benchmark JSONL files (env HARNESS_DATA_DIR)"),
    ]):
        f = opt(f)
    return f


def eval_options(f):
    for opt in reversed([
        click.option("--benchmarks", default="arith", show_default=True, help="comma-separated benchmark names"),
        click.option("--limit", type=int, default=None, help="first N problems of each benchmark"),
        click.option("--preset", type=click.Choice(sorted(PRESETS)), default="default", show_default=True,
                     help="evaluation settings: default (greedy, boxed prompt) or rlquant (the seed study's)"),
        click.option("--prompt", default=None, help="prompt template (boxed, r1, plain, raw); overrides the preset"),
        click.option("--temperature", type=float, default=None, help="0 = greedy (overrides the preset)"),
        click.option("--top-p", type=float, default=None),
        click.option("-n", "--samples", "n", type=int, default=None, help="samples per problem"),
        click.option("--max-new-tokens", type=int, default=None),
        click.option("--batch-size", type=int, default=64, show_default=True),
    ]):
        f = opt(f)
    return f


def build_config(**kw) -> RunConfig:
    """RunConfig from CLI keywords: the preset first, explicit flags over it."""
    preset = PRESETS[kw.get("preset") or "default"]
    base: Sampling = preset["sampling"]
    sampling = Sampling(
        temperature=base.temperature if kw.get("temperature") is None else kw["temperature"],
        top_p=base.top_p if kw.get("top_p") is None else kw["top_p"],
        n=base.n if kw.get("n") is None else kw["n"],
        max_new_tokens=base.max_new_tokens if kw.get("max_new_tokens") is None else kw["max_new_tokens"],
    )
    benchmarks = tuple(b.strip() for b in (kw.get("benchmarks") or "arith").split(",") if b.strip())
    return RunConfig(
        model=kw["model"],
        trainer=kw["trainer"],
        trainer_opts=tuple(sorted(parse_kv(kw.get("trainer_opts") or (), "--trainer-opt").items())),
        train_data=kw["train_data"],
        max_steps=kw.get("max_steps"),
        strategy=kw["strategy"],
        bits=kw["bits"],
        act_bits=kw["act_bits"],
        kv_bits=kw["kv_bits"],
        strategy_opts=tuple(sorted(parse_kv(kw.get("strategy_opts") or (), "--strategy-opt").items())),
        calib=kw.get("calib"),
        benchmarks=benchmarks,
        limit=kw.get("limit"),
        prompt=kw.get("prompt") or preset["prompt"],
        sampling=sampling,
        preset=kw.get("preset") or "default",
        seed=kw["seed"],
        data_dir=kw.get("data_dir"),
        batch_size=kw.get("batch_size") or 64,
        device=kw["device"],
    )
