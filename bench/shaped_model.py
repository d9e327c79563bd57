"""A random-weight Llama with the dimensions of a small model teams serve:
`python -m bench.shaped_model DEST [--shape qwen2.5-0.5b]`.

No weights can be downloaded here, and the tests' tiny model (2 layers of 128) costs
far less per token than anything a team would serve, which flatters generation in
every comparison against it. A model with a real model's layers, widths and
vocabulary does the same arithmetic per token as that model, whatever its weights say:
its speed is the real one, its answers are noise. It uses the tiny model's tokenizer
(ids beyond it are never fed in, only predicted), so prompts tokenize as the tiny
model's do. Benchmarks take it with `--model DEST`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

# Dimensions from each model's published config.json (the Hub's Qwen/Qwen2.5-0.5B and
# TinyLlama/TinyLlama-1.1B-Chat-v1.0); Llama's architecture stands in for Qwen2's,
# whose q/k/v biases add about a thousand parameters a layer (0.006% of the 0.5B).
SHAPES: dict[str, dict[str, Any]] = {
    "qwen2.5-0.5b": {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
                     "num_attention_heads": 14, "num_key_value_heads": 2, "head_dim": 64,
                     "vocab_size": 151936, "tie_word_embeddings": True},
    "tinyllama-1.1b": {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22,
                       "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 64,
                       "vocab_size": 32000, "tie_word_embeddings": False},
}


def build_shaped_model(dest: Path, shape: str, *, seed: int = 0) -> tuple[Path, int]:
    """Write the model into `dest` (bfloat16 weights); its directory and parameter count."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from almanac.demo.tinyllama import TOKENIZER_CORPUS, build_tokenizer, save_model, seeded_torch

    tokenizer = build_tokenizer(TOKENIZER_CORPUS)
    config = LlamaConfig(
        **SHAPES[shape], max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, dtype="bfloat16")
    with seeded_torch(seed):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    save_model(model, tokenizer, dest)
    return dest, sum(p.numel() for p in model.parameters())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shaped_model",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("dest", type=Path)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="qwen2.5-0.5b")
    args = parser.parse_args(argv)
    dest, params = build_shaped_model(args.dest, args.shape)
    print(f"{args.shape}-shaped random Llama, {params / 1e6:.0f}M parameters: {dest}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
