"""``harness export`` and the lm-eval shapes: a run's model leaves the cache as a folder that plain
transformers loads (and reproduces the run's completions), with its card and lm-eval's files."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import cli


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def rtn_run(tmp_path_factory) -> dict:
    """``rtn --bits 4`` on the first 20 arith problems, with its own store and cache."""
    root = tmp_path_factory.mktemp("rtn-run")
    store, cache = str(root / "r.db"), str(root / "cache")
    result = invoke("run", "--strategy", "rtn", "--bits", "4", "--limit", "20", "--store", store,
                    "--cache-dir", cache, "--json")
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    assert run["status"] == "complete"
    return {**run, "store": store, "cache": cache, "root": root}


@pytest.fixture(scope="module")
def exported(rtn_run) -> Path:
    out = rtn_run["root"] / "export"
    result = invoke("export", rtn_run["run_id"][:8], str(out), "--store", rtn_run["store"],
                    "--cache-dir", rtn_run["cache"])
    assert result.exit_code == 0, result.output
    assert "exported run" in result.output
    return out


def stored_samples(rtn_run) -> list[dict]:
    from harness.runs.store import Store

    return Store(rtn_run["store"]).samples(rtn_run["run_id"])


#: plain transformers in a fresh interpreter: what a user who downloaded the folder runs
FRESH_PROCESS = r"""
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

folder, job = sys.argv[1], json.loads(sys.stdin.read())
tokenizer = AutoTokenizer.from_pretrained(folder)
model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
prompts = [tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                         add_generation_prompt=True) for text in job["texts"]]
tokenizer.padding_side = "left"
if tokenizer.pad_token is None:
    tokenizer.pad_token = tokenizer.eos_token
batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
with torch.inference_mode():
    out = model.generate(**batch, max_new_tokens=job["max_new_tokens"], do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)
new = out[:, batch["input_ids"].shape[1]:]
print(json.dumps({"prompts": prompts, "completions": tokenizer.batch_decode(new, skip_special_tokens=True),
                  "classes": sorted({type(m).__name__ for m in model.modules() if "Linear" in type(m).__name__}),
                  "quantized": bool(getattr(model.config, "quantization_config", None))}))
