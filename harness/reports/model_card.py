"""The model card (``README.md``) of an exported run, in Hugging Face's model-card conventions.

The metadata header is built by ``huggingface_hub``'s own ``ModelCardData`` and
``EvalResult`` (so the hub reads it as it reads any card: base model, library,
tags, a ``model-index`` of results); the body states what a reader needs to
trust the numbers: accuracy per benchmark with its 95% bootstrap interval over
problems, how it was evaluated (prompt, sampling, extraction, limit, engine),
the weights as stored, and the profile with the engine that measured it.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from harness.core.config import NO_TRAINER, field_default

#: profile figures the card's table shows, in this order (all of them are in harness-run.json)
PROFILE_ROWS = ("weight_bytes", "fp_bytes", "weight_ratio", "in_memory_bytes", "bs1_ttft_ms",
                "bs1_decode_tokens_per_s", "bs1_latency_p50_ms", "batch_size", "batch_tokens_per_s",
                "batch_latency_p50_ms", "eval_tokens_per_s", "eval_peak_rss_bytes", "peak_gpu_bytes",
                "kv_bytes_per_token", "cpu_threads")


def model_card(recipe: dict, results: dict, engines: list[str], caveat: str | None = None) -> str:
    """The card's text: YAML metadata header, then the body."""
    return f"---\n{card_data(recipe).to_yaml()}\n---\n\n{body(recipe, results, engines, caveat)}"


def card_data(recipe: dict) -> Any:
    """``huggingface_hub.ModelCardData``: base model (a hub id only: tiny-arith and local paths are not
    on the hub, the body names them), library, tags (method, bits, spec, trainer) and the results."""
    from huggingface_hub import EvalResult, ModelCardData

    config, strategy = recipe["config"], recipe["strategy"]
    model = str(config.get("model") or "")
    on_hub = model.count("/") == 1 and not model.startswith((".", "/", "~"))
    trained = config.get("trainer") not in (None, NO_TRAINER)
    quantized = not _reference(strategy)
    tags = ["quant-rl-harness", "math-reasoning"]
    if quantized:
        tags += ["quantized", strategy["name"], f"{config.get('bits')}-bit", strategy["spec"].lower()]
    method = (recipe.get("profile") or {}).get("quant_method")
    if method:
        tags.append(method.split()[0])
    if trained:
        tags += str(config["trainer"]).split(",")  # each trainer of a chain (kd,grpo)
    evals = []
    for bench, metrics in (recipe.get("metrics") or {}).items():
        for name, label in (("accuracy", "accuracy (pass@1)"), ("reward", "reward (1 correct + 0.1 boxed)")):
            if metrics.get(name, {}).get("value") is not None:
                evals.append(EvalResult(task_type="text-generation", dataset_type=bench, dataset_name=bench,
                                        dataset_split="test", metric_type=name, metric_name=label,
                                        metric_value=round(metrics[name]["value"], 4), verified=False))
    extra = {}
    if on_hub:
        extra["base_model"] = model
        extra["base_model_relation"] = "finetune" if trained else ("quantized" if quantized else None)
    return ModelCardData(library_name="transformers", pipeline_tag="text-generation", tags=tags,
                         model_name=recipe["label"], eval_results=evals or None, **extra)


