"""A cached record as OpenAI's answer: a `text_completion` or a `chat.completion` (the
body an OpenAI batch export writes for the record, batch.cache.openai_output, under
the model name the request gave), or the same answer as server-sent events:
`chat.completion.chunk`s (or completion chunks) carrying each choice's cached text,
then its finish reason, then usage when asked for, then `[DONE]`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from batch.cache.openai_output import openai_batch_line
from batch.cache.schema import PredictionRecord


def completion(record: PredictionRecord, model: str) -> dict[str, Any]:
    """The whole answer, as OpenAI's endpoint for the record's kind returns it."""
    body: dict[str, Any] = openai_batch_line(record)["response"]["body"]
    body["model"] = model
    return body


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def events(record: PredictionRecord, model: str, *, include_usage: bool) -> Iterator[bytes]:
    """The answer as server-sent events, as a streaming OpenAI endpoint sends it."""
    whole = completion(record, model)
    chat = whole["object"] == "chat.completion"
    head = {"id": whole["id"], "object": "chat.completion.chunk" if chat else "text_completion",
            "created": whole["created"], "model": model}
    if include_usage:
        head["usage"] = None  # every chunk but the last, as OpenAI's stream says
    for choice in whole["choices"]:
        i = choice["index"]
        if chat:
            text = {"index": i, "delta": {"role": "assistant", "content": choice["message"]["content"]},
                    "logprobs": choice["logprobs"], "finish_reason": None}
            end = {"index": i, "delta": {}, "logprobs": None, "finish_reason": choice["finish_reason"]}
        else:
            text = {"index": i, "text": choice["text"], "logprobs": choice["logprobs"],
                    "finish_reason": None}
            end = {"index": i, "text": "", "logprobs": None, "finish_reason": choice["finish_reason"]}
        yield _event({**head, "choices": [text]})
        yield _event({**head, "choices": [end]})
    if include_usage:
        yield _event({**head, "choices": [], "usage": whole["usage"]})
    yield b"data: [DONE]\n\n"
