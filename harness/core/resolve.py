"""Resolving user-given values (CLI flags, sweep cells) into a :class:`~harness.core.config.RunConfig`.

The CLI and the sweep both call :func:`resolve_config`, so a flag and a cell
key mean the same thing and a bad value fails the same way, before anything
runs. The schema and the identity rules stay in :mod:`harness.core.config`.
"""

from __future__ import annotations

import dataclasses

from harness import tiny
from harness.base.errors import UserError
from harness.core.config import PRESETS, RunConfig, Sampling, field_default
from harness.core.grading_policy import choose_extraction

#: decoding settings given one by one (a CLI flag each, a sweep-cell key each), over the preset's;
#: ``repeats`` is another name for ``n`` (below), so it is no field of Sampling
SAMPLING_KEYS = ("temperature", "top_p", "n", "max_new_tokens", "repeats")
#: plugin option tables: ``{key: value}`` in, ``((key, "value"), ...)`` in the config
OPTION_FIELDS = ("trainer_opts", "strategy_opts", "engine_opts")


def resolve_config(values: dict) -> RunConfig:
    """A RunConfig from field values, as ``harness run`` flags and sweep cells give them.

    The preset first, then every value given (None: not given) over it:
    sampling keys one by one (or a ``sampling`` table), plugin options as
    ``{key: value}`` tables, benchmarks as a comma-separated string or a list,
    and the extraction policy as :func:`harness.core.grading_policy.choose_extraction`
    decides it. The CLI and the sweep both call this, so a flag and a cell key
    mean the same thing. ``repeats`` sets ``n`` (:func:`samples_per_problem`), and
    several samples of greedy decoding are refused (:func:`refuse_identical_samples`).
    """
    values = {k: v for k, v in values.items() if v is not None}
    preset_name = values.pop("preset", field_default("preset"))
    if preset_name not in PRESETS:
        raise UserError(f"unknown preset {preset_name!r}; choose one of {', '.join(sorted(PRESETS))}")
    preset = PRESETS[preset_name]
    sampling = dataclasses.asdict(preset["sampling"])
    given = dict(values.pop("sampling", None) or {})
    given.update({key: values.pop(key) for key in SAMPLING_KEYS if key in values})
    sampling.update(samples_per_problem(given))
    # an embedded model's home benchmark is its default for both (tiny-reason: chain; anything else: arith)
    home = home_benchmark(values.get("model", field_default("model")))
    benchmarks = values.pop("benchmarks", None) or [home]
    values.setdefault("train_data", home)
    if isinstance(benchmarks, str):
        benchmarks = [b.strip() for b in benchmarks.split(",") if b.strip()]
    prompt = values.pop("prompt", None) or preset["prompt"]
    known = {f.name for f in dataclasses.fields(RunConfig)}
    kwargs = {k: v for k, v in values.items() if k in known}
    kwargs.update(
        {name: tuple(sorted((k, option_text(v)) for k, v in (values.get(name) or {}).items()))
         for name in OPTION_FIELDS},
        benchmarks=tuple(benchmarks), prompt=prompt, sampling=Sampling(**sampling), preset=preset_name,
        extraction=choose_extraction(values.get("extraction"), preset_name, prompt),
    )
    try:
        config = RunConfig(**kwargs)
    except TypeError as exc:
        raise UserError(f"bad run configuration {values}: {exc}") from None
    refuse_identical_samples(config.sampling, "repeats" in given)
    return config


def samples_per_problem(given: dict) -> dict:
    """Sampling values with ``repeats`` turned into ``n``, the field it names.

    ``--repeats K`` says why there are K samples (to report the spread of
    accuracy between repeats), ``-n K`` says how many; both are the same
    samples, so they make one run with one id, and giving both with different
    values is refused rather than one silently winning.
    """
    given = dict(given)
    if "repeats" not in given:
        return given
    repeats = given.pop("repeats")
    if isinstance(repeats, bool) or not isinstance(repeats, int):
        raise UserError(f"--repeats must be a whole number >= 1, got {repeats!r}")
    if repeats < 1:
        raise UserError(f"--repeats must be >= 1, got {repeats}")
    if given.get("n", repeats) != repeats:
        raise UserError(f"--repeats {repeats} and -n {given['n']} disagree: both set the samples per problem; "
                        "give one of them")
    given["n"] = repeats
    return given


def refuse_identical_samples(sampling: Sampling, as_repeats: bool) -> None:
    """Refuse more than one sample per problem under greedy decoding.

    Greedy decoding gives the same completion every time, so K samples are K
    copies: their spread and pass@k measure nothing, and the hf engine
    refuses to make them at all (after the model is trained and quantized).
    """
    if sampling.greedy and sampling.n > 1:
        flag = f"--repeats {sampling.n}" if as_repeats else f"-n {sampling.n}"
        raise UserError(f"{flag} with greedy decoding (temperature 0) gives {sampling.n} identical samples per "
                        "problem: sample with --temperature above 0 (or --preset rlquant), or drop "
                        f"{flag.split()[0]}")


def home_benchmark(model: str) -> str:
    """The benchmark an embedded model was trained for (``harness.tiny.MODELS``), the default of
    ``--benchmarks`` and ``--train-data`` for it; the fields' own default for every other model."""
    entry = tiny.MODELS.get(model)
    return entry.benchmark if entry is not None else field_default("train_data")


def option_text(value: object) -> str:
    """A plugin option value as the ``key=value`` text plugins' options parse (TOML values too)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(option_text(v) for v in value)
    return str(value)
