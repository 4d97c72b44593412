"""A stored run in lm-evaluation-harness's shapes: its results file and its ``--log_samples`` rows.

Tools built around lm-eval (leaderboard parsers, ``lm_eval.utils.make_table``,
notebooks that read ``results_*.json`` and ``samples_<task>_*.jsonl``) then read
a harness run like one of theirs. Keys follow what lm-eval 0.4 writes
(``lm_eval/evaluator.py``, ``evaluator_utils.py``, ``loggers/evaluation_tracker.py``):
each benchmark is a task, metrics are ``"<metric>,<filter>"`` with the filter
``none`` (the harness's grader reads the raw completion itself), and a standard
error is lm-eval's closed form for a mean (sample standard deviation over
problems / sqrt(problems); ``"N/A"`` under two problems). The harness's own 95%
bootstrap intervals ride along under the extra top-level key ``harness``.
Nothing here imports lm-eval: it stays a dev dependency.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.core.config import field_default

#: lm-eval's filter name when no filter rewrites the response
FILTER = "none"
#: harness metric -> lm-eval metric name (the per-problem mean of ``samples`` column)
METRICS = {
    "accuracy": ("exact_match", "correct"),
    "reward": ("reward", "reward"),
    "format_rate": ("format_rate", "formatted"),
}


def hash_string(text: str) -> str:
    """lm-eval's ``lm_eval.utils.hash_string``: sha256 hex digest."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def date_id(timestamp: float) -> str:
    """The timestamp as lm-eval puts it in file names (``isoformat`` with ``:`` made ``-``), in UTC."""
    when = datetime.fromtimestamp(timestamp, tz=timezone.utc).replace(tzinfo=None)
    return when.isoformat().replace(":", "-")


def results_filename(date: str) -> str:
    return f"results_{date}.json"


def samples_filename(task: str, date: str) -> str:
    return f"samples_{task}_{date}.jsonl"


def sanitize_model_name(name: str) -> str:
    """lm-eval's ``lm_eval.utils.sanitize_model_name``."""
    return re.sub(r"[\"<>:/|\\?*\[\]]+", "__", name)


def stderr_of_mean(values: list[float]) -> float | str:
    """lm-eval's ``mean_stderr`` (sample stddev / sqrt(n)); ``"N/A"`` with fewer than two values, as lm-eval."""
    if len(values) < 2:
        return "N/A"
    mu = sum(values) / len(values)
    return math.sqrt(sum((x - mu) ** 2 for x in values) / (len(values) - 1)) / math.sqrt(len(values))


def benchmark_problems(config: dict, name: str) -> list | None:
    """The benchmark's test split in its own order, when it loads without a network: generated
    problems, or files in the run's ``data_dir``. None otherwise (a hub benchmark; data moved):
    the rows then come from the store alone, numbered in problem-id order."""
    from harness.core.plugin_manager import get_registry

    try:
        bench = get_registry().benchmarks.get(name)
        data_dir = config.get("data_dir")
        if not bench.generated and not (data_dir and Path(data_dir).is_dir()):
            return None
        return bench.load("test", Path(data_dir) if data_dir else None)
    except Exception:  # noqa: BLE001 -- a benchmark that no longer loads still exports from the store
        return None


def doc_of(problem: Any) -> dict:
    """A problem as the row lm-eval calls ``doc``: the fields a benchmark file holds."""
    return {"id": problem.id, "problem": problem.problem, "answer": problem.answer, "solution": problem.solution,
            "level": problem.level, "subject": problem.subject}


def generation_kwargs(sampling: dict) -> dict:
    """The run's decoding settings under lm-eval's names (``max_gen_toks``; no stop strings: EOS stops)."""
    greedy = float(sampling.get("temperature", 0.0)) == 0.0
    out: dict[str, Any] = {"until": [], "do_sample": not greedy, "max_gen_toks": sampling.get("max_new_tokens")}
    if not greedy:
        out.update(temperature=sampling.get("temperature"), top_p=sampling.get("top_p"))
    return out


def _version(text: str) -> float | str:
    try:
        return float(text)
    except (TypeError, ValueError):
        return text


