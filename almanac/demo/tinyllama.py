"""The tiny Llama the demo trains (and the tests build): its tokenizer, its
configuration, and how it is seeded and saved.

No model can be downloaded where Almanac is developed and tested, so the one the
engine runs there is built from nothing: a 512-token byte-level BPE vocabulary
and a 2-layer Llama small enough to train on a CPU in seconds. torch, transformers
and tokenizers are imported inside the functions: they come with the engine's
extra, and importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from almanac.demo.families import FRUIT_FAMILIES

if TYPE_CHECKING:  # transformers takes seconds to import: annotations only
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]  # ids 0..3, in this order
VOCAB_SIZE = 512

# The lines the tokenizer is trained on: the demo's words get short
# tokenizations, and chat roles and plain prose still tokenize sensibly (any
# other text falls back to single bytes).
TOKENIZER_CORPUS: list[str] = [
    *(f"{fruit}: {family}" for fruit, family in FRUIT_FAMILIES.items()),
    "<|system|>\n<|user|>\n<|assistant|>\n",
    "The quick brown fox jumps over the lazy dog.",
    "Almanac runs small specialized language models over datasets.",
    "Translate, classify, summarize, extract: one record in, one answer out.",
    "0 1 2 3 4 5 6 7 8 9 10 100 1000",
]


@contextlib.contextmanager
def seeded_torch(seed: int, threads: int | None = None) -> Iterator[None]:
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


def build_tokenizer(corpus: list[str]) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``corpus``, with a BOS and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    # Byte-level: any text encodes without <unk>, and " pome" decodes back
    # with its leading space.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
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


def new_model(tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    """A freshly initialised tiny Llama (seed torch first for stable weights)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=VOCAB_SIZE,
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


def save_model(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, dest: Path) -> None:
    """Write the weights (safetensors) and the tokenizer as a Hub-style model directory."""
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
