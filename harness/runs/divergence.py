"""The divergence stage: the evaluated model against its full-precision reference, token by token.

Both models are scored teacher-forced on the reference run's own stored
completions (its prompt plus completion, the completion's tokens scored), and
the figures of :mod:`harness.toolkit.divergence` are stored per benchmark
beside the run's accuracy, with the flips between the two runs' answers.

An engine that runs in this process (``hf``) holds both models at once and
gives the whole vocabulary: the KL is exact. A server engine gives each
position's top k: the reference is scored first, its server stopped, then the
run's, and the figure is labelled as the top-k approximation it is. Either
way the reference is served by the run's own engine, so a vLLM row is compared
with a vLLM reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.base.errors import UserError
from harness.base.model import load_tokenizer
from harness.base.progress import stage_progress
from harness.core.engine import TokenScores
from harness.core.plan import Plan
from harness.runs.evaluate import engine_settings
from harness.runs.store import Store
from harness.toolkit.divergence import (
    TokenFigures,
    exact_token_figures,
    first_sample_correct,
    flips,
    summarize,
    topk_token_figures,
)


@dataclass
class Reference:
    """The reference run the stage compares with: its plan, stored id and model directory."""

    plan: Plan
    run_id: str
    model_dir: Path


def check_same_vocabulary(model_dir: Path, reference_dir: Path) -> None:
    """KL compares two distributions over one vocabulary: refuse two models whose tokenizers differ."""
    ours, theirs = load_tokenizer(model_dir), load_tokenizer(reference_dir)
    if ours.get_vocab() != theirs.get_vocab():
        raise UserError(f"the models in {model_dir} and {reference_dir} have different tokenizers "
                        f"({len(ours)} and {len(theirs)} tokens): a divergence needs one vocabulary")


def measure_divergence(plan: Plan, model_dir: Path, reference: Reference, store: Store, run_id: str,
                       console: Any = None, log_dir: Path | None = None, keep: bool = True) -> dict[str, dict]:
    """Score ``model_dir`` against the reference on every benchmark of ``plan``; the figures (benchmark ->
    :func:`harness.toolkit.divergence.summarize` plus flips and how it was measured), stored under
    ``run_id`` when ``keep`` (a comparison with another run than the reference is not kept)."""
    check_same_vocabulary(model_dir, reference.model_dir)
    pairs: dict[str, list[tuple[str, str, str]]] = {}
    reference_rows = {bench: store.samples(reference.run_id, bench) for bench in plan.problems}
    for bench, problems in plan.problems.items():
        wanted = {p.id for p in problems}
        rows = [r for r in reference_rows[bench] if r["problem_id"] in wanted and r["sample"] == 0]
        if not rows:
            raise UserError(f"the reference run {reference.run_id} stored no completions on {bench}: "
                            "nothing to compare with")
        pairs[bench] = [(r["problem_id"], r["prompt"], r["completion"]) for r in rows]
    total = sum(len(p) for p in pairs.values())
    with stage_progress("divergence", console, unit="problems") as progress:
        task = progress.add_task(f"against {reference.run_id}", total=total)
        figures, top_k = _score(plan, model_dir, reference, pairs, lambda: progress.update(task, advance=1), log_dir)
    out = {}
    for bench, per_problem in figures.items():
        result = summarize(per_problem, seed=plan.config.seed)
        result["flips"] = flips(first_sample_correct(reference_rows[bench]),
                                first_sample_correct(store.samples(run_id, bench)))
        result["reference_run"] = reference.run_id
        result["engine"] = plan.engine.name
        result["top_k"] = top_k  # None: exact over the whole vocabulary
        if keep:
            store.set_divergence(run_id, bench, result)
        out[bench] = result
    return out


def _score(plan: Plan, model_dir: Path, reference: Reference, pairs: dict[str, list[tuple[str, str, str]]],
           advance: Callable[[], None], log_dir: Path | None) -> tuple[dict[str, dict[str, TokenFigures]], int | None]:
    texts = [(prompt, completion) for rows in pairs.values() for _, prompt, completion in rows]
    keys = [(bench, pid) for bench, rows in pairs.items() for pid, _, _ in rows]
    run_settings = engine_settings(plan)
    ref_settings = engine_settings(reference.plan)
    for settings in (run_settings, ref_settings):
        if log_dir is not None:
            settings.extra["log_dir"] = str(log_dir)
    figures: dict[str, dict[str, TokenFigures]] = {bench: {} for bench in pairs}
    if plan.engine.in_process:  # both models at once, the whole vocabulary: exact
        with reference.plan.engine.start(reference.model_dir, ref_settings) as ref_session, \
                plan.engine.start(model_dir, run_settings) as run_session:
            for (bench, pid), ref, run in zip(keys, ref_session.score(texts), run_session.score(texts)):
                figures[bench][pid] = _figures(ref, run)
                advance()
        return figures, ref_session.score_top_k
    # a server at a time: the reference's top k first, then the run's
    with reference.plan.engine.start(reference.model_dir, ref_settings) as ref_session:
        ref_scores = list(ref_session.score(texts))
    with plan.engine.start(model_dir, run_settings) as run_session:
        for (bench, pid), ref, run in zip(keys, ref_scores, run_session.score(texts)):
            figures[bench][pid] = _figures(ref, run)
            advance()
        top_k = run_session.score_top_k
    return figures, top_k


def _figures(ref: TokenScores, run: TokenScores) -> TokenFigures:
    if ref.targets != run.targets:
        raise UserError("the two models split the same completion into different tokens: "
                        "a divergence needs one tokenizer")
    if not ref.targets:
        return TokenFigures()
    if ref.full is not None and run.full is not None:
        import torch

        return exact_token_figures(ref.full, run.full, torch.tensor(ref.targets))
    if ref.top is None or run.top is None:
        raise UserError("an engine gave neither full nor top-k log-probabilities: cannot measure divergence")
    return topk_token_figures(ref.top, run.top, ref.target_logprobs, run.target_logprobs)
