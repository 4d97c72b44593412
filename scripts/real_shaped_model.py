"""Build a random-weight model with a real model's configuration, here, without a download.

Why: latency, memory and kernel choices depend on shapes (vocabulary, width, depth, GQA ratio),
not on trained weights; the embedded models are far smaller than anything deployed. Accuracy of
such a model is meaningless (0%), its speed and bytes are those of the real one.

    python scripts/real_shaped_model.py --shape qwen3-0.6b --out /tmp/qwen3-0.6b-shaped

The tokenizer is tiny-arith's (its ids fit any larger vocabulary), so the harness's benchmarks and
prompts run unchanged.
"""

from __future__ import annotations

import argparse
from pathlib import Path

#: published configurations (config.json of the hub repository), the fields that set shapes
SHAPES: dict[str, dict] = {
    "qwen3-0.6b": dict(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                       num_attention_heads=16, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True,
                       max_position_embeddings=40960, rope_theta=1000000.0, rms_norm_eps=1e-6),
    "qwen3-1.7b": dict(vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
                       num_attention_heads=16, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True,
                       max_position_embeddings=40960, rope_theta=1000000.0, rms_norm_eps=1e-6),
}


def build(shape: str, out: Path, seed: int = 0) -> Path:
    """Write ``shape``'s architecture with random bf16 weights and tiny-arith's tokenizer to ``out``."""
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    from harness.base.model import resolve_model

    if shape not in SHAPES:
        raise SystemExit(f"unknown shape {shape!r}; choose one of {', '.join(sorted(SHAPES))}")
    tok = AutoTokenizer.from_pretrained(resolve_model("tiny-arith").source)
    cfg = Qwen3Config(**SHAPES[shape], eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      bos_token_id=None, dtype="bfloat16")
    torch.manual_seed(seed)
    with torch.device("cpu"):
        model = Qwen3ForCausalLM(cfg).to(torch.bfloat16)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    n = sum(p.numel() for p in model.parameters())
    print(f"{shape}: {n / 1e6:.0f} M parameters, random weights (seed {seed}), bf16, in {out}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="qwen3-0.6b", choices=sorted(SHAPES))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    build(args.shape, args.out, args.seed)


if __name__ == "__main__":
    main()
