"""Prompts to token ids, the one way every engine gets them.

An in-process engine and the driver of a Ray run tokenize with these functions
(over vLLM's tokenizer, or the same Hugging Face tokenizer loaded by the driver),
so both hand vLLM the same ids, and a prompt the context cannot fit is held back
with the same reason wherever it runs.
"""

from __future__ import annotations

from typing import Any, Protocol

Prompt = str | list[dict[str, Any]]  # a text, or chat messages


class Tokenizer(Protocol):
    """What these functions use of a Hugging Face tokenizer (vLLM's is one)."""

    def __call__(self, text: list[str]) -> Any: ...

    def encode(self, text: str) -> list[int]: ...

    def apply_chat_template(self, conversation: list[dict[str, Any]], *,
                            add_generation_prompt: bool, tokenize: bool) -> Any: ...


def token_ids(tokenizer: Tokenizer, prompt: Prompt) -> list[int]:
    if isinstance(prompt, list):
        ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
        # transformers 5 returns a BatchEncoding here, 4.x a plain list
        return list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    return list(tokenizer.encode(prompt))


def token_ids_many(tokenizer: Tokenizer, prompts: list[Prompt]) -> list[list[int]]:
    """Plain prompts go through the fast tokenizer as one batch; chats one by one."""
    texts = [p for p in prompts if isinstance(p, str)]
    encoded = iter(tokenizer(texts)["input_ids"] if texts else [])
    return [list(next(encoded)) if isinstance(p, str) else token_ids(tokenizer, p)
            for p in prompts]


def context_error(prompt_tokens: int, max_model_len: int | None) -> str | None:
    """Why a prompt cannot run (vLLM would refuse it, and with it every prompt sent
    alongside), or None. The context must leave room for at least one token."""
    if max_model_len is None or prompt_tokens < max_model_len:
        return None
    return (f"prompt is {prompt_tokens} tokens; the model's context "
            f"(max_model_len) is {max_model_len}")