def build(run: dict, samples: list[dict], metrics: dict, problems: dict[str, list | None] | None = None,
          chat_template: str | None = None) -> tuple[dict, dict[str, list[dict]]]:
    """lm-eval's results dict and its per-task sample rows for one stored run.

    ``run`` is :meth:`harness.runs.store.Store.get_run`'s record, ``samples`` the run's rows,
    ``metrics`` :meth:`~harness.runs.store.Store.metrics`; ``problems`` maps each benchmark to its test
    split (:func:`benchmark_problems`; None: unknown). ``chat_template`` is the template the prompts
    were rendered in, when they were.
    """
    config = run["config"]
    sampling = config.get("sampling") or {}
    gen_kwargs = generation_kwargs(sampling)
    problems = problems or {}
    by_task: dict[str, list[dict]] = defaultdict(list)
    for row in samples:
        by_task[row["benchmark"]].append(row)
    out: dict[str, Any] = {"results": {}, "group_subtasks": {}, "configs": {}, "versions": {}, "n-shot": {},
                           "higher_is_better": {}, "n-samples": {}}
    logged: dict[str, list[dict]] = {}
    versions = run.get("versions") or {}
    for task in config.get("benchmarks") or sorted(by_task):
        rows = logged[task] = sample_rows(by_task.get(task, []), problems.get(task), gen_kwargs)
        out["results"][task] = task_results(task, rows, (metrics or {}).get(task, {}))
        out["configs"][task] = task_config(task, config, gen_kwargs, versions.get(f"benchmark:{task}", "1"))
        out["versions"][task] = _version(versions.get(f"benchmark:{task}", "1"))
        out["n-shot"][task] = 0
        out["higher_is_better"][task] = {key.split(",")[0]: True for key in out["results"][task]
                                         if key.endswith(f",{FILTER}") and "_stderr," not in key}
        split = problems.get(task)
        out["n-samples"][task] = {"original": len(split) if split else len(rows), "effective": len(rows)}
    out["config"] = eval_config(run)
    out.update(run_metadata(run, chat_template))
    out["task_hashes"] = {task: hash_string("".join(r["doc_hash"] + r["prompt_hash"] + r["target_hash"] for r in rows))
                          for task, rows in logged.items() if rows}
    out["harness"] = {"run_id": run["id"], "label": run["label"], "metrics": metrics or {}}  # values, 95% lo/hi
    return out, logged


def sample_rows(rows: list[dict], split: list | None, gen_kwargs: dict) -> list[dict]:
    """One lm-eval ``--log_samples`` row per problem (its ``sampling.n`` completions in ``resps``)."""
    from harness.base.metrics import pass_at_k

    by_problem: dict[str, list[dict]] = defaultdict(list)
    for r in sorted(rows, key=lambda r: (r["problem_id"], r["sample"])):
        by_problem[r["problem_id"]].append(r)
    known = {p.id: (i, p) for i, p in enumerate(split or [])}
    order = sorted(by_problem, key=lambda pid: (known[pid][0] if pid in known else len(known), pid))
    out = []
    for position, pid in enumerate(order):
        comps = by_problem[pid]
        first = comps[0]
        if pid in known:
            doc_id, doc = known[pid][0], doc_of(known[pid][1])
        else:
            doc_id, doc = position, {"id": pid, "answer": first["reference"], "level": first["level"]}
        texts = [c["completion"] for c in comps]
        target = str(doc["answer"])
        row: dict[str, Any] = {
            "doc_id": doc_id,
            "doc": doc,
            "target": target,
            "arguments": {"gen_args_0": {"arg_0": first["prompt"], "arg_1": gen_kwargs}},
            "resps": [texts],
            "filtered_resps": [texts[0]] if len(texts) == 1 else [texts],
            "filter": FILTER,
            "metrics": [name for name, _ in METRICS.values()],
            "doc_hash": hash_string(json.dumps(doc, indent=2, ensure_ascii=False)),
            "prompt_hash": hash_string(first["prompt"]),
            "target_hash": hash_string(target),
        }
        for name, column in METRICS.values():
            row[name] = sum(float(c[column]) for c in comps) / len(comps)
        k = 2
        while k <= len(comps):
            row[f"pass@{k}"] = pass_at_k(len(comps), sum(int(c["correct"]) for c in comps), k)
            row["metrics"].append(f"pass@{k}")
            k *= 2
        row["harness"] = {"problem_id": pid, "predicted": [c["predicted"] for c in comps],
                          "correct": [int(c["correct"]) for c in comps], "n_tokens": [c["n_tokens"] for c in comps]}
        out.append(row)
    return out


def task_results(task: str, rows: list[dict], metrics: dict) -> dict:
    """``results[task]``: lm-eval's fixed keys, each metric and its standard error over problems.

    Values are the stored metrics (the same numbers ``harness show`` prints); pass@k is reported
    only up to what every problem has, as the store does."""
    out: dict[str, Any] = {"name": task, "alias": task, "sample_len": len(rows)}
    names = [name for name, _ in METRICS.values()]
    names += sorted({k for r in rows for k in r if k.startswith("pass@") and all(k in x for x in rows)},
                    key=lambda k: int(k[5:]))
    stored = {lm: metrics.get(h, {}).get("value") for h, (lm, _) in METRICS.items()}
    for name in names:
        values = [r[name] for r in rows if name in r]
        value = stored.get(name)
        if value is None:
            value = metrics.get(name, {}).get("value")
        out[f"{name},{FILTER}"] = value if value is not None else (sum(values) / len(values) if values else None)
        out[f"{name}_stderr,{FILTER}"] = stderr_of_mean(values)
    return out


