"""``harness export``: a stored run's evaluated model as a folder that stands on its own.

The artifact cache keeps the model a run evaluated under a hash; a user who
picked a row of the leaderboard needs it as a folder that
``AutoModelForCausalLM.from_pretrained`` (and, where the format allows,
``vllm serve``) loads, with what it takes to trust it: its tokenizer and chat
template (every artifact carries them), the quantization recipe, a model card
with the run's accuracy, intervals, settings, size and profile, and the results
and per-sample rows in lm-eval's shapes (:mod:`harness.reports.lm_eval_format`).

The folder is written as a temporary sibling and renamed into place only when
complete, so an error leaves nothing half-written; an existing folder is
replaced only with ``force`` and only when it is an earlier export.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.base.errors import UserError
from harness.core.graph import final_artifact
from harness.core.status import RunStatus
from harness.runs.results import is_reference_run

#: the recipe file every export holds: what made the model and how it was judged (also the marker
#: that lets ``--force`` replace a folder: only an earlier export is ever deleted)
RECIPE = "harness-run.json"
#: version of :data:`RECIPE`'s layout
RECIPE_FORMAT = 1

#: artifact formats (registered :class:`~harness.core.engine.ArtifactFormat` names) that plain
#: ``from_pretrained`` does not load
#: as the harness evaluated them: what the card and the command say about each
PLAIN_LOAD_CAVEATS: dict[str, str] = {
    "compressed-tensors-transforms": "transformers drops the online rotations on reload (the logits change); "
                                     "load it as the harness did, through the strategy's load",
    "peft-adapter": "the LoRA adapter in adapter/ is not applied by a plain from_pretrained of the folder; "
                    "load the base, then peft.PeftModel.from_pretrained(model, 'adapter')",
    "bitsandbytes": "needs bitsandbytes installed (its quantization config is in config.json)",
}


@dataclass
class ExportReport:
    """What an export wrote, for the command's summary line."""

    run_id: str
    label: str
    out_dir: Path
    artifact: Path
    artifact_format: str
    files: list[str] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0
    caveat: str | None = None


def artifact_of(run: dict, cache: Any) -> tuple[str, str, Path, dict]:
    """(stage, key, folder, record) of the model a run evaluated: its quantize artifact, else (an
    in-training strategy's) its train artifact, as :meth:`harness.runs.pipeline.Runner.materialize` recorded
    (:func:`harness.core.graph.final_artifact`)."""
    located = final_artifact(run.get("artifacts") or {})
    if located is None:
        raise UserError(f"run {run['id']} ({run['label']}) records no model artifact; run it again with "
                        "`harness run` (the same options) to record one")
    stage, key = located
    found = cache.get(stage, key)
    if found is None:
        raise UserError(f"the model of run {run['id']} ({stage} artifact {key}) is not in the artifact cache "
                        f"{cache.root}; pass the --cache-dir the run used, or rebuild it with `harness profile` "
                        "and the run's options")
    path, record = found
    return stage, key, path, record


def check_destination(out_dir: Path, force: bool) -> bool:
    """Refuse a destination that is a file, or a non-empty folder (with ``force``: unless it is an
    earlier export, which is then replaced). Whether something is there to replace."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} is a file; choose a new or empty folder to export into")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return False
    if not force:
        raise UserError(f"{out_dir} is not empty; choose a new or empty folder, or pass --force to replace "
                        "an earlier export")
    if not (out_dir / RECIPE).is_file():
        raise UserError(f"{out_dir} is not empty and is not an earlier harness export (no {RECIPE}); "
                        "--force replaces only an export: choose a new or empty folder")
    return True


def export_run(store: Any, cache: Any, run_id: str, out_dir: Path | str, force: bool = False) -> ExportReport:
    """Write run ``run_id``'s evaluated model, recipe, model card and lm-eval files into ``out_dir``."""
    from harness.core.formats import artifact_format
    from harness.runs.results import stored_run

    start = time.perf_counter()
    out_dir = Path(out_dir).expanduser().absolute()
    run = stored_run(store, run_id)  # unknown or ambiguous: the same line as `harness show`
    rid = run["id"]
    if run["status"] != RunStatus.COMPLETE:
        raise UserError(f"run {rid} ({run['label']}) is {run['status']}, not complete; finish it with "
                        "`harness run` and the same options before exporting it")
    stage, key, artifact, record = artifact_of(run, cache)
    replace = check_destination(out_dir, force)
    fmt = artifact_format(artifact)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    except OSError as exc:
        raise UserError(f"cannot write in {out_dir.parent}: {exc.strerror or exc}; choose another folder") from None
    try:
        write_folder(tmp, store, run, stage, key, artifact, record, fmt)
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's (and the cache folder's) 0700: the export is for others too
        publish(tmp, out_dir, replace)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*") if p.is_file())
    size = sum((out_dir / f).stat().st_size for f in files)
    return ExportReport(rid, run["label"], out_dir, artifact, fmt, files, size, time.perf_counter() - start,
                        PLAIN_LOAD_CAVEATS.get(fmt))


