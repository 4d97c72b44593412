"""The evaluate and profile stages, through the run's generation engine.

``harness run``, ``harness profile`` and every sweep cell come through
:func:`serve`: the engine starts on the artifact (a model in this process, or
a server), every benchmark is evaluated through the session (samples stored
batch by batch, so an engine that dies loses only what was in flight), and the
profile is measured by the same session, so latency and memory come from what
served the evaluation. A profile-only call skips the evaluation.

Clean state: a run that trained in this process would be profiled in a
process distorted by training (its allocator and threads stay warm with the
trainer's state; the same artifact measured several times slower). When the
engine runs in process (``hf``) and a training stage was built here,
evaluation and profile run in a fresh process (``spawn``) on the stored
artifact instead; a server engine is a fresh process by construction.
"""

from __future__ import annotations

import multiprocessing
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from harness.base.cpu_dtype import vector_extensions
from harness.base.errors import UserError
from harness.base.model import load_tokenizer
from harness.base.progress import stage_progress
from harness.base.quiet import quiet_libraries
from harness.base.signals import die_with_parent, stop_like_ctrl_c
from harness.base.threads import for_children
from harness.core.config import RunConfig
from harness.core.engine import EngineSettings
from harness.core.formats import artifact_format
from harness.core.plan import Plan
from harness.core.plugin_manager import get_registry
from harness.core.prompts import get_template
from harness.core.strategy import Strategy
from harness.runs.evaluation import compute_metrics, evaluate
from harness.runs.planning import plan as plan_run
from harness.runs.profile_keeping import keep_profile
from harness.runs.store import Store
from harness.toolkit.profiling import LatencySettings


@dataclass
class Destination:
    """Where a served run's results go: the store and run id, the server logs' folder, the console."""

    store: Store
    run_id: str
    log_dir: Path
    console: Any = None


@dataclass
class Serving:
    """What to measure: evaluate every benchmark (or only profile), with these latency settings."""

    evaluate: bool = True
    latency: LatencySettings = field(default_factory=LatencySettings)
    #: prompts per benchmark a profile-only call times (an evaluation times all of them)
    profile_prompts: int = 8


def engine_settings(plan: Plan, console: Any = None, strategy: Strategy | None = None) -> EngineSettings:
    """What the run's engine is started with: device, the strategy that loads the artifact, options."""
    cfg = plan.config
    return EngineSettings(
        device=plan.device, strategy=strategy or plan.strategy, options=plan.engine_options,
        url=cfg.engine_url, python=cfg.engine_python, console=console,
    )


def check_artifact(plan: Plan, model_dir: Path) -> None:
    """The written checkpoint's own format, checked before the engine starts on it (a model given by
    path, or a plugin whose declared format is wrong, is refused with the same line)."""
    plan.engine.check(artifact_format(model_dir, plan.registry.formats), plan.device,
                      others=list(plan.registry.engines), settings=engine_settings(plan),
                      known_formats=plan.registry.formats)


def evaluate_and_profile(plan: Plan, model_dir: Path, artifacts: dict, dest: Destination,
                         fresh_process: bool = False) -> dict:
    """Evaluate every benchmark of ``plan`` and store the profile, here or in a fresh process."""
    if fresh_process and plan.engine.in_process:
        if dest.console is not None:
            dest.console.print(
                "[bold]evaluate[/bold] in a fresh process (this one trained: a clean state for the profile)"
            )
        return _in_fresh_process(plan, model_dir, artifacts, dest)
    return evaluate_here(plan, model_dir, artifacts, dest)


def evaluate_here(plan: Plan, model_dir: Path, artifacts: dict, dest: Destination) -> dict:
    """Evaluate and profile in this process; the profile (also stored)."""
    return serve(plan, model_dir, artifacts, dest, Serving())