def task_config(task: str, config: dict, gen_kwargs: dict, version: str) -> dict:
    """``configs[task]``: lm-eval's ``TaskConfig`` fields that describe how the run evaluated."""
    from harness.core.prompts import get_template

    try:
        template = get_template(config.get("prompt", "boxed"))
        text, chat = template.template, template.chat
    except Exception:  # noqa: BLE001 -- a template renamed since: the name still says which
        text, chat = config.get("prompt"), None
    sampling = config.get("sampling") or {}
    return {
        "task": task,
        "dataset_path": task,
        "test_split": "test",
        "doc_to_text": text,
        "doc_to_target": "{{answer}}",
        "description": "",
        "target_delimiter": " ",
        "fewshot_delimiter": "\n\n",
        "num_fewshot": 0,
        "metric_list": [
            {"metric": name, "aggregation": "mean", "higher_is_better": True} for name, _ in METRICS.values()
        ],
        "output_type": "generate_until",
        "generation_kwargs": gen_kwargs,
        "repeats": int(sampling.get("n", 1)),
        "should_decontaminate": False,
        "metadata": {"version": _version(version), "config_source": "quant-rl-harness",
                     "prompt": config.get("prompt"), "chat_template_applied": chat,
                     "extraction": config.get("extraction", "strict"), "limit": config.get("limit")},
    }


def eval_config(run: dict) -> dict:
    """``config``: the model and generation settings, under lm-eval's keys."""
    config = run["config"]
    compute = config.get("compute") or "cpu:float32"
    return {
        "model": config.get("engine", field_default("engine")),
        "model_args": {"pretrained": config.get("model"), "trainer": config.get("trainer"),
                       "strategy": config.get("strategy"), "bits": config.get("bits"),
                       "act_bits": config.get("act_bits"), "kv_bits": config.get("kv_bits"),
                       "engine_opts": config.get("engine_opts") or {}},
        "model_dtype": compute.split(":")[-1],
        "batch_size": config.get("batch_size"),
        "batch_sizes": [],
        "device": config.get("device"),
        "use_cache": None,
        "limit": config.get("limit"),
        "bootstrap_iters": 0,  # stderr is the closed form; the harness's bootstrap intervals are under "harness"
        "gen_kwargs": generation_kwargs(config.get("sampling") or {}),
        "random_seed": config.get("seed", 0),
        "numpy_seed": config.get("seed", 0),
        "torch_seed": config.get("seed", 0),
        "fewshot_seed": config.get("seed", 0),
    }


def run_metadata(run: dict, chat_template: str | None) -> dict:
    """The top-level keys lm-eval's tracker adds (model name, dates, versions, chat template)."""
    versions = run.get("versions") or {}
    created, finished = run.get("created"), run.get("finished")
    return {
        "git_hash": (run.get("git_commit") or "")[:7] or None,
        "date": created,
        "transformers_version": versions.get("transformers"),
        "lm_eval_version": None,
        "harness_version": versions.get("quant-rl-harness"),
        "upper_git_hash": None,
        "model_source": run["config"].get("engine", field_default("engine")),
        "model_name": run["label"],
        "model_name_sanitized": sanitize_model_name(run["label"]),
        "system_instruction": None,
        "system_instruction_sha": None,
        "fewshot_as_multiturn": False,
        "chat_template": chat_template,
        "chat_template_sha": hash_string(chat_template) if chat_template else None,
        "total_evaluation_time_seconds": str(finished - created) if created and finished else None,
    }


def chat_template_of(model_dir: Path | None) -> str | None:
    """The chat template a model folder carries (``chat_template.jinja`` or the tokenizer config's)."""
    if model_dir is None:
        return None
    jinja = Path(model_dir) / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    try:
        value = json.loads((Path(model_dir) / "tokenizer_config.json").read_text()).get("chat_template")
    except (OSError, ValueError):
        return None
    return value if isinstance(value, str) else None


def for_store(store: Any, run_id: str, model_dir: Path | None = None) -> tuple[dict, dict[str, list[dict]]]:
    """:func:`build` for a stored run (``run_id`` as ``harness show`` takes it); ``model_dir`` is the
    evaluated model's folder (its chat template), or None to read the base model's when it is local."""
    from harness.runs.results import stored_run

    run = stored_run(store, run_id)
    rid = run["id"]
    config = run["config"]
    problems = {name: benchmark_problems(config, name) for name in config.get("benchmarks") or []}
    chat = None
    if _chat_prompt(config.get("prompt")):
        chat = chat_template_of(model_dir if model_dir is not None else _local_model_dir(config.get("model")))
    return build(run, store.samples(rid), store.metrics(rid), problems, chat)


def _chat_prompt(name: str | None) -> bool:
    from harness.core.prompts import templates

    template = templates().get(name or "")
    return bool(template and template.chat)


def _local_model_dir(model: str | None) -> Path | None:
    """The base model's folder when it is on this machine (an embedded model, a path); never the network
    (a name with one slash is a hub id: left alone)."""
    from harness.base.errors import UserError
    from harness.base.model import resolve_model

    if not model:
        return None
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if "/" in model:
        return None
    try:
        return Path(resolve_model(model).source)
    except UserError:
        return None