def body(recipe: dict, results: dict, engines: list[str], caveat: str | None) -> str:
    config, strategy, trainer = recipe["config"], recipe["strategy"], recipe["trainer"]
    profile = recipe.get("profile") or {}
    quant = (recipe.get("artifact") or {}).get("quant") or {}
    what = (f"at full precision (strategy `{strategy['name']}`)" if _reference(strategy)
            else f"quantized with `{strategy['name']}` ({strategy['spec']})")
    made = f"trained with `{trainer['name']}`, then " if trainer["name"] not in (None, NO_TRAINER) else ""
    lines = [
        f"# {recipe['label']}", "",
        (f"`{config.get('model')}` {made}{what}, evaluated by {recipe['exported_by']} "
        f"(run `{recipe['run_id']}`). Exported with `harness export`; every number below is the stored run's."), "",
        "## Results", "",
        "| benchmark | accuracy (pass@1) | 95% interval | reward | 95% interval | format rate | problems | samples |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for bench, m in (recipe.get("metrics") or {}).items():
        lines.append(f"| {bench} | {_pct(m, 'accuracy')} | {_ci(m, 'accuracy')} | {_num(m, 'reward')} | "
                     f"{_ci(m, 'reward', pct=False)} | {_pct(m, 'format_rate')} | {_int(m, 'problems')} | "
                     f"{_int(m, 'samples')} |")
    levels = [(b, k.split("=", 1)[1], v) for b, m in (recipe.get("metrics") or {}).items()
              for k, v in m.items() if k.startswith("accuracy/level=")]
    if levels:
        lines += ["", "Accuracy by level:", "", "| benchmark | level | accuracy | 95% interval |", "|---|---|---|---|"]
        lines += [f"| {b} | {lvl} | {_pct({'a': v}, 'a')} | {_ci({'a': v}, 'a')} |" for b, lvl, v in levels]
    lines += ["", ("Intervals are percentile bootstraps over problems (1,000 resamples). "
              "`results_*.json` and `samples_<benchmark>_*.jsonl` hold the same results and every completion "
              "in lm-evaluation-harness's shapes (metric `exact_match` is the accuracy)."), ""]
    lines += ["## Evaluation settings", "", *evaluation_settings(config, results), ""]
    lines += ["## Size and speed", "",
              (f"Weights as stored: **{_bytes(profile.get('weight_bytes') or quant.get('weight_bytes'))}** "
              f"(bf16: {_bytes(profile.get('fp_bytes') or quant.get('fp_bytes'))}). Profile measured by "
              f"`{profile.get('engine', config.get('engine', 'hf'))}` "
              f"({profile.get('engine_version', 'version unknown')}) "
              f"on `{profile.get('device', config.get('device'))}`, quantization method "
              f"`{profile.get('quant_method') or 'none'}`, "
              f"kernels {', '.join(profile.get('kernels') or []) or 'unknown'}:"),
              "", *profile_table(profile), ""]
    lines += ["## Quantization recipe", "", *recipe_lines(recipe), ""]
    lines += ["## Use", "", *use_lines(engines, caveat, str(config.get("compute") or "cpu:float32").split(":")[-1]), ""]
    lines += ["## Reproduce", "", "```bash", reproduce_command(config), "```", "",
              (f"Versions: {', '.join(f'{k} {v}' for k, v in sorted((recipe.get('versions') or {}).items()))}; "
              f"commit {recipe.get('git_commit') or 'unknown'}."), ""]
    return "\n".join(lines)


def evaluation_settings(config: dict, results: dict) -> list[str]:
    from harness.core.prompts import templates

    sampling = config.get("sampling") or {}
    greedy = float(sampling.get("temperature", 0)) == 0.0
    decoding = "greedy" if greedy else f"temperature {sampling.get('temperature')}, top-p {sampling.get('top_p')}"
    template = templates().get(config.get("prompt") or "")
    chat = results.get("chat_template") is not None
    prompt_text = template.template.format(problem="{problem}") if template else config.get("prompt")
    wrapped = "in the model's chat template" if chat else "no chat template"
    prompt_block = ["", "  ```text", *[f"  {line}" for line in str(prompt_text).splitlines()], "  ```", ""]
    engine = f"- engine: `{config.get('engine', 'hf')}`"
    if config.get("engine_opts"):
        engine += f" with options {json.dumps(config['engine_opts'])}"
    limit = f"the first {config['limit']} of each benchmark" if config.get("limit") else "all"
    return [
        (f"- sampling: {decoding}, {sampling.get('n', 1)} sample(s) per problem, at most "
        f"{sampling.get('max_new_tokens')} new tokens (stops at EOS), seed {config.get('seed', 0)}"),
        f"- prompt: `{config.get('prompt')}` ({wrapped}), `{{problem}}` replaced by the problem text:",
        *prompt_block,
        f"- answer extraction: `{config.get('extraction', 'strict')}` (harness.grading on math-verify)",
        (f"- problems: {limit} ({', '.join(config.get('benchmarks') or [])}; "
         f"preset `{config.get('preset', 'default')}`)"),
        f"{engine}; compute `{config.get('compute', 'cpu:float32')}`, batch size {config.get('batch_size')}",
    ]


def profile_table(profile: dict) -> list[str]:
    from harness.toolkit.profile_keys import PROFILE_KEYS

    rows = ["| figure | value | meaning |", "|---|---|---|"]
    for key in PROFILE_ROWS:
        if profile.get(key) is None:
            continue
        unit, meaning = PROFILE_KEYS.get(key, ("", ""))
        value = _bytes(profile[key]) if unit == "bytes" else _fmt(profile[key], unit)
        rows.append(f"| {key} | {value} | {meaning} |")
    return rows if len(rows) > 2 else ["(no profile was stored for this run)"]


def recipe_lines(recipe: dict) -> list[str]:
    strategy, trainer, artifact = recipe["strategy"], recipe["trainer"], recipe["artifact"]
    lines = [f"- strategy: `{strategy['name']}` {strategy['spec']}, options `{json.dumps(strategy['options'])}`"]
    if trainer["name"] not in (None, NO_TRAINER):
        lines.append(f"- trainer: `{trainer['name']}`, options `{json.dumps(trainer['options'], default=str)}`")
    lines.append(f"- artifact: {artifact['stage']} stage, key `{artifact['key']}`, format `{artifact['format']}`")
    lines.append("- files: `harness-run.json` (strategy, spec, options, trainer, the run's configuration, "
                 "versions, metrics and profile); `config.json` holds the `quantization_config` when the weights "
                 "are quantized; `recipe.yaml` is llmcompressor's recipe when it made them")
    return lines


def use_lines(engines: list[str], caveat: str | None, dtype: str) -> list[str]:
    """How to load it: plain transformers, in the dtype the run computed in (its numbers are that dtype's)."""
    lines = ["```python", "import torch", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
             f'model = AutoModelForCausalLM.from_pretrained("PATH/TO/THIS/FOLDER", dtype=torch.{dtype})',
             'tokenizer = AutoTokenizer.from_pretrained("PATH/TO/THIS/FOLDER")', "```", ""]
    if "vllm" in engines:
        lines += [("or serve it with vLLM (an OpenAI-compatible server; vLLM's CPU build runs integer weights "
                  "only on some CPUs): `vllm serve PATH/TO/THIS/FOLDER`"), ""]
    lines += [(f"The run computed in {dtype}; its prompts are the prompt above, wrapped (when the settings say so) "
              "by `tokenizer.apply_chat_template(..., add_generation_prompt=True)`. Harness engines that run "
              f"this format: {', '.join(engines) or 'none installed'}.")]
    if caveat:
        lines += ["", f"**Note:** {caveat}."]
    return lines


def reproduce_command(config: dict) -> str:
    """The ``harness run`` command line that makes this run again: the flags whose values differ
    from the defaults (and the preset's) as :func:`harness.core.resolve.resolve_config` would fill them."""
    from harness.core.config import PRESETS
    from harness.core.grading_policy import choose_extraction
    from harness.core.resolve import SAMPLING_KEYS

    args = ["harness", "run"]

    def add(flag: str, value: Any) -> None:
        args.extend([flag, str(value)])

    for name, flag in (("model", "--model"), ("trainer", "--trainer"), ("train_data", "--train-data"),
                       ("strategy", "--strategy")):
        if config.get(name, field_default(name)) != field_default(name):
            add(flag, config[name])
    if config.get("max_steps") is not None:
        add("--max-steps", config["max_steps"])
    if (config.get("strategy", field_default("strategy")) != field_default("strategy")
            and config.get("bits") is not None):
        add("--bits", config["bits"])
    for name, flag in (("act_bits", "--act-bits"), ("kv_bits", "--kv-bits"), ("seed", "--seed"),
                       ("engine", "--engine")):
        if config.get(name, field_default(name)) != field_default(name):
            add(flag, config[name])
    for name, flag in (("trainer_opts", "--trainer-opt"), ("strategy_opts", "--strategy-opt"),
                       ("engine_opts", "--engine-opt")):
        for key, value in sorted((config.get(name) or {}).items()):
            add(flag, f"{key}={value}")
    if config.get("calib"):
        add("--calib", config["calib"])
    if list(config.get("benchmarks") or []) != list(field_default("benchmarks")):
        add("--benchmarks", ",".join(config["benchmarks"]))
    if config.get("limit"):
        add("--limit", config["limit"])
    preset_name = config.get("preset", "default")
    preset = PRESETS.get(preset_name, PRESETS["default"])
    if preset_name != "default":
        add("--preset", preset_name)
    if config.get("prompt") and config["prompt"] != preset["prompt"]:
        add("--prompt", config["prompt"])
    flags = {"temperature": "--temperature", "top_p": "--top-p", "n": "-n", "max_new_tokens": "--max-new-tokens"}
    sampling = config.get("sampling") or {}
    for key in SAMPLING_KEYS:
        if key in sampling and sampling[key] != getattr(preset["sampling"], key):
            add(flags[key], sampling[key])
    extraction = config.get("extraction", "strict")
    if extraction != choose_extraction(None, preset_name, config.get("prompt") or preset["prompt"]):
        add("--extraction", extraction)
    if config.get("data_dir"):
        add("--data-dir", config["data_dir"])
    return shlex.join(args)


def _fmt(value: Any, unit: str = "") -> str:
    if isinstance(value, float):
        text = f"{value:.3g}" if abs(value) < 1 else f"{value:,.1f}"
    else:
        text = str(value)
    return f"{text} {unit}".strip() if unit not in ("", "1/s") else (f"{text}/s" if unit == "1/s" else text)


def _bytes(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "unknown"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= size:
            return f"{value / size:.2f} {unit} ({int(value):,} bytes)"
    return f"{int(value)} bytes"


def _pct(metrics: dict, name: str) -> str:
    value = metrics.get(name, {}).get("value")
    return f"{value * 100:.1f}%" if value is not None else "-"


def _num(metrics: dict, name: str) -> str:
    value = metrics.get(name, {}).get("value")
    return f"{value:.3f}" if value is not None else "-"


def _int(metrics: dict, name: str) -> str:
    value = metrics.get(name, {}).get("value")
    return str(int(value)) if value is not None else "-"


def _ci(metrics: dict, name: str, pct: bool = True) -> str:
    m = metrics.get(name, {})
    if m.get("lo") is None:
        return "-"
    return f"[{m['lo'] * 100:.1f}%, {m['hi'] * 100:.1f}%]" if pct else f"[{m['lo']:.3f}, {m['hi']:.3f}]"


def _reference(strategy: dict) -> bool:
    """The recipe's strategy is a full-precision reference (recipes written before it was recorded: the
    default strategy is)."""
    return bool(strategy.get("reference", strategy.get("name") == field_default("strategy")))
