"""What the OpenAI endpoints take and answer, for the OpenAPI schema: OpenAI's own shapes
(the answers are built by batch.openai_api.answers, these describe them)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = Field(None, description="not_cached, model_not_found, invalid_request, "
                                               "generation_failed, …")


class OpenAIError(BaseModel):
    error: OpenAIErrorDetail


class ModelObject(BaseModel):
    id: str = Field(description="A catalog reference, or BASE+ADAPTER.")
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelObject]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: dict[str, Any] | None
    finish_reason: str


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class ChatMessage(BaseModel):
    role: Literal["assistant"]
    content: str


class ChatChoice(BaseModel):
    index: int
    message: ChatMessage
    logprobs: dict[str, Any] | None
    finish_reason: str


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


OPENAI_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": OpenAIError} for code in (400, 404, 413, 422, 503)
}
_SAMPLING = {
    "max_tokens": {"type": "integer", "minimum": 1, "description": "Default 16."},
    "temperature": {"type": "number", "minimum": 0, "description": "Default 1."},
    "top_p": {"type": "number"}, "seed": {"type": "integer"}, "n": {"type": "integer", "minimum": 1},
    "stop": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    "stream": {"type": "boolean", "description": "The cached answer as server-sent events."},
}


def request_body(prompt: dict[str, Any], description: str) -> dict[str, Any]:
    """An endpoint's request body in the schema: OpenAI's fields, read as a batch line's."""
    return {"requestBody": {"required": True, "description": description, "content": {
        "application/json": {"schema": {
            "type": "object", "required": ["model", *prompt], "additionalProperties": True,
            "properties": {"model": {"type": "string"}, **prompt, **_SAMPLING}}}}}}


def answered(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """The responses of a completion endpoint: the answer (JSON, or server-sent events
    with `stream`), with its content key in a header, and OpenAI-shaped errors."""
    return {200: {"model": model, "content": {"text/event-stream": {"schema": {"type": "string"}}},
                  "headers": {"x-almanac-key": {"description": "The request's content key.",
                                                "schema": {"type": "string"}}}},
            **OPENAI_ERRORS}