def serve(plan: Plan, model_dir: Path, artifacts: dict, dest: Destination, what: Serving) -> dict:
    """Start the run's engine on ``model_dir``; evaluate (when asked) and profile through that one session.

    Samples and metrics are stored as each benchmark ends; the profile is
    returned, and stored when the benchmarks were evaluated (a profile-only
    caller decides how it merges with a stored evaluation's)."""
    cfg = plan.config
    check_artifact(plan, model_dir)
    tokenizer = load_tokenizer(model_dir)
    template = get_template(cfg.prompt)

    def prompt_for(problem: Any) -> str:
        return template.render(problem.problem, tokenizer)

    timings: dict = {}
    settings = engine_settings(plan, dest.console)
    settings.extra["log_dir"] = str(dest.log_dir)  # server logs beside the artifacts
    quant = artifacts.get("quant") or {}
    with plan.engine.start(model_dir, settings) as session:
        if what.evaluate:
            with session.measure() as eval_watch, \
                    stage_progress("evaluate", dest.console, unit="problems") as progress:
                for name, problems in plan.problems.items():
                    timings[name] = evaluate(
                        dest.store, dest.run_id, name, problems, session, prompt_for, cfg.sampling,
                        cfg.batch_size, cfg.seed, progress, extraction=cfg.extraction,
                    )
                    rows = dest.store.samples(dest.run_id, name)
                    metrics = compute_metrics(rows, seed=cfg.seed, problems=problems, n_requested=cfg.sampling.n)
                    dest.store.set_metrics(dest.run_id, name, metrics)
            prompts = [prompt_for(p) for probs in plan.problems.values() for p in probs]
            profile = session.profile(prompts, cfg, what.latency, timings, eval_watch.stats, quant=quant)
            profile.update(compute_figures(plan, model_dir, session))
            keep_profile(dest.store, dest.run_id, profile)
        else:
            prompts = [prompt_for(p) for probs in plan.problems.values() for p in probs[: what.profile_prompts]]
            profile = session.profile(prompts, cfg, what.latency, {}, None, quant=quant)
            profile.update(compute_figures(plan, model_dir, session))
    return profile


def compute_figures(plan: Plan, model_dir: Path, session: Any) -> dict[str, Any]:
    """The dtype the session computed in, why the engine chose it, and the CPU's vector extensions: a latency
    figure means nothing without them (bf16 is fast on one CPU and slow on another)."""
    choice = plan.engine.compute_dtype(plan.device, plan.engine_options, artifact_format(model_dir))
    return {"compute_dtype": session.compute_dtype or choice.dtype, "compute_dtype_reason": choice.reason,
            "cpu_extensions": None if plan.device.startswith("cuda") else " ".join(vector_extensions())}


def _in_fresh_process(plan: Plan, model_dir: Path, artifacts: dict, dest: Destination) -> dict:
    for_children()  # the child imports torch afresh: the same thread choice as this process
    ctx = multiprocessing.get_context("spawn")
    problem_ids = {name: [p.id for p in problems] for name, problems in plan.problems.items()}
    child = ctx.Process(
        target=_child,
        args=(plan.config.to_dict(), str(dest.store.path), str(dest.log_dir), dest.run_id, str(model_dir),
              artifacts, problem_ids),
        name="harness-evaluate",
    )
    child.start()
    try:
        child.join()
    except BaseException:
        child.terminate()
        child.join()
        raise
    if child.exitcode == 130:
        raise KeyboardInterrupt
    if child.exitcode != 0:
        raise RuntimeError(f"the evaluation process exited with status {child.exitcode} (its error is above)")
    return dest.store.profile(dest.run_id) or {}


def _child(config: dict, store_path: str, log_dir: str, run_id: str, model_dir: str, artifacts: dict,
           problem_ids: dict[str, list[str]]) -> None:
    """Body of the fresh evaluation process: plan again, keep the parent's problems, evaluate, profile."""
    die_with_parent()  # SIGKILL: the parent's store already says what happened
    stop_like_ctrl_c()
    quiet_libraries()
    store = Store(store_path)
    try:
        the_plan = plan_run(RunConfig.from_dict(config), get_registry())
        keep = {name: set(ids) for name, ids in problem_ids.items()}
        the_plan.problems = {name: [p for p in the_plan.problems[name] if p.id in keep[name]] for name in keep}
        evaluate_here(the_plan, Path(model_dir), artifacts,
                      Destination(store, run_id, Path(log_dir), Console(stderr=True)))
    except KeyboardInterrupt:
        sys.exit(130)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    finally:
        store.close()