"""


@pytest.mark.slow
def test_exported_model_loads_in_a_fresh_process_and_gives_the_stored_completions(rtn_run, exported):
    from harness.core.plugin_manager import get_registry
    from harness.core.prompts import get_template

    samples = stored_samples(rtn_run)
    assert len(samples) == 20
    problems = {p.id: p for p in get_registry().benchmarks.get("arith").load("test")[:20]}
    template = get_template(rtn_run["config"]["prompt"])
    job = {"texts": [template.template.format(problem=problems[s["problem_id"]].problem) for s in samples],
           "max_new_tokens": rtn_run["config"]["sampling"]["max_new_tokens"]}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(exported)], input=json.dumps(job),
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    fresh = json.loads(proc.stdout.strip().splitlines()[-1])
    assert fresh["quantized"], "the folder must carry the compressed-tensors quantization config"
    # the exported chat template renders exactly the prompts the run generated from
    assert fresh["prompts"] == [s["prompt"] for s in samples]
    assert fresh["completions"] == [s["completion"] for s in samples]
    # the folder stands on its own: no cache marker, the recipe, the card and lm-eval's files
    names = {p.name for p in exported.iterdir()}
    assert "harness-artifact.json" not in names
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja", "recipe.yaml",
            "harness-run.json", "README.md"} <= names
    assert any(n.startswith("results_") for n in names) and any(n.startswith("samples_arith_") for n in names)


@pytest.mark.slow
def test_model_card_states_results_settings_size_and_profile(rtn_run, exported):
    from huggingface_hub import ModelCard

    card = ModelCard.load(exported / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "transformers"
    assert {"rtn", "4-bit", "w4a16", "quantized", "compressed-tensors"} <= set(data["tags"])
    acc = rtn_run["metrics"]["arith"]["accuracy"]
    results = {(r.dataset_name, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert results[("arith", "accuracy")] == pytest.approx(acc["value"], abs=1e-4)
    text = card.text
    assert f"{acc['value'] * 100:.1f}%" in text and f"[{acc['lo'] * 100:.1f}%, {acc['hi'] * 100:.1f}%]" in text
    for needle in ("greedy", "at most 64 new tokens", "`strict`", "the first 20", "engine: `hf`",
                   f"{rtn_run['profile']['weight_bytes']:,} bytes", "transformers 5.", "pack-quantized W4A16",
                   "harness run --strategy rtn --bits 4 --limit 20", '"group_size": 128'):
        assert needle in text, needle
    recipe = json.loads((exported / "harness-run.json").read_text())
    assert recipe["strategy"] == {"name": "rtn", "spec": "W4A16", "options": {"group_size": 128, "symmetric": True},
                                  "reference": False, "given": {}}
    assert recipe["artifact"]["stage"] == "quantize" and recipe["profile"]["engine"] == "hf"


@pytest.mark.slow
def test_results_and_samples_have_lm_evals_shape(rtn_run, exported):
    """Checked against lm-eval itself: its schema, its file-name readers, its table, and its own
    evaluator run on the same documents with the stored completions replayed."""
    pytest.importorskip("lm_eval")
    from lm_eval import evaluator
    from lm_eval.api.model import LM
    from lm_eval.api.task import ConfigurableTask, TaskConfig
    from lm_eval.result_schema import EvalResults, SampleResult
    from lm_eval.utils import (
        get_file_datetime,
        get_results_filenames,
        get_sample_results_filenames,
        make_table,
    )

    from harness.core.plugin_manager import get_registry
    from harness.grading import grade_full, references

    files = [str(p) for p in exported.iterdir()]
    [results_file] = get_results_filenames(files)
    [samples_file] = get_sample_results_filenames(files)
    assert get_file_datetime(results_file).removesuffix(".json") == get_file_datetime(samples_file)
    ours = json.loads(Path(results_file).read_text())
    rows = [json.loads(line) for line in Path(samples_file).read_text().splitlines()]

    # `harness show --format lm-eval` prints the same results (chat template read from the base model)
    shown = invoke("show", rtn_run["run_id"], "--format", "lm-eval", "--store", rtn_run["store"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == ours

    assert set(ours) - set(EvalResults.__annotations__) == {"harness", "harness_version"}
    assert set(ours["config"]) <= set(typing.get_type_hints(EvalResults)["config"].__annotations__)
    assert {"results", "configs", "versions", "n-shot", "higher_is_better", "n-samples", "config"} <= set(ours)
    assert ours["n-samples"]["arith"] == {"original": 500, "effective": 20}
    assert ours["results"]["arith"]["exact_match,none"] == rtn_run["metrics"]["arith"]["accuracy"]["value"]
    assert set(SampleResult.__annotations__) <= set(rows[0])
    assert "exact_match" in make_table(ours)

    # lm-eval's evaluator on the same documents, the stored completions replayed, graded by the harness
    docs = exported / "docs.jsonl"
    docs.write_text("".join(json.dumps(r["doc"]) + "\n" for r in rows))
    prompt = {r["doc"]["id"]: r["arguments"]["gen_args_0"]["arg_0"] for r in rows}
    replay = {r["arguments"]["gen_args_0"]["arg_0"]: r["resps"][0][0] for r in rows}
    problems = {p.id: p for p in get_registry().benchmarks.get("arith").load("test")}

    class Replay(LM):
        def loglikelihood(self, requests):
            raise NotImplementedError

        def loglikelihood_rolling(self, requests):
            raise NotImplementedError

        def generate_until(self, requests):
            return [replay[r.args[0]] for r in requests]

    def process(doc, results):
        return {"exact_match": float(grade_full(results[0], references(problems[doc["id"]])).correct)}

    ours_config = ours["configs"]["arith"]
    task = ConfigurableTask(config={
        "task": "arith", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(docs)}},
        "test_split": "test", "output_type": "generate_until", "doc_to_text": lambda d: prompt[d["id"]],
        "doc_to_target": "{{answer}}", "generation_kwargs": ours_config["generation_kwargs"], "repeats": 1,
        "process_results": process, "metadata": {"version": ours["versions"]["arith"]},
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
    })
    theirs = evaluator.evaluate(Replay(), {"tasks": {"arith": task}, "groups": {}}, log_samples=True)
    docs.unlink()
    for key, value in theirs["results"]["arith"].items():
        assert ours["results"]["arith"][key] == (
            pytest.approx(value, rel=1e-12) if isinstance(value, float) else value
        ), key
    assert set(ours_config) <= {f.name for f in dataclasses.fields(TaskConfig)}
    TaskConfig(**ours_config)  # a configuration lm-eval accepts as one of its tasks
    for key in ("versions", "n-shot"):
        assert ours[key] == theirs[key]
    assert ours["higher_is_better"]["arith"]["exact_match"] is theirs["higher_is_better"]["arith"]["exact_match"]
    for mine, their in zip(rows, theirs["samples"]["arith"], strict=True):
        their = {**their, "arguments": {f"gen_args_{i}": {f"arg_{j}": a for j, a in enumerate(args)}
                                        for i, args in enumerate(their["arguments"])}}  # as lm-eval's tracker writes it
        for key in ("doc_id", "doc", "target", "arguments", "resps", "filtered_resps", "filter", "doc_hash",
                    "prompt_hash", "target_hash", "exact_match"):
            assert mine[key] == their[key], key


# -- refusals: fast, on a run whose model is a stand-in folder in the cache ---------------------------


def fake_run(tmp_path, status: str = "complete", strategy: str = "rtn", stage: str = "quantize",
             **config) -> tuple[str, str, str]:
    """A stored run (no samples) whose ``stage`` artifact is a minimal model folder: (run id, store, cache)."""
    from harness.core.config import RunConfig
    from harness.runs.cache import ArtifactCache
    from harness.runs.store import Store

    store_path, cache_root = str(tmp_path / "fake.db"), str(tmp_path / "fake-cache")
    config = RunConfig(strategy=strategy, bits=4 if strategy != "none" else 16, limit=3, **config)
    store = Store(store_path)
    store.start_run(config.run_id, config.label, config.to_dict(), {"quant-rl-harness": "0"}, None)
    key = "feedface"
    record = {"quantize_key": key} if stage == "quantize" else {"train": {"key": key, "steps": 3}}
    store.add_artifacts(config.run_id, {**record, "quant": {"weight_bytes": 10}})
    store.finish_run(config.run_id, status)

    def make(out: Path) -> dict:
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"weights")
        inputs = ({"options": {"group_size": 128}} if stage == "quantize"
                  else {"strategy": [strategy, "W4A16", {"granularity": "channel"}], "trainer_config": {"lr": 1e-5}})
        return {"inputs": inputs, "steps": 3}

    ArtifactCache(Path(cache_root)).build(stage, key, make)
    return config.run_id, store_path, cache_root


@pytest.mark.parametrize("strategy, stage, config, tags", [
    ("rtn", "quantize", {}, {"rtn", "4-bit", "w4a16", "quantized"}),
    ("none", "quantize", {}, set()),  # the unquantized reference exports too
    ("ste", "train", {"trainer": "grpo"}, {"ste", "4-bit", "grpo"}),  # in-training
])
def test_export_writes_the_evaluated_artifact_of_every_kind_of_run(tmp_path, strategy, stage, config, tags):
    from huggingface_hub import ModelCard

    run_id, store, cache = fake_run(tmp_path, strategy=strategy, stage=stage, **config)
    out = tmp_path / "out"
    result = invoke("export", run_id, str(out), "--store", store, "--cache-dir", cache)
    assert result.exit_code == 0, result.output
    assert (out / "model.safetensors").read_bytes() == b"weights"
    recipe = json.loads((out / "harness-run.json").read_text())
    assert recipe["artifact"]["stage"] == stage and recipe["strategy"]["name"] == strategy
    assert recipe["strategy"]["options"] == ({"group_size": 128} if stage == "quantize" else {"granularity": "channel"})
    card = ModelCard.load(out / "README.md")
    assert tags <= set(card.data.tags) and "quant-rl-harness" in card.data.tags
    assert ("quantized" in card.data.tags) == (strategy != "none")
    assert card.data.to_dict().get("base_model") is None  # tiny-arith is not on the hub: the body names it
    assert "`tiny-arith`" in card.text


def test_lm_eval_rows_hold_every_sample_of_a_problem():
    """With ``-n 2`` a document's ``resps`` hold both completions, its metrics their mean, and pass@2
    is reported beside exact_match with lm-eval's closed-form standard error."""
    from harness.reports.lm_eval_format import build, stderr_of_mean

    def sample(pid, k, correct):
        return {"benchmark": "arith", "problem_id": pid, "sample": k, "level": "1", "prompt": f"Q{pid}",
                "completion": f"A{pid}{k}", "predicted": "1", "reference": "1", "correct": correct,
                "formatted": 1, "reward": correct + 0.1, "n_tokens": 3}

    rows = [sample("p1", 0, 1), sample("p1", 1, 0), sample("p2", 0, 0), sample("p2", 1, 0), sample("p3", 0, 1),
            sample("p3", 1, 1)]
    run = {"id": "r1", "label": "x", "config": {"benchmarks": ["arith"], "sampling": {"n": 2, "temperature": 1.0,
           "top_p": 1.0, "max_new_tokens": 8}, "prompt": "raw", "engine": "hf"}, "versions": {}, "created": 1.0,
           "finished": 3.0, "git_commit": None}
    metrics = {"arith": {"accuracy": {"value": 0.5, "lo": 0.0, "hi": 1.0},
                         "pass@2": {"value": 2 / 3, "lo": 0, "hi": 1}}}
    results, logged = build(run, rows, metrics)
    [r1, r2, r3] = logged["arith"]
    assert [r["doc_id"] for r in (r1, r2, r3)] == [0, 1, 2]  # no benchmark split given: problem-id order
    assert r1["resps"] == [["Ap10", "Ap11"]] and r1["filtered_resps"] == [["Ap10", "Ap11"]]
    assert (r1["exact_match"], r2["exact_match"], r3["exact_match"]) == (0.5, 0.0, 1.0)
    assert r1["pass@2"] == 1.0 and r2["pass@2"] == 0.0
    task = results["results"]["arith"]
    assert task["exact_match,none"] == 0.5
    assert task["exact_match_stderr,none"] == pytest.approx(stderr_of_mean([0.5, 0.0, 1.0]))
    assert task["pass@2,none"] == pytest.approx(2 / 3)
    assert results["higher_is_better"]["arith"]["pass@2"] is True
    assert results["config"]["gen_kwargs"] == {"until": [], "do_sample": True, "max_gen_toks": 8,
                                               "temperature": 1.0, "top_p": 1.0}
    assert results["configs"]["arith"]["repeats"] == 2
    assert stderr_of_mean([1.0]) == "N/A"  # as lm-eval: no standard error from one problem


