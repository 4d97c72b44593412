"""Quantization-aware distillation: a student learns a teacher's next-token distributions.

The loop Reasoning-QAT's recipe trains with (``kd-qat``): AdamW over every
trainable parameter of the (fake-quantized) student, learned quantization
scales included, a linear warm-up then linear decay, the KL (or next-token
cross-entropy) on completion tokens only, the teacher's logits computed on the
same batch. TRL's ``GKDTrainer`` with ``lmbda=0`` (off-policy data) is the
library's counterpart; this loop stays as written because the published
reasoning-qat numbers were made with it, and moving kd-qat onto a ``kd``
trainer plugin built on TRL is a change of results to be measured, not a
refactor."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@dataclass
class Example:
    ids: list[int]
    prompt_len: int  # loss on ids[prompt_len:]


def collate(batch: list[Example], pad_id: int, device: str):
    """Right-padded ids, attention mask and the mask of predicted (completion) positions."""
    import torch

    width = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    target = torch.zeros((len(batch), width), dtype=torch.bool)
    for i, e in enumerate(batch):
        ids[i, : len(e.ids)] = torch.tensor(e.ids)
        attention[i, : len(e.ids)] = 1
        target[i, e.prompt_len : len(e.ids)] = True
    return ids.to(device), attention.to(device), target.to(device)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, ids: torch.Tensor,
                      target: torch.Tensor, objective: str = "kd", kl: str = "forward") -> torch.Tensor:
    """Mean over completion tokens of KL(teacher || student) (forward), KL(student || teacher)
    (reverse), or the cross-entropy of the actual next token (``ntp``).

    ``target[b, t]`` marks the tokens to predict; token t is predicted by the logits at t - 1.
    """
    import torch.nn.functional as F

    mask = target[:, 1:]
    logits = student_logits[:, :-1][mask].float()
    if objective == "ntp":
        return F.cross_entropy(logits, ids[:, 1:][mask])
    log_s = F.log_softmax(logits, dim=-1)
    log_t = F.log_softmax(teacher_logits[:, :-1][mask].float(), dim=-1)
    if kl == "forward":
        return F.kl_div(log_s, log_t, log_target=True, reduction="batchmean")
    return F.kl_div(log_t, log_s, log_target=True, reduction="batchmean")


def distill(student, teacher, examples: list[Example], pad_id: int, opts: Any, seed: int, device: str,
            on_log=None) -> list[dict]:
    """Quantization-aware distillation: AdamW over every trainable parameter (master weights, scales,
    norms, embeddings); returns the loss curve.

    ``opts`` gives ``lr``, ``warmup_steps``, ``steps``, ``batch_size``, ``objective`` (kd or ntp)
    and ``kl`` (forward or reverse), as :class:`harness.strategies.kd_qat.KDQATOptions` does.
    """
    import torch

    torch.manual_seed(seed)
    rng = random.Random(f"kd-qat-{seed}")
    params = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=opts.lr, weight_decay=0.0)

    def schedule(step: int) -> float:
        if step < opts.warmup_steps:
            return (step + 1) / (opts.warmup_steps + 1)
        return max(0.0, (opts.steps - step) / max(1, opts.steps - opts.warmup_steps))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    order: list[int] = []
    curve = []
    student.train()
    start = time.perf_counter()
    for step in range(1, opts.steps + 1):
        if len(order) < opts.batch_size:
            more = list(range(len(examples)))
            rng.shuffle(more)
            order.extend(more)
        batch = [examples[i] for i in order[: opts.batch_size]]
        del order[: opts.batch_size]
        ids, attention, target = collate(batch, pad_id, device)
        teacher_logits = None
        if opts.objective == "kd":
            with torch.no_grad():
                teacher_logits = teacher(input_ids=ids, attention_mask=attention).logits
        logits = student(input_ids=ids, attention_mask=attention).logits
        loss = distillation_loss(logits, teacher_logits, ids, target, opts.objective, opts.kl)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        row = {"step": step, "loss": loss.item(), "grad_norm": float(grad_norm),
               "learning_rate": scheduler.get_last_lr()[0], "seconds": time.perf_counter() - start}
        if not math.isfinite(row["loss"]):
            raise RuntimeError(f"strategy 'kd-qat': the loss became {row['loss']} at step {step}; lower lr")
        curve.append(row)
        if on_log is not None:
            on_log(row)
    student.eval()
    return curve
