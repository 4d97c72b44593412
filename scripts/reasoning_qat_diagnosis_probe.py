"""Issue 29's diagnostic probe: kd-qat on tiny-reason, step by step, on chain's validation split.

Runs the pieces a ``harness run --model tiny-reason --strategy kd-qat`` run chains (the gptq init
stage, kd-qat's prepare, the kd trainer, finalize) one at a time, and measures between them:

(a) the prepared student against the GPTQ checkpoint, and the finalized checkpoint (reloaded as the
    evaluation loads it) against the trained fake-quantized student: logits on validation texts;
(b) the distillation loss at the first and last steps, and KL(teacher || student) on the teacher's
    greedy completions of validation prompts, before and after training;
(c) how the learned scales moved (relative change, share that grew);
(d) greedy accuracy per level on the validation split: teacher, student before, student after
    (fake-quantized), finalized checkpoint.

Usage: python scripts/reasoning_qat_diagnosis_probe.py --bits 2 --lr 2e-4
       [--steps 150] [--limit 500] [--opt KEY=VALUE ...] [--strategy-opt KEY=VALUE ...] [--out DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bits", type=int, default=2)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--limit", type=int, default=500, help="validation problems for accuracy")
    ap.add_argument("--kl-problems", type=int, default=200, help="validation problems for the KL")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--opt", action="append", default=[], help="more kd trainer options, key=value")
    ap.add_argument("--strategy-opt", action="append", default=[], help="kd-qat options, key=value")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="kdqat-probe-"))
    figures = probe(args, out)
    text = json.dumps(figures, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text)


def probe(args, out: Path) -> dict:
    import torch

    from harness.base.model import load_model, load_tokenizer
    from harness.benchmarks.chain import generate as chain
    from harness.core.config import RunConfig, Sampling
    from harness.core.plugin_manager import get_registry
    from harness.core.prompts import get_template
    from harness.core.trainer import TrainContext
    from harness.runs.calibration import calibrate
    from harness.runs.planning import plan

    torch.manual_seed(args.seed)
    registry = get_registry()
    config = RunConfig(model="tiny-reason", strategy="kd-qat", bits=args.bits, benchmarks=("chain",),
                       train_data="chain", seed=args.seed, sampling=Sampling(max_new_tokens=args.max_new_tokens),
                       trainer_opts=(("learning_rate", str(args.lr)), ("max_steps", str(args.steps)),
                                     *(tuple(o.split("=", 1)) for o in args.opt)),
                       strategy_opts=tuple(tuple(o.split("=", 1)) for o in args.strategy_opt))
    p = plan(config, registry)
    model_dir = Path(p.model.source)
    tokenizer = load_tokenizer(model_dir)
    template = get_template(config.prompt)
    val = list(chain("validation", args.seed))
    prompts = [template.render(q.problem, tokenizer) for q in val]
    figures: dict = {"config": {"bits": args.bits, "lr": args.lr, "steps": args.steps, "seed": args.seed,
                                "max_new_tokens": args.max_new_tokens,
                                "trainer": p.training[0].trainer.describe_config(p.training[0].config),
                                "strategy_options": vars(p.quant.options)}}
    clock = time.perf_counter()

    # the init stage: the very GPTQ checkpoint a `--strategy gptq` run makes
    init = p.init
    init.quant.tokenizer = tokenizer
    calibrate(p, tokenizer, init.strategy, init.quant)
    init_dir = out / "init"
    if not (init_dir / "config.json").is_file():
        init.strategy.quantize(model_dir, init_dir, init.quant)
    tokenizer.save_pretrained(init_dir)
    gptq_model = load_model(init_dir, "cpu")
    teacher = load_model(model_dir, "cpu", dtype=torch.float32)

    strategy = p.strategy
    p.quant.tokenizer = tokenizer
    student, _ = strategy.prepare(init_dir, p.quant)
    texts = [pr + q.solution for pr, q in zip(prompts[:64], val[:64])]
    figures["a_init"] = logit_gap(gptq_model, student, tokenizer, texts)

    # (b), (c), (d) before training
    ref = completions(teacher, tokenizer, prompts[: args.kl_problems], args.max_new_tokens)
    figures["b_kl_before"] = kl_to_teacher(teacher, student, tokenizer, prompts[: args.kl_problems], ref)
    scales0 = scales(student)
    figures["d_teacher"] = accuracy(teacher, tokenizer, prompts[: args.limit], val[: args.limit], args.max_new_tokens)
    figures["d_before"] = accuracy(student, tokenizer, prompts[: args.limit], val[: args.limit], args.max_new_tokens)
    figures["d_gptq_checkpoint"] = accuracy(gptq_model, tokenizer, prompts[: args.limit], val[: args.limit],
                                            args.max_new_tokens)

    # training, as core's lifecycle runs it (harness.runs.training.train), stopping before finalize
    step = p.training[0]
    ctx = TrainContext(model_dir=init_dir, out_dir=out / "train", problems=list(chain("train", args.seed)),
                       prompt_for=lambda q: template.render(q.problem, tokenizer), config=step.config,
                       seed=args.seed, device="cpu", checkpoint_dir=out / "scratch", base_model=model_dir)
    ctx.callbacks = [*strategy.train_callbacks(student, p.quant)]
    start = time.perf_counter()
    report = step.trainer.train(student, None, ctx)
    trained = report.model.eval()
    losses = [row["loss"] for row in report.curve if "loss" in row]
    figures["b_loss"] = {"first": losses[0], "first5_mean": sum(losses[:5]) / len(losses[:5]),
                         "last5_mean": sum(losses[-5:]) / len(losses[-5:]), "logged": len(losses),
                         "train_seconds": time.perf_counter() - start,
                         **{k: report.extra.get(k) for k in ("examples", "completion_tokens_mean")}}
    figures["b_kl_after"] = kl_to_teacher(teacher, trained, tokenizer, prompts[: args.kl_problems], ref)
    figures["c_scales"] = scale_moves(scales0, scales(trained))
    figures["d_after_fake_quant"] = accuracy(trained, tokenizer, prompts[: args.limit], val[: args.limit],
                                             args.max_new_tokens)
    with torch.no_grad():
        fake = {t: trained(**enc(tokenizer, t)).logits for t in texts}
    final_dir = out / "final"
    report_q = strategy.finalize(trained, final_dir, p.quant)
    tokenizer.save_pretrained(final_dir)
    final = load_model(final_dir, "cpu")
    figures["a_finalize"] = logit_gap_cached(fake, final, tokenizer, texts)
    figures["a_finalize"]["codes_changed_fraction"] = report_q.extra["codes_changed_fraction"]
    figures["d_after_final"] = accuracy(final, tokenizer, prompts[: args.limit], val[: args.limit],
                                        args.max_new_tokens)
    figures["b_kl_final"] = kl_to_teacher(teacher, final, tokenizer, prompts[: args.kl_problems], ref)
    figures["seconds"] = time.perf_counter() - clock
    return figures


def enc(tokenizer, text: str) -> dict:
    return tokenizer([text], return_tensors="pt", add_special_tokens=False)


def logit_gap(a, b, tokenizer, texts: list[str]) -> dict:
    import torch

    with torch.no_grad():
        cached = {t: a(**enc(tokenizer, t)).logits for t in texts}
    return logit_gap_cached(cached, b, tokenizer, texts)


def logit_gap_cached(cached: dict, b, tokenizer, texts: list[str]) -> dict:
    """Max |logit difference|, the largest logit, and the share of positions with the same top token."""
    import torch

    gap, top, same, n = 0.0, 0.0, 0, 0
    with torch.no_grad():
        for t in texts:
            x, y = cached[t], b(**enc(tokenizer, t)).logits
            gap = max(gap, (x - y).abs().max().item())
            top = max(top, x.abs().max().item())
            same += int((x.argmax(-1) == y.argmax(-1)).sum())
            n += x.shape[1]
    return {"max_abs_logit_diff": gap, "max_abs_logit": top, "top1_same": same / n, "positions": n,
            "exact": gap == 0.0}


def completions(model, tokenizer, prompts: list[str], max_new_tokens: int) -> list[str]:
    from harness.core.config import Sampling
    from harness.toolkit.generation import generate

    return [c[0].text for c in generate(model, tokenizer, prompts, Sampling(max_new_tokens=max_new_tokens))]


def kl_to_teacher(teacher, student, tokenizer, prompts: list[str], refs: list[str]) -> dict:
    """KL(teacher || student) per completion token on the teacher's greedy completions, mean over
    tokens then over problems (the divergence stage's figure)."""
    import torch

    from harness.toolkit.divergence import exact_token_figures

    per_problem = []
    with torch.no_grad():
        for prompt, ref in zip(prompts, refs):
            p_ids = enc(tokenizer, prompt)["input_ids"]
            ids = enc(tokenizer, prompt + ref)["input_ids"]
            n = p_ids.shape[1]
            if ids.shape[1] <= n:
                continue
            t = torch.log_softmax(teacher(ids).logits[0, n - 1 : -1].float(), -1)
            s = torch.log_softmax(student(ids).logits[0, n - 1 : -1].float(), -1)
            figs = exact_token_figures(t, s, ids[0, n:])
            per_problem.append(sum(figs.kl) / len(figs.kl))
    return {"kl_mean": sum(per_problem) / len(per_problem), "problems": len(per_problem)}


def scales(model) -> dict:
    out = {}
    for name, module in model.named_modules():
        par = getattr(module, "parametrizations", None)
        if par is not None and "weight" in par:
            out[name] = par.weight[0].scale.detach().clone()
    return out


def scale_moves(before: dict, after: dict) -> dict:
    import torch

    rel = torch.cat([((after[n] - before[n]) / before[n]).flatten() for n in before])
    return {"scales": rel.numel(), "mean_rel_change": rel.mean().item(), "mean_abs_rel_change": rel.abs().mean().item(),
            "max_abs_rel_change": rel.abs().max().item(), "share_grew": (rel > 0).float().mean().item(),
            "share_shrank": (rel < 0).float().mean().item(), "share_unchanged": (rel == 0).float().mean().item()}


def accuracy(model, tokenizer, prompts: list[str], problems: list, max_new_tokens: int) -> dict:
    from harness.grading import grade

    texts = completions(model, tokenizer, prompts, max_new_tokens)
    by_level: dict[str, list[bool]] = defaultdict(list)
    for text, q in zip(texts, problems):
        by_level[q.level].append(grade(text, q.answer))
    every = [x for v in by_level.values() for x in v]
    return {"all": 100 * sum(every) / len(every), "n": len(every),
            **{f"L{k}": 100 * sum(v) / len(v) for k, v in sorted(by_level.items())}}


if __name__ == "__main__":
    main()
