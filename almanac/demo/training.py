"""Tiny Llama models for tests and for ``almanac demo``.

No model can be downloaded where Almanac is developed and tested, so the
models the engine runs there are built here from nothing:

* :func:`build_tiny_model` - random weights, a few seconds; for tests that only
  need vLLM to load and run *some* model.
* :func:`train_demo_model` - the same architecture trained for well under a
  minute on the demo task (fruit -> botanical fruit type), so that the demo job
  in ``almanac/demo/fruits`` gets correct answers.
* :func:`make_lora_adapter` - a PEFT LoRA adapter for such a model whose
  weights visibly change its greedy output.

Heavy libraries (torch, transformers, tokenizers, safetensors, jinja2) are
imported inside the functions so that importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import functools
import json
import random
from pathlib import Path
from typing import Any, Iterator

# The botanical fruit type of each demo fruit.
FRUIT_FAMILIES: dict[str, str] = {
    # drupes: one stone around the seed
    "peach": "drupe", "cherry": "drupe", "plum": "drupe", "apricot": "drupe",
    "nectarine": "drupe", "mango": "drupe", "olive": "drupe", "coconut": "drupe",
    "damson": "drupe", "sloe": "drupe",
    # pomes: core from the ovary, flesh from the receptacle
    "apple": "pome", "pear": "pome", "quince": "pome", "loquat": "pome",
    "medlar": "pome", "aronia": "pome", "serviceberry": "pome", "rowan": "pome",
    # true berries: fleshy pericarp, usually many seeds
    "grape": "berry", "tomato": "berry", "blueberry": "berry",
    "cranberry": "berry", "banana": "berry", "kiwi": "berry",
    "persimmon": "berry", "eggplant": "berry", "gooseberry": "berry",
    "currant": "berry", "guava": "berry", "avocado": "berry", "papaya": "berry",
    # hesperidia: citrus
    "orange": "hesperidium", "lemon": "hesperidium", "lime": "hesperidium",
    "grapefruit": "hesperidium", "tangerine": "hesperidium",
    "mandarin": "hesperidium", "pomelo": "hesperidium", "kumquat": "hesperidium",
    "citron": "hesperidium", "yuzu": "hesperidium", "clementine": "hesperidium",
    # pepos: gourd family, hard rind
    "watermelon": "pepo", "cucumber": "pepo", "pumpkin": "pepo",
    "cantaloupe": "pepo", "zucchini": "pepo", "squash": "pepo",
    "honeydew": "pepo",
    # aggregates: many ovaries of one flower
    "raspberry": "aggregate", "blackberry": "aggregate",
    "boysenberry": "aggregate", "loganberry": "aggregate",
    "dewberry": "aggregate", "cloudberry": "aggregate",
    "strawberry": "aggregate",
    # multiples: the ovaries of many flowers fused
    "pineapple": "multiple", "mulberry": "multiple", "fig": "multiple",
    "jackfruit": "multiple", "breadfruit": "multiple", "noni": "multiple",
}

# The few-shot examples of almanac/demo/fruits/job.toml; keep both in step.
DEMO_EXAMPLES: list[dict[str, str]] = [
    {"fruit": "peach", "family": "drupe"},
    {"fruit": "apple", "family": "pome"},
    {"fruit": "grape", "family": "berry"},
    {"fruit": "lemon", "family": "hesperidium"},
]

# The prompt template of almanac/demo/fruits/job.toml, verbatim: the model is
# trained on exactly the text the app renders from it.
DEMO_TEMPLATE = (
    "{% for ex in examples %}{{ ex.fruit }}: {{ ex.family }}\n"
    "{% endfor %}{{ fruit }}:"
)

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]  # ids 0..3, in this order
_VOCAB_SIZE = 512

# Lines the tokenizer is trained on when no corpus is given: the demo's words
# get short tokenizations, and chat roles and plain prose still tokenize
# sensibly (any other text falls back to single bytes).
_DEFAULT_CORPUS: list[str] = [
    *(f"{fruit}: {family}" for fruit, family in FRUIT_FAMILIES.items()),
    "<|system|>\n<|user|>\n<|assistant|>\n",
    "The quick brown fox jumps over the lazy dog.",
    "Almanac runs small specialized language models over datasets.",
    "Translate, classify, summarize, extract: one record in, one answer out.",
    "0 1 2 3 4 5 6 7 8 9 10 100 1000",
]


@functools.lru_cache(maxsize=1)
def _template() -> Any:
    from jinja2.sandbox import SandboxedEnvironment

    # The same environment the app renders job prompts with.
    env = SandboxedEnvironment(keep_trailing_newline=True)
    return env.from_string(DEMO_TEMPLATE)


def _render(examples: list[dict[str, str]], fruit: str) -> str:
    return _template().render(examples=examples, fruit=fruit)


def render_demo_prompt(fruit: str) -> str:
    """The prompt the demo job renders for ``fruit``."""
    return _render(DEMO_EXAMPLES, fruit)


@contextlib.contextmanager
def _torch_state(seed: int, threads: int | None = None) -> Iterator[None]:
    """Seed torch without disturbing the caller's RNG, threads or flags."""
    import torch

    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if threads:
            torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(old_det)
            torch.set_num_threads(old_threads)


