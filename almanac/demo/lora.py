"""The demo's LoRA adapter: the generalist taught fruit types through low-rank
matrices on its attention's query and value projections (r·(d+k) weights each,
about 2% of the model), its own weights frozen. A few seconds of training make a
cheap specialist that shares the generalist's engine.

The adapter is written in PEFT's layout (`adapter_config.json` and
`adapter_model.safetensors`), which vLLM loads as a LoRARequest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from almanac.demo import DEMO_JOB
from almanac.demo.tinyllama import seeded_torch
from almanac.demo.training import DemoPrompts, fit

if TYPE_CHECKING:  # torch takes seconds to import: annotations only
    import torch

LORA_STEPS = 60
LORA_RANK = 8
TARGETS = ("q_proj", "v_proj")


def _lora_layer(base: torch.nn.Linear, rank: int, generator: torch.Generator) -> torch.nn.Module:
    """`base` plus B·A: A random, B zero, so training starts from the base's answers."""
    import torch

    class LoRALinear(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.base = base
            self.lora_a = torch.nn.Parameter(
                torch.randn(rank, base.in_features, generator=generator) / base.in_features**0.5)
            self.lora_b = torch.nn.Parameter(torch.zeros(base.out_features, rank))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.base(x) + x @ self.lora_a.T @ self.lora_b.T

    return LoRALinear()


def train_fruit_lora(base_dir: Path, dest: Path, *, steps: int = LORA_STEPS,
                     rank: int = LORA_RANK, seed: int = 0, job: Path = DEMO_JOB) -> Path:
    """Write a LoRA adapter for the model in `base_dir` that names fruit types."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

    base_dir, dest = Path(base_dir), Path(dest)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(base_dir)
    with seeded_torch(seed, threads=1):
        model = LlamaForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        for weight in model.parameters():
            weight.requires_grad_(False)
        generator = torch.Generator().manual_seed(seed)
        layers = list(model.model.layers)
        for layer in layers:
            for name in TARGETS:
                setattr(layer.self_attn, name,
                        _lora_layer(getattr(layer.self_attn, name), rank, generator))
        trained = [w for w in model.parameters() if w.requires_grad]
        fit(model, tokenizer, DemoPrompts(job), steps=steps, seed=seed, params=trained, lr=2e-2)
    tensors = {}
    for i, layer in enumerate(layers):
        for name in TARGETS:
            module = getattr(layer.self_attn, name)
            key = f"base_model.model.model.layers.{i}.self_attn.{name}"
            tensors[f"{key}.lora_A.weight"] = module.lora_a.detach().contiguous()
            tensors[f"{key}.lora_B.weight"] = module.lora_b.detach().contiguous()
    dest.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(dest / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = {
        "base_model_name_or_path": str(base_dir.resolve()),
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank,
        "lora_alpha": rank,  # scaling alpha / r = 1: the matrices as trained
        "lora_dropout": 0.0, "target_modules": list(TARGETS), "bias": "none",
        "fan_in_fan_out": False, "modules_to_save": None, "use_rslora": False,
        "use_dora": False, "inference_mode": True,
    }
    (dest / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n", "utf-8")
    (dest / "README.md").write_text(
        f"# almanac/fruit-lora\n\nA LoRA adapter (rank {rank}, on q_proj and v_proj) of "
        f"almanac/tiny-generalist, trained by `almanac demo` for {steps} steps to name the "
        "botanical type of a fruit: a cheap specialist on a shared base.\n",
        "utf-8")
    return dest
