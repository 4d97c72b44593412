"""Batched generation with transformers: left padding, KV cache, length-sorted batches.

Sorting prompts by length before batching keeps padding (wasted compute) small;
results come back in the caller's order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from harness.core.config import Sampling


@dataclass
class Generated:
    text: str
    n_tokens: int


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Indices grouped into batches of similar prompt length, longest first (fail fast on memory)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def stop_token_ids(model, tokenizer) -> list[int]:
    ids = model.generation_config.eos_token_id
    ids = list(ids) if isinstance(ids, (list, tuple)) else ([ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def generate_batch(model, tokenizer, prompts: Sequence[str], sampling: Sampling, seed: int = 0) -> list[Generated]:
    """One batch: every prompt gets ``sampling.n`` completions (n consecutive results each)."""
    import torch

    from harness.base.threads import adapt

    adapt()  # the default thread count follows what else runs on the machine, batch by batch

    enc = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    kwargs = dict(
        max_new_tokens=sampling.max_new_tokens,
        num_return_sequences=sampling.n,
        eos_token_id=stop_token_ids(model, tokenizer),
        pad_token_id=tokenizer.pad_token_id,
    )
    if sampling.greedy:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    else:
        kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        torch.manual_seed(seed)
    with torch.inference_mode():
        out = model.generate(**enc, **kwargs)
    new = out[:, enc["input_ids"].shape[1] :]
    results = []
    stops = set(kwargs["eos_token_id"]) | {tokenizer.pad_token_id}
    for row in new.tolist():
        n = len(row)
        for i, tok in enumerate(row):
            if tok in stops:
                n = i + 1 if tok != tokenizer.pad_token_id else i
                break
        results.append(Generated(tokenizer.decode(row[:n], skip_special_tokens=True), n))
    return results


def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    sampling: Sampling,
    batch_size: int = 64,
    seed: int = 0,
    on_batch: Callable[[list[int], list[list[Generated]]], None] | None = None,
) -> list[list[Generated]]:
    """Completions for every prompt (``sampling.n`` each), in the prompts' order.

    ``on_batch(indices, completions)`` is called after each batch, so callers can
    store results as they finish.
    """
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    results: list[list[Generated]] = [[] for _ in prompts]
    for b, idx in enumerate(length_sorted_batches(lengths, batch_size)):
        flat = generate_batch(model, tokenizer, [prompts[i] for i in idx], sampling, seed=seed * 100_003 + b)
        per_prompt = [flat[j * sampling.n : (j + 1) * sampling.n] for j in range(len(idx))]
        for i, comps in zip(idx, per_prompt):
            results[i] = comps
        if on_batch:
            on_batch(idx, per_prompt)
    return results
