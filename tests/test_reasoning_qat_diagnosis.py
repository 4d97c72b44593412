"""Issue 29's diagnosis of kd-qat on tiny-reason, as tests: the student starts exactly at the GPTQ
checkpoint, finalize writes exactly what the trained student computed (the non-quantized parameters
included), the loss the kd trainer minimises is the divergence stage's KL, and the teacher's
completion budget follows the run's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def reason_gptq(tmp_path_factory):
    """tiny-reason, its tokenizer, a few validation texts and its 2-bit GPTQ checkpoint (kd-qat's init)."""
    from harness.base.model import load_tokenizer, resolve_model
    from harness.benchmarks.chain import generate
    from harness.core.plugin_manager import get_registry
    from harness.core.prompts import get_template
    from harness.core.strategy import QuantContext

    model_dir = Path(resolve_model("tiny-reason").source)
    tokenizer = load_tokenizer(model_dir)
    template = get_template("boxed")
    calib = [template.render(p.problem, tokenizer) + p.solution for p in generate("train")[:16]]
    texts = [template.render(p.problem, tokenizer) + p.solution for p in generate("validation")[:6]]
    registry = get_registry()
    kd_qat = registry.strategies.get("kd-qat")
    name, opts = kd_qat.initialisation(kd_qat.spec(2), kd_qat.make_options({}))
    gptq = registry.strategies.get(name)
    init = tmp_path_factory.mktemp("gptq2")
    gptq.quantize(model_dir, init, QuantContext(spec=gptq.spec(2), options=gptq.make_options(opts),
                                                tokenizer=tokenizer, calibration=calib))
    ctx = QuantContext(spec=kd_qat.spec(2), options=kd_qat.make_options({}), tokenizer=tokenizer)
    return kd_qat, ctx, init, tokenizer, texts


def _logits(model, tokenizer, texts: list[str]) -> list[torch.Tensor]:
    with torch.no_grad():
        return [model(**tokenizer([t], return_tensors="pt", add_special_tokens=False)).logits for t in texts]


@pytest.mark.slow
def test_the_student_before_any_step_computes_exactly_the_gptq_checkpoint(reason_gptq):
    from harness.base.model import load_model

    kd_qat, ctx, init, tokenizer, texts = reason_gptq
    student, _ = kd_qat.prepare(init, ctx)
    checkpoint = load_model(init, "cpu")
    for ours, theirs in zip(_logits(student, tokenizer, texts), _logits(checkpoint, tokenizer, texts)):
        assert torch.equal(ours, theirs)


@pytest.mark.slow
def test_finalize_writes_exactly_what_the_trained_student_computed(reason_gptq, tmp_path):
    """Training moves master weights, scales, and the norms and embeddings (fp32 masters, bf16 values):
    the reloaded 2-bit checkpoint computes the very logits the fake-quantized student did."""
    from harness.base.model import load_model

    kd_qat, ctx, init, tokenizer, texts = reason_gptq
    student, _ = kd_qat.prepare(init, ctx)
    (callback,) = [c for c in kd_qat.train_callbacks(student, ctx) if hasattr(c, "on_step_end")]
    callback.on_train_begin(None, None, None, model=student)
    norm = student.model.norm.weight
    start = norm.detach().clone()
    ulp = (start.to(torch.bfloat16).float().abs() * 2**-8).clamp_min(2**-133)
    torch.manual_seed(0)
    for _ in range(4):  # what four optimizer steps do: every parameter moves a little
        with torch.no_grad():
            for name, p in student.named_parameters():
                if name.endswith("parametrizations.weight.original"):
                    p.add_(torch.randn_like(p) * p.abs().mean() * 0.2)
                elif name.endswith(".scale"):
                    p.mul_(1 + 0.01 * torch.randn_like(p))
                elif name == "model.norm.weight":
                    p.add_(0.3 * ulp)  # under half of bf16's step: lost unless a master keeps it
                else:
                    p.add_(torch.randn_like(p) * 1e-3)
        callback.on_step_end(None, None, None)
    for name, p in student.named_parameters():
        if ".parametrizations." not in name:
            assert torch.equal(p, p.to(torch.bfloat16).float()), f"{name} is not what bf16 stores"
    assert (norm != start).float().mean() > 0.9  # 4 x 0.3 ulp: the master carried them over a step
    fake = _logits(student, tokenizer, texts)
    report = kd_qat.finalize(student, tmp_path / "out", ctx)
    assert report.extra["codes_changed_fraction"] > 0.005  # the integers moved too
    tokenizer.save_pretrained(tmp_path / "out")
    reloaded = load_model(tmp_path / "out", "cpu")
    for ours, theirs in zip(fake, _logits(reloaded, tokenizer, texts)):
        assert torch.equal(ours, theirs)


def test_the_kd_loss_is_the_divergence_stages_kl():
    """GKD's loss at beta=0 (the kd trainer's forward KL) and the divergence stage's per-token KL
    (teacher as reference) are one quantity: the loss and the validation KL are comparable."""
    from harness.compat.trl import gkd
    from harness.toolkit.divergence import exact_token_figures

    torch.manual_seed(0)
    student, teacher = torch.randn(1, 7, 13), torch.randn(1, 7, 13) * 2
    labels = torch.tensor([[-100, -100, 3, 4, 5, 6, 7]])
    loss = gkd()[0].generalized_jsd_loss(student, teacher, labels=labels, beta=0.0)
    # position t predicts token t+1 in a causal LM; the loss here is per position, as the trainer shifts
    figs = exact_token_figures(torch.log_softmax(teacher[0, 2:], -1), torch.log_softmax(student[0, 2:], -1),
                               labels[0, 2:])
    assert loss.item() == pytest.approx(sum(figs.kl) / len(figs.kl), rel=1e-5)


def test_the_teachers_budget_follows_the_run_unless_set():
    from harness.core.config import RunConfig, Sampling
    from harness.core.graph import run_graph
    from harness.core.plugin_manager import get_registry
    from harness.runs.planning import plan, plan_training

    registry = get_registry()

    def budgets(**kw) -> dict:
        return {s.trainer.name: getattr(s.config, "max_new_tokens", None)
                for s in plan_training(RunConfig(strategy="kd-qat", bits=2, **kw), registry)}

    assert budgets(trainer="kd") == {"kd": RunConfig().sampling.max_new_tokens}
    assert budgets(trainer="kd", sampling=Sampling(max_new_tokens=96)) == {"kd": 96}
    assert budgets(trainer="kd", sampling=Sampling(max_new_tokens=96),
                   trainer_opts=(("max_new_tokens", "32"),)) == {"kd": 32}
    assert budgets(trainer="kd,grpo", sampling=Sampling(max_new_tokens=96)) == {"kd": 96, "grpo": None}
    assert budgets(trainer="kd,grpo", sampling=Sampling(max_new_tokens=96),
                   trainer_opts=(("kd.max_new_tokens", "48"),)) == {"kd": 48, "grpo": None}
    # the budget is part of the checkpoint's key: another budget is another checkpoint
    keys = {n: run_graph(plan(RunConfig(strategy="kd-qat", bits=2, limit=2, sampling=Sampling(max_new_tokens=n)),
                              registry)).key("train") for n in (64, 96)}
    assert keys[64] != keys[96]