def assert_one_line_exit_2(result, expected: str) -> None:
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_export_refuses_an_unknown_run(tmp_path):
    _, store, cache = fake_run(tmp_path)
    assert_one_line_exit_2(invoke("export", "deadbeef", str(tmp_path / "out"), "--store", store, "--cache-dir", cache),
                           "no run 'deadbeef'")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("status", ["failed", "running"])
def test_export_refuses_a_run_that_is_not_complete(tmp_path, status):
    run_id, store, cache = fake_run(tmp_path, status)
    expected = f"{status}, not complete"  # a running run's process (this one) is alive: it stays running
    result = invoke("export", run_id, str(tmp_path / "out"), "--store", store, "--cache-dir", cache)
    assert_one_line_exit_2(result, expected)
    assert not (tmp_path / "out").exists()


def test_export_refuses_a_model_missing_from_the_cache(tmp_path):
    run_id, store, _ = fake_run(tmp_path)
    result = invoke("export", run_id, str(tmp_path / "out"), "--store", store, "--cache-dir", str(tmp_path / "other"))
    assert_one_line_exit_2(result, "is not in the artifact cache")


def test_export_refuses_a_non_empty_folder_and_force_replaces_only_an_export(tmp_path):
    run_id, store, cache = fake_run(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = ("export", run_id, str(out), "--store", store, "--cache-dir", cache)
    assert_one_line_exit_2(invoke(*args), "is not empty")
    assert_one_line_exit_2(invoke(*args, "--force"), "not an earlier harness export")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    (out / "notes.txt").unlink()  # an empty folder is fine
    assert invoke(*args).exit_code == 0
    assert {"config.json", "harness-run.json", "README.md"} <= {p.name for p in out.iterdir()}
    assert_one_line_exit_2(invoke(*args), "is not empty")
    (out / "stale.bin").write_text("from an earlier export")
    assert invoke(*args, "--force").exit_code == 0  # an earlier export is replaced whole
    assert not (out / "stale.bin").exists() and (out / "harness-run.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary folder left


def test_an_error_while_writing_leaves_nothing(tmp_path, monkeypatch):
    from harness.reports import model_card

    run_id, store, cache = fake_run(tmp_path)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(model_card, "model_card", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        invoke("export", run_id, str(tmp_path / "out"), "--store", store, "--cache-dir", cache)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("flags", [
    ["--strategy", "rtn", "--bits", "4", "--limit", "20"],
    ["--strategy", "gptq", "--bits", "8", "--act-bits", "8", "--strategy-opt", "group_size=0", "--seed", "3",
     "--benchmarks", "arith,math500", "--preset", "rlquant", "--prompt", "plain", "-n", "4", "--max-new-tokens", "128"],
    ["--trainer", "grpo", "--trainer-opt", "lr=1e-5", "--max-steps", "5", "--strategy", "qlora", "--bits", "4",
     "--prompt", "plain", "--extraction", "strict", "--temperature", "0.6", "--engine", "vllm",
     "--engine-opt", "dtype=bfloat16"],
])
def test_the_cards_reproduce_command_makes_the_same_configuration(flags):
    import shlex

    from harness.cli.options import build_config
    from harness.cli.run import run
    from harness.reports.model_card import reproduce_command

    def config_of(args):
        params = run.make_context("run", list(args)).params
        return build_config(**{k: v for k, v in params.items() if k not in ("store", "cache_dir", "force", "as_json")})

    original = config_of(flags)
    command = shlex.split(reproduce_command(original.to_dict()))
    assert command[:2] == ["harness", "run"]
    assert config_of(command[2:]) == original
