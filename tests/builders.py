"""Models the tests (and the engine benchmark) build from nothing, since the Hub
is out of reach: a tiny random-weight Llama and a LoRA adapter for it.

The tokenizer and architecture are the demo's (almanac.demo.tinyllama): what the
engine loads in tests is the same kind of model `almanac demo` trains.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from almanac.demo.tinyllama import (
    TOKENIZER_CORPUS,
    build_tokenizer,
    new_model,
    save_model,
    seeded_torch,
)

if TYPE_CHECKING:  # torch takes seconds to import: annotations only
    import torch


def build_tiny_model(dest: Path, *, seed: int = 0, corpus: list[str] | None = None) -> Path:
    """Write a tiny random-weight Llama and its tokenizer into ``dest``.

    The same seed and corpus give the same files, so tests can rely on the
    model's (meaningless but stable) output.
    """
    dest = Path(dest)
    tokenizer = build_tokenizer(corpus or TOKENIZER_CORPUS)
    with seeded_torch(seed):
        model = new_model(tokenizer)
    save_model(model, tokenizer, dest)
    return dest


def make_lora_adapter(
    base_dir: Path, dest: Path, *, rank: int = 4, seed: int = 0, scale: float = 2.0
) -> Path:
    """Write a PEFT LoRA adapter for the model in ``base_dir`` into ``dest``.

    Its weights are random but, unlike a freshly initialised PEFT adapter,
    its B matrices are not zero, so the adapter changes what the model
    generates. ``scale`` sets how strongly.
    """
    import torch
    from safetensors.torch import save_file

    base_dir, dest = Path(base_dir), Path(dest)
    config = json.loads((base_dir / "config.json").read_text(encoding="utf-8"))
    hidden = config["hidden_size"]
    head_dim = config.get("head_dim") or hidden // config["num_attention_heads"]
    out_dims = {
        "q_proj": config["num_attention_heads"] * head_dim,
        "v_proj": config["num_key_value_heads"] * head_dim,
    }
    gen = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for layer in range(config["num_hidden_layers"]):
        for module, out_dim in out_dims.items():
            key = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            # B @ A has entries of about scale / sqrt(hidden) (0.18 at the
            # default): far above the 0.02 of freshly initialised weights and
            # enough to change most of the trained demo model's answers.
            tensors[f"{key}.lora_A.weight"] = (
                torch.randn(rank, hidden, generator=gen) / hidden**0.5
            )
            tensors[f"{key}.lora_B.weight"] = (
                torch.randn(out_dim, rank, generator=gen) * scale / rank**0.5
            )
    dest.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(dest / "adapter_model.safetensors"), metadata={"format": "pt"})
    adapter_config = {
        "base_model_name_or_path": str(base_dir.resolve()),
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": rank,
        "lora_alpha": rank,  # scaling alpha / r = 1: `scale` alone sets the strength
        "lora_dropout": 0.0,
        "target_modules": ["q_proj", "v_proj"],
        "bias": "none",
        "fan_in_fan_out": False,
        "modules_to_save": None,
        "use_rslora": False,
        "use_dora": False,
        "inference_mode": True,
    }
    (dest / "adapter_config.json").write_text(
        json.dumps(adapter_config, indent=2) + "\n", encoding="utf-8"
    )
    return dest
