"""One run: plan it (:mod:`harness.runs.planning`: every check on user input before anything is written),
then build the stages of its graph (:mod:`harness.core.graph`: train -> quantize -> evaluate -> profile)
against one store and
one artifact cache.

The pipeline owns *when* things happen; plugins only say *what* exists. Every
stage's output is an artifact keyed by the hash of everything that made it,
so a sweep trains one RL checkpoint and quantizes it many ways.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from harness.core.graph import Stage, StageKind, run_graph
from harness.core.plan import Initialisation, Plan
from harness.core.status import RunStatus
from harness.core.strategy import FULL, QuantSpec
from harness.runs.cache import ArtifactCache
from harness.runs.calibration import calibrate
from harness.runs.divergence import Reference, measure_divergence
from harness.runs.evaluate import Destination, Serving, evaluate_and_profile, serve
from harness.runs.planning import plan as plan_run
from harness.runs.profile_keeping import keep_profile
from harness.runs.provenance import git_commit, versions
from harness.runs.store import Store
from harness.toolkit.profiling import LatencySettings


class Runner:
    """Runs plans against one store and one artifact cache."""

    def __init__(self, store: Store, cache: ArtifactCache, console=None):
        self.store = store
        self.cache = cache
        from rich.console import Console

        self.console = console or Console(stderr=True)
        #: a training stage was built in this process (its evaluation then runs in a fresh one)
        self.trained_here = False

    # -- stages -----------------------------------------------------------------------
    def train_stage(self, plan: Plan, stage: Stage, source: str, tokenizer, run_id: str,
                    first_step: int = 0) -> tuple[Path, dict]:
        """Train ``source`` with the stage's trainer (core's lifecycle: :mod:`harness.runs.training`), cached by
        ``stage.key``; its curve is stored from ``first_step`` on (after the chain's earlier stages)."""
        from harness.core.prompts import get_template
        from harness.core.trainer import TrainContext

        cfg = plan.config
        step = plan.training[stage.train_index]
        key_parts, key = stage.inputs, stage.key
        template = get_template(cfg.prompt)
        problems = plan.registry.benchmarks.get(cfg.train_data).load(
            "train", Path(cfg.data_dir) if cfg.data_dir else None
        )
        curve: list[tuple[int, dict]] = []

        def make(out: Path) -> dict:
            from harness.runs import training

            self.console.print(f"[bold]train[/bold] {step.trainer.name} on {cfg.train_data} (seed {cfg.seed}) -> {key}")
            self.trained_here = True
            quant = plan.quant
            quant.tokenizer = tokenizer
            if plan.in_training:
                calibrate(plan, tokenizer)
            ctx = TrainContext(
                model_dir=_local(source),
                out_dir=out,
                problems=problems,
                prompt_for=lambda p: template.render(p.problem, tokenizer),
                config=step.config,
                seed=cfg.seed,
                device=plan.device,
                checkpoint_dir=self.cache.scratch("train", key),
                on_log=lambda s, logs: curve.append((s, logs)),
                base_model=_local(plan.model.source),
            )
            strategy = plan.strategy if plan.in_training else None
            report = training.train(step.trainer, ctx, strategy, quant if strategy is not None else None)
            with_tokenizer(out, tokenizer)
            return {
                "stage": stage.name,
                "trainer": step.trainer.name,
                "key": key,
                "inputs": key_parts,
                "steps": report.steps,
                "seconds": report.seconds,
                "curve": report.curve or [dict(step=s, **logs) for s, logs in curve],
                "quant": _asdict(report.quant),
                "extra": report.extra,
            }

        path, record = self.cache.build("train", key, make)
        chain = len(plan.training) > 1
        self.store.add_curve(run_id, [
            (first_step + p["step"],
             {**{k: v for k, v in p.items() if k != "step"}, **({"stage": stage.name} if chain else {})})
            for p in record.get("curve", [])
        ])
        return path, record

    def quantize_stage(self, plan: Plan, stage: Stage, source: str, tokenizer,
                       init: Initialisation | None = None) -> tuple[Path, dict]:
        """Quantize ``source`` with the run's post-training strategy (or the initialisation an
        in-training strategy starts from), cached by ``stage.key``."""
        key_parts, key = stage.inputs, stage.key
        strategy, quant = (init.strategy, init.quant) if init is not None else (plan.strategy, plan.quant)

        def make(out: Path) -> dict:
            from harness.base.progress import heartbeat

            what = f"{strategy.name} {quant.spec.label}"
            full = quant.spec == QuantSpec(FULL)  # nothing to announce for a full-precision copy
            if not full:
                self.console.print(f"[bold]quantize[/bold] {what} -> {key}")
            quant.tokenizer = tokenizer
            calibrate(plan, tokenizer, strategy, quant)
            start = time.perf_counter()
            with heartbeat("quantize", what, self.console) if not full else contextlib.nullcontext():
                report = strategy.quantize(_local(source), out, quant)
            with_tokenizer(out, tokenizer)
            rec = _asdict(report)
            rec["stage_seconds"] = time.perf_counter() - start
            return {"stage": "quantize", "key": key, "inputs": key_parts, "quant": rec}

        return self.cache.build("quantize", key, make)

    def materialize(self, plan: Plan, run_id: str, until: str | None = None) -> tuple[Path, dict[str, Any]]:
        """Build (or reuse) the artifact stages of the run's graph in order; the model directory the
        last one wrote (``until``: stop after that stage) and the records of the stages that made it.

        ``run``, ``harness profile`` and executors building a stage several cells share all come
        through here, so they read one graph (:func:`harness.core.graph.run_graph`)."""
        from harness.base.model import load_tokenizer

        tokenizer = load_tokenizer(plan.model.source)
        source = plan.model.source
        artifacts: dict[str, Any] = {"reference": plan.strategy.is_reference}
        steps = 0
        graph = run_graph(plan)
        for stage in graph.artifacts:
            if stage.kind is StageKind.INIT:
                path, record = self.quantize_stage(plan, stage, source, tokenizer, init=plan.init)
                artifacts["init"] = {
                    "strategy": plan.init.strategy.name, "key": record["key"], "quant": record["quant"]
                }
            elif stage.kind is StageKind.QUANTIZE:
                path, record = self.quantize_stage(plan, stage, source, tokenizer)
                artifacts["quant"] = record["quant"]
                artifacts["quantize_key"] = record["key"]
            else:
                path, record = self.train_stage(plan, stage, source, tokenizer, run_id, first_step=steps)
                steps += record.get("steps", 0)
                done = {k: record[k] for k in ("key", "steps", "seconds", "quant") if k in record}
                if len(plan.training) > 1:  # a chain: every stage's record, the last one's as "train"
                    artifacts.setdefault("train_chain", []).append({"stage": stage.name, **done})
                artifacts["train"] = done
                artifacts["quant"] = record.get("quant")  # an in-training strategy's; a quantize stage replaces it
            artifacts["final"] = {"stage": stage.name, "cache": stage.kind.cache_folder, "key": stage.key}
            source = str(path)
            if stage.name == until:
                break
        return Path(source), artifacts

    # -- the run --------------------------------------------------------------------------
    def destination(self, run_id: str) -> Destination:
        """Where the evaluate and profile stages of ``run_id`` write: this store, the cache's log folder."""
        return Destination(self.store, run_id, self.cache.root / "logs", self.console)

    def run(self, plan: Plan, force: bool = False) -> dict:
        """Run (or resume) ``plan``; returns the stored run with its metrics."""
        cfg = plan.config
        run_id = cfg.run_id
        existing = self.store.get_run(run_id)
        if existing and existing["status"] == RunStatus.COMPLETE and not force:
            self.console.print(f"run {run_id} ({existing['label']}) is already complete: showing stored results")
            if self.lacks_divergence(plan):  # stored before the stage existed, or with --no-divergence
                self.divergence(plan, run_id)
            return self.result(run_id)
        if force and existing:  # --force: evaluate again from nothing; cached artifacts are reused
            self.store.discard_results(run_id)
        self.store.start_run(run_id, cfg.label, cfg.to_dict(), versions(plan), git_commit())
        try:
            model_dir, artifacts = self.materialize(plan, run_id)
            self.store.add_artifacts(run_id, artifacts)
            # evaluate and profile through the run's engine; in a fresh process when this one trained
            evaluate_and_profile(plan, model_dir, artifacts, self.destination(run_id), fresh_process=self.trained_here)
            self.divergence(plan, run_id, model_dir)
            self.store.finish_run(run_id, RunStatus.COMPLETE)
        except KeyboardInterrupt:
            self.store.finish_run(run_id, RunStatus.INTERRUPTED, "interrupted by the user")
            raise
        except Exception as exc:
            self.store.finish_run(run_id, RunStatus.FAILED, f"{type(exc).__name__}: {exc}")
            raise
        return self.result(run_id)

    def lacks_divergence(self, plan: Plan) -> bool:
        """The run's graph has a divergence stage whose figures the store does not hold."""
        return run_graph(plan).get("divergence") is not None and not self.store.divergence(plan.config.run_id)

    def divergence(self, plan: Plan, run_id: str, model_dir: Path | None = None) -> dict | None:
        """The divergence stage, when the run's graph has one: the reference run is evaluated first when
        the store lacks it (the id a plain run of the reference strategy gets, so a sweep computes it
        once), then both models are scored on its completions. The figures, or None."""
        if run_graph(plan).get("divergence") is None:
            return None
        ref_plan = plan_run(plan.reference, plan.registry)
        ref_id = ref_plan.config.run_id
        stored = self.store.get_run(ref_id)
        if stored is None or stored["status"] != RunStatus.COMPLETE:
            self.console.print(f"[bold]reference[/bold] {ref_plan.config.label} is evaluated first (divergence)")
            self.run(ref_plan)
        ref_dir, _ = self.materialize(ref_plan, ref_id)
        if model_dir is None:
            model_dir, _ = self.materialize(plan, run_id)
        return measure_divergence(plan, model_dir, Reference(ref_plan, ref_id, ref_dir), self.store, run_id,
                                  self.console, self.cache.root / "logs")

    def profile(self, plan: Plan, latency: LatencySettings) -> dict:
        """Profile ``plan``'s model without evaluating it, stored under the run's id.

        The model comes from the same cached stages as :meth:`run`. A run not
        stored yet gets a record with status ``profiled``; a stored run keeps
        its evaluation's own figures (throughput, forward share) and takes the
        rest from this profile."""
        cfg = plan.config
        run_id = cfg.run_id
        model_dir, artifacts = self.materialize(plan, run_id)
        self.console.print(f"[bold]profile[/bold] {cfg.label} on {plan.device}")
        result = serve(plan, model_dir, artifacts, self.destination(run_id), Serving(evaluate=False, latency=latency))
        result["source"] = "harness profile"
        if self.store.get_run(run_id) is None:
            self.store.start_run(run_id, cfg.label, cfg.to_dict(), versions(plan), git_commit())
            self.store.add_artifacts(run_id, artifacts)
            self.store.finish_run(run_id, RunStatus.PROFILED)
        # the store keeps a stored evaluation's own figures (throughput, forward share) this profile lacks
        return self.store.profile(run_id) if keep_profile(self.store, run_id, result) else result

    def result(self, run_id: str) -> dict:
        from harness.runs.results import run_result

        return run_result(self.store, run_id)


def _local(source: str) -> Path | str:
    """A local folder as a Path; a hub id as it is."""
    return Path(source) if Path(source).is_dir() else source


def with_tokenizer(model_dir: Path, tokenizer) -> None:
    """Every model artifact carries its tokenizer (and chat template), so whatever reads the folder
    (evaluation, a serving engine, an export) needs nothing else; a plugin's own copy is kept."""
    if not (Path(model_dir) / "tokenizer_config.json").exists():
        tokenizer.save_pretrained(model_dir)


def _asdict(obj: Any) -> dict | None:
    import dataclasses

    if obj is None:
        return None
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else dict(obj)
