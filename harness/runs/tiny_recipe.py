"""The recipe that builds an embedded model (tiny-arith, tiny-reason) from nothing: tokenizer,
architecture, training on its benchmark's train split.

Deterministic for a given seed, step count and torch thread count: it uses
only seeded generators and a fixed data order. A plain PyTorch loop is used
rather than ``transformers.Trainer`` because the whole recipe must run in
minutes on two CPU cores and nothing here needs the Trainer's machinery.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.tiny import EmbeddedModel

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]


#: prompt formats an embedded model is trained on, with their share of batches. Mixing
#: formats lets it answer under every shipped template, including the seed
#: study's raw-problem prompt; one format per batch keeps padding small.
FORMATS = {"boxed": 0.6, "plain": 0.15, "raw": 0.2, "r1": 0.05}


@dataclass
class TinyRecipe:
    """Settings of an embedded model's build; the defaults made tiny-arith's shipped weights
    (each model's own settings are in :data:`harness.tiny.MODELS`)."""

    name: str = field(default="tiny-arith", metadata={"help": "the model's name (progress and report only)"})
    benchmark: str = field(default="arith", metadata={"help": "benchmark whose train split the model learns"})
    formats: dict[str, float] = field(default_factory=lambda: dict(FORMATS),
                                      metadata={"help": "prompt format -> share of batches"})
    seed: int = field(default=0, metadata={"help": "seed of data order and initialisation"})
    steps: int = field(default=600, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=64, metadata={"help": "problems per step"})
    lr: float = field(default=1e-3, metadata={"help": "peak AdamW learning rate"})
    warmup: int = field(default=50, metadata={"help": "linear warm-up steps"})
    vocab_size: int = field(default=512, metadata={"help": "byte-level BPE vocabulary size"})
    hidden_size: int = 256
    intermediate_size: int = 768
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    head_dim: int = 64
    batch_by_level: bool = field(default=False, metadata={"help": "draw each batch from one level (similar lengths: "
                                 "less padding, which long multi-step solutions need)"})
    threads: int = field(default=1, metadata={"help": "torch threads: 1 keeps the build reproducible across machines "
                                              "(float reductions depend on it)"})


def recipe_for(model: EmbeddedModel, **changes: object) -> TinyRecipe:
    """The recipe that builds ``model``'s shipped weights, with ``changes`` (seed, steps, ...) over it
    (None: keep the shipped value)."""
    values = {"name": model.name, "benchmark": model.benchmark, **dict(model.recipe_overrides)}
    values.update({k: v for k, v in changes.items() if v is not None})
    return TinyRecipe(**values)


def pick_format(rng: random.Random, formats: dict[str, float] = FORMATS) -> str:
    return rng.choices(list(formats), weights=list(formats.values()))[0]


def training_text(problem, name: str, tokenizer) -> tuple[str, str]:
    """(prompt, completion) for one problem (with a step-by-step solution) in prompt format ``name``."""
    from harness.core.prompts import get_template

    end = "<|endoftext|>" if name in ("raw", "r1") else "<|im_end|>"
    prompt = get_template(name).render(problem.problem, tokenizer)
    steps = problem.solution
    if name == "r1":
        body, _, _ = steps.partition(" The answer is")
        completion = f" {body} </think> <answer> \\boxed{{{problem.answer}}} </answer>"
    elif name == "raw":
        completion = " " + steps
    else:
        completion = steps
    return prompt, completion + end


def build_tokenizer(recipe: TinyRecipe, texts: list[str]):
    """Byte-level BPE with single-digit tokens (digits never merge, which arithmetic needs)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=recipe.vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        bos_token=None,
        unk_token=None,
        additional_special_tokens=["<|endoftext|>", "<|im_start|>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"
    return fast


def build_model(recipe: TinyRecipe, tokenizer):
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.layers,
        num_attention_heads=recipe.heads,
        num_key_value_heads=recipe.kv_heads,
        head_dim=recipe.head_dim,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=[tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")],
        bos_token_id=None,
    )
    torch.manual_seed(recipe.seed)
    return Qwen3ForCausalLM(config)


def build(out_dir: Path, recipe: TinyRecipe | None = None, progress: bool = True,
          snapshots: tuple[int, ...] = ()) -> dict:
    """Build an embedded model into ``out_dir`` (default recipe: tiny-arith's); returns the build
    report (also saved). ``snapshots``: steps after which the model is also saved, beside
    ``out_dir`` as ``<out_dir>-step<N>`` (to choose a step count from one run)."""
    import torch

    from harness.core.plugin_manager import get_registry

    recipe = recipe or TinyRecipe()
    torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)
    rng = random.Random(recipe.seed)
    start = time.perf_counter()
    train = get_registry().benchmarks.get(recipe.benchmark).load("train")

    # Tokenizer: trained on every prompt format so the templates tokenize compactly.
    probe = PreTokenizerFree()
    texts = [p + c for p, c in (training_text(pr, name, probe) for pr in train[:1000] for name in recipe.formats)]
    tokenizer = build_tokenizer(recipe, texts)
    model = build_model(recipe, tokenizer)
    model.train()

    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.01, betas=(0.9, 0.98))

    def lr_at(step: int) -> float:
        if step < recipe.warmup:
            return (step + 1) / recipe.warmup
        frac = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    pad = tokenizer.pad_token_id
    losses: list[float] = []
    order = list(range(len(train)))
    rng.shuffle(order)
    by_level: dict[str, list[int]] = {}
    for i in order:
        by_level.setdefault(str(train[i].level), []).append(i)
    cursor = dict.fromkeys(by_level, 0)
    bar = _progress(progress)
    task = bar.add_task(f"training {recipe.name}", total=recipe.steps) if bar else None
    if bar:
        bar.start()
    try:
        for step in range(recipe.steps):
            ids, labels = [], []
            name = pick_format(rng, recipe.formats)
            if recipe.batch_by_level:
                level = rng.choice(sorted(by_level))
                queue = by_level[level]
                picked = [queue[(cursor[level] + j) % len(queue)] for j in range(recipe.batch_size)]
                cursor[level] += recipe.batch_size
            else:
                picked = [order[(step * recipe.batch_size + j) % len(order)] for j in range(recipe.batch_size)]
            for i in picked:
                problem = train[i]
                prompt, completion = training_text(problem, name, tokenizer)
                p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
                c = tokenizer(completion, add_special_tokens=False)["input_ids"]
                ids.append(p + c)
                labels.append([-100] * len(p) + c)
            width = max(map(len, ids))
            input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids])
            label_t = torch.tensor([[-100] * (width - len(x)) + x for x in labels])
            attn = (torch.arange(width)[None, :] >= (width - torch.tensor([len(x) for x in ids]))[:, None]).long()
            out = model(input_ids=input_ids, attention_mask=attn, labels=label_t)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(out.loss.item())
            if bar:
                bar.update(task, advance=1, description=f"training {recipe.name} loss {losses[-1]:.3f}")
            if step + 1 in snapshots:
                _save(model, tokenizer, out_dir.with_name(f"{out_dir.name}-step{step + 1}"))
    finally:
        if bar:
            bar.stop()

    model.eval()
    _save(model, tokenizer, out_dir)
    report = {
        "recipe": asdict(recipe),
        "parameters": sum(p.numel() for p in model.parameters()),
        "final_loss": sum(losses[-50:]) / min(50, len(losses)),
        "seconds": round(time.perf_counter() - start, 1),
        "torch": torch.__version__,
    }
    (out_dir / "recipe.json").write_text(json.dumps(report, indent=2))
    return report


def _save(model, tokenizer, out_dir: Path) -> None:
    """Save a loadable model folder (greedy generation config, tokenizer) without changing ``model``'s mode."""
    from transformers import GenerationConfig

    out_dir.mkdir(parents=True, exist_ok=True)
    model.generation_config = GenerationConfig(
        eos_token_id=model.config.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=False
    )
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


class PreTokenizerFree:
    """Stand-in tokenizer without a chat template, used while the real one is built.

    The BPE is trained on the raw prompt formats; the chat wrapper's few
    special tokens are added as special tokens, so they need no merges.
    """

    chat_template = None


def _progress(enabled: bool):
    if not enabled:
        return None
    from harness.base.progress import stage_progress

    return stage_progress("tiny", unit="steps")