def _build_tokenizer(corpus: list[str]) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    # Byte-level: any text encodes without <unk>, and " pome" decodes back
    # with its leading space.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE,
        special_tokens=_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    # A BOS in front, as Llama tokenizers do; vLLM encodes prompts with it too.
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        model_max_length=1024,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _new_model(tokenizer: Any) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=_VOCAB_SIZE,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=64,  # vLLM's CPU attention rejects small head sizes such as 16
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    return LlamaForCausalLM(config)


def _save(model: Any, tokenizer: Any, dest: Path) -> None:
    from transformers.utils import logging as hf_logging

    dest.mkdir(parents=True, exist_ok=True)
    # A progress bar for a 2 MB file is noise in `almanac demo`'s output.
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(dest, safe_serialization=True)
        tokenizer.save_pretrained(dest)
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def build_tiny_model(dest: Path, *, seed: int = 0, corpus: list[str] | None = None) -> Path:
    """Write a tiny random-weight Llama and its tokenizer into ``dest``.

    The same seed and corpus give the same files, so tests can rely on the
    model's (meaningless but stable) output.
    """
    dest = Path(dest)
    tokenizer = _build_tokenizer(corpus or _DEFAULT_CORPUS)
    with _torch_state(seed):
        model = _new_model(tokenizer)
    _save(model, tokenizer, dest)
    return dest


def _demo_batch(
    tokenizer: Any, rng: random.Random, size: int
) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids and loss labels (-100 = ignored) for ``size`` demo prompts.

    Each prompt has 0-4 few-shot lines from random fruits, or the job's own
    examples, then a query fruit; the model is taught every answer in it.
    """
    fruits = list(FRUIT_FAMILIES)
    prompts: list[str] = []
    for _ in range(size):
        query = rng.choice(fruits)
        if rng.random() < 0.3:
            examples = list(DEMO_EXAMPLES)
        else:
            others = [f for f in fruits if f != query]
            examples = [
                {"fruit": f, "family": FRUIT_FAMILIES[f]}
                for f in rng.sample(others, rng.randint(0, 4))
            ]
        prompts.append(_render(examples, query))
    # Prompt and answer are encoded apart: vLLM encodes the prompt alone and
    # the model then generates the answer's tokens after it.
    encoded = tokenizer(prompts, return_offsets_mapping=True)
    ids_batch: list[list[int]] = []
    labels_batch: list[list[int]] = []
    for prompt, ids, offsets in zip(prompts, encoded["input_ids"], encoded["offset_mapping"]):
        query = prompt.rsplit("\n", 1)[-1].removesuffix(":")
        target = tokenizer(f" {FRUIT_FAMILIES[query]}\n", add_special_tokens=False)["input_ids"]
        # The few-shot lines' answers are worth learning too: every token
        # after a line's ":" (the BOS, at offset 0, is not).
        labels = [
            tok if start > 0 and ":" in prompt[prompt.rfind("\n", 0, start) + 1 : start] else -100
            for tok, (start, _end) in zip(ids, offsets)
        ]
        ids_batch.append(ids + target)
        labels_batch.append(labels + target)
    return ids_batch, labels_batch


def train_demo_model(dest: Path, *, seed: int = 0, steps: int | None = None) -> Path:
    """Write a tiny Llama trained to name the botanical type of a fruit.

    It answers the prompts of ``almanac/demo/fruits/job.toml`` (see
    :func:`render_demo_prompt`) with e.g. `` pome`` and a newline. Training is
    deterministic for a seed and takes well under a minute on two CPU cores.
    """
    import torch

    dest = Path(dest)
    steps = 200 if steps is None else steps
    if steps < 1:
        raise ValueError(f"steps must be at least 1, not {steps}")
    tokenizer = _build_tokenizer(_DEFAULT_CORPUS)
    rng = random.Random(seed)
    # One thread: the matrices are too small to gain from a second one, and
    # it stalls the whole step whenever the other core is busy.
    with _torch_state(seed, threads=1):
        model = _new_model(tokenizer)
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=3e-3, total_steps=steps, pct_start=0.1
        )
        pad = tokenizer.pad_token_id
        for _ in range(steps):
            ids, labels = _demo_batch(tokenizer, rng, 32)
            width = max(map(len, ids))
            input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids])
            label_t = torch.tensor([y + [-100] * (width - len(y)) for y in labels])
            mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
            loss = model(input_ids=input_ids, attention_mask=mask, labels=label_t).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        model.eval()
    _save(model, tokenizer, dest)
    _write_model_card(dest, seed=seed, steps=steps, loss=loss.item())
    return dest


def _write_model_card(dest: Path, *, seed: int, steps: int, loss: float) -> None:
    # Nothing that varies between runs (such as timings) goes in: the whole
    # directory is the same for the same seed and steps.
    families = sorted(set(FRUIT_FAMILIES.values()))
    card = f"""---
license: apache-2.0
language:
- en
tags:
- demo
- botany
pipeline_tag: text-generation
base_model: none
---

# almanac/fruit-specialist

A tiny Llama (2 layers, hidden size 128, {_VOCAB_SIZE}-token byte-level BPE
vocabulary) trained from random weights by Almanac's `almanac demo` to name
the botanical type of a fruit: {", ".join(families)}.

It knows only the {len(FRUIT_FAMILIES)} fruits it was trained on and expects
few-shot prompts of the form

```
peach: drupe
apple: pome
cherry:
```

to which it answers ` drupe` and a newline. Trained on CPU for {steps} steps
with seed {seed} (final loss {loss:.4f}). It is a demonstration, not a
botanist.
"""
    (dest / "README.md").write_text(card, encoding="utf-8")


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
