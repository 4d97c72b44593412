"""The evaluate and profile stages, through the run's generation engine.

``Runner.run`` materializes the artifact, then hands it here: the engine
starts on it (a model in this process, or a server), every benchmark is
evaluated through the session (samples stored batch by batch, so an engine
that dies loses only what was in flight), and the profile is measured by the
same session, so latency and memory come from what served the evaluation.

Clean state (issue 16, item 9): a run that trained in this process would be
profiled in a process distorted by training (measured: 152 tokens/s instead
of 1,183 for the same artifact in a fresh process). When the engine runs in
process (``hf``) and a training stage was built here, evaluation and profile
run in a fresh process (``spawn``) on the stored artifact instead; a server
engine is a fresh process by construction.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

from harness.engines.base import EngineSettings
from harness.errors import UserError


def engine_settings(plan, console=None, strategy: Any = None) -> EngineSettings:
    cfg = plan.config
    return EngineSettings(
        device=plan.device, strategy=strategy or plan.strategy, options=plan.engine_options,
        url=cfg.engine_url, python=cfg.engine_python, console=console,
    )


def check_engine(plan_config, registry, strategy, spec, device: str, check_here: bool = True):
    """The run's engine and its options, or a one-line refusal: unknown name, bad option, a format
    or device it cannot run, no environment. Called by ``pipeline.plan`` before anything is written."""
    engine = registry.engines.get(plan_config.engine)
    options = engine.make_options(dict(plan_config.engine_opts))
    fmt = strategy.artifact_format_for(spec, strategy.make_options(dict(plan_config.strategy_opts)))
    settings = EngineSettings(device=device, options=options, url=plan_config.engine_url,
                              python=plan_config.engine_python)
    if check_here:
        engine.check(fmt, device, others=list(registry.engines), settings=settings)
    elif not engine.accepts(fmt):
        engine.check(fmt, device, others=list(registry.engines))
    return engine, options


def check_artifact(plan, model_dir: Path) -> None:
    """The written checkpoint's own format, checked before the engine starts on it (a model given by
    path, or a plugin whose declared format is wrong, is refused with the same line)."""
    from harness.engines.checkpoint import artifact_format

    plan.engine.check(artifact_format(model_dir), plan.device, others=list(plan.registry.engines),
                      settings=engine_settings(plan))


def evaluate_and_profile(runner, plan, run_id: str, model_dir: Path, artifacts: dict, fresh_process: bool = False) -> None:
    """Evaluate every benchmark of ``plan`` and store the profile, here or in a fresh process."""
    if fresh_process and plan.engine.in_process:
        runner.console.print("[bold]evaluate[/bold] in a fresh process (this one trained: a clean state for the profile)")
        _in_fresh_process(runner, plan, run_id, model_dir, artifacts)
    else:
        evaluate_here(runner, plan, run_id, model_dir, artifacts)


def evaluate_here(runner, plan, run_id: str, model_dir: Path, artifacts: dict) -> None:
    from harness.evaluation import compute_metrics, evaluate
    from harness.model import load_tokenizer
    from harness.profiling import LatencySettings
    from harness.progress import stage_progress
    from harness.prompts import get_template

    cfg = plan.config
    check_artifact(plan, model_dir)
    tokenizer = load_tokenizer(model_dir)
    template = get_template(cfg.prompt)
    prompt_for = lambda p: template.render(p.problem, tokenizer)
    timings = {}
    settings = engine_settings(plan, runner.console)
    settings.extra["log_dir"] = str(runner.cache.root / "logs")  # server logs beside the artifacts
    with plan.engine.start(model_dir, settings) as session:
        with session.measure() as eval_watch, stage_progress("evaluate", runner.console, unit="problems") as progress:
            for name, problems in plan.problems.items():
                timings[name] = evaluate(
                    runner.store, run_id, name, problems, session, prompt_for, cfg.sampling,
                    cfg.batch_size, cfg.seed, progress, extraction=cfg.extraction,
                )
                rows = runner.store.samples(run_id, name)
                runner.store.set_metrics(run_id, name, compute_metrics(rows, seed=cfg.seed, problems=problems,
                                                                       n_requested=cfg.sampling.n))
        profile = session.profile(
            [prompt_for(p) for probs in plan.problems.values() for p in probs], cfg, LatencySettings(), timings,
            eval_watch.stats, plan=plan, quant=artifacts.get("quant") or {},
        )
    runner.store.set_profile(run_id, profile)


def _in_fresh_process(runner, plan, run_id: str, model_dir: Path, artifacts: dict) -> None:
    from harness.threads import for_children

    for_children()  # the child imports torch afresh: the same thread choice as this process
    ctx = multiprocessing.get_context("spawn")
    problem_ids = {name: [p.id for p in problems] for name, problems in plan.problems.items()}
    child = ctx.Process(
        target=_child,
        args=(plan.config.to_dict(), str(runner.store.path), str(runner.cache.root), run_id, str(model_dir),
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


def _child(config: dict, store_path: str, cache_root: str, run_id: str, model_dir: str, artifacts: dict,
           problem_ids: dict[str, list[str]]) -> None:
    """Body of the fresh evaluation process: plan again, keep the parent's problems, evaluate, profile."""
    import sys

    from harness.cache import ArtifactCache
    from harness.config import RunConfig
    from harness.pipeline import Runner, plan
    from harness.plugins import get_registry
    from harness.quiet import quiet_libraries
    from harness.signals import die_with_parent, stop_like_ctrl_c
    from harness.store import Store

    die_with_parent()  # SIGKILL: the parent's store already says what happened
    stop_like_ctrl_c()
    quiet_libraries()
    store = Store(store_path)
    try:
        the_plan = plan(RunConfig.from_dict(config), get_registry())
        keep = {name: set(ids) for name, ids in problem_ids.items()}
        the_plan.problems = {name: [p for p in the_plan.problems[name] if p.id in keep[name]] for name in keep}
        evaluate_here(Runner(store, ArtifactCache(Path(cache_root))), the_plan, run_id, Path(model_dir), artifacts)
    except KeyboardInterrupt:
        sys.exit(130)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    finally:
        store.close()