def write_folder(tmp: Path, store: Any, run: dict, stage: str, key: str, artifact: Path, record: dict,
                 fmt: str) -> None:
    """Everything an export holds, into ``tmp``: the model files, the recipe, lm-eval's files, the card."""
    from harness.reports import lm_eval_format
    from harness.reports.model_card import model_card
    from harness.runs.cache import DONE

    shutil.copytree(artifact, tmp, ignore=shutil.ignore_patterns(DONE), dirs_exist_ok=True,
                    copy_function=shutil.copyfile)
    results, logged = lm_eval_format.for_store(store, run["id"], model_dir=artifact)
    date = lm_eval_format.date_id(run.get("finished") or run["created"])
    (tmp / lm_eval_format.results_filename(date)).write_text(json.dumps(results, indent=2, default=str,
                                                                        ensure_ascii=False))
    for task, rows in logged.items():
        with open(tmp / lm_eval_format.samples_filename(task, date), "w", encoding="utf-8") as f:
            f.writelines(json.dumps(row, default=str, ensure_ascii=False) + "\n" for row in rows)
    recipe = recipe_of(run, store.profile(run["id"]), store.metrics(run["id"]), stage, key, record, fmt)
    (tmp / RECIPE).write_text(json.dumps(recipe, indent=2, default=str))
    (tmp / "README.md").write_text(model_card(recipe, results, engines_for(fmt), PLAIN_LOAD_CAVEATS.get(fmt)))


def recipe_of(run: dict, profile: dict | None, metrics: dict, stage: str, key: str, record: dict, fmt: str) -> dict:
    """What made the model and how it was judged: the run's strategy, spec and options (resolved, as
    the artifact's key hashed them), its trainer, the artifact's record, config, versions and results."""
    from harness import __version__
    from harness.core.strategy import QuantSpec

    config = run["config"]
    inputs = record.get("inputs") or {}
    spec = QuantSpec(config.get("bits") or 16, config.get("act_bits", 16), config.get("kv_bits", 16)).label
    strategy_options = inputs.get("options")
    if strategy_options is None and isinstance(inputs.get("strategy"), list) and len(inputs["strategy"]) > 2:
        strategy_options = inputs["strategy"][2]  # an in-training strategy: [name, spec, options] in the train key
    return {
        "format": RECIPE_FORMAT,
        "exported_by": f"quant-rl-harness {__version__}",
        "run_id": run["id"],
        "label": run["label"],
        "model": config.get("model"),
        "strategy": {"name": config.get("strategy"), "spec": spec, "options": strategy_options,
                     "reference": is_reference_run(config, run.get("artifacts") or {}),
                     "given": config.get("strategy_opts") or {}},
        "trainer": {"name": config.get("trainer"), "options": inputs.get("trainer_config"),
                    "given": config.get("trainer_opts") or {}, "max_steps": config.get("max_steps")},
        "artifact": {"stage": stage, "key": key, "format": fmt, "inputs": inputs,
                     "quant": record.get("quant"),
                     "train": {k: record[k] for k in ("steps", "seconds") if k in record}},
        "config": config,
        "versions": run.get("versions") or {},
        "git_commit": run.get("git_commit"),
        "created": run.get("created"),
        "finished": run.get("finished"),
        "metrics": metrics,
        "profile": profile,
    }


def engines_for(fmt: str) -> list[str]:
    """The installed engines that run this format (what the card says serves it)."""
    from harness.core.plugin_manager import get_registry

    registry = get_registry()
    return [engine.name for engine in registry.engines if engine.accepts(fmt, registry.formats)]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish(tmp: Path, out_dir: Path, replace: bool) -> None:
    """Rename the finished folder into place; an earlier export is moved aside first, deleted last."""
    if replace:
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
        os.replace(out_dir, old / "export")
        try:
            os.replace(tmp, out_dir)
        except BaseException:
            os.replace(old / "export", out_dir)  # put the earlier export back
            raise
        finally:
            shutil.rmtree(old, ignore_errors=True)
        return
    try:
        if out_dir.is_dir():
            out_dir.rmdir()  # empty when checked: the finished folder takes its place
        os.replace(tmp, out_dir)
    except OSError as exc:
        raise UserError(f"cannot put the export in place at {out_dir} ({exc.strerror or exc}): something wrote "
                        "there meanwhile; choose a new or empty folder") from None
