"""OpenAI's API over the cache: `GET /v1/models`, `POST /v1/completions` and
`POST /v1/chat/completions` (batch.openai_api). A request whose content key is cached
is answered at once, in OpenAI's shape (or as server-sent events with `stream`), its
key in the `x-almanac-key` header; one that is not is a 404 `not_cached`, recorded for
`almanac misses run`. Errors leave as the rooms raise them (server/errors.py answers
them in OpenAI's shape here)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, FastAPI
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response, StreamingResponse

from almanac.server.openai_payloads import (
    OPENAI_ERRORS,
    ChatCompletion,
    Completion,
    ModelList,
    ModelObject,
    answered,
    request_body,
)
from batch.openai_api.answers import completion, events
from batch.openai_api.asked import CHAT, COMPLETIONS, read_request
from batch.openai_api.reading import OpenAIReader

_PROMPT = {"prompt": {"type": "string", "description": "One prompt, as a run renders it."}}
_MESSAGES = {"messages": {"type": "array", "items": {"type": "object", "required": ["role", "content"]},
                          "description": "Text messages: system, developer, user, assistant."}}


def add_openai_routes(app: FastAPI, answers: OpenAIReader) -> None:
    @app.get("/v1/models", response_model=ModelList, tags=["openai"], responses=OPENAI_ERRORS)
    def models() -> dict[str, Any]:
        """The models (and `BASE+ADAPTER` candidates) the cache answers for."""
        return {"object": "list",
                "data": [m.to_json() for _, m in sorted(answers.served().items())]}

    @app.get("/v1/models/{model:path}", response_model=ModelObject, tags=["openai"],
             responses=OPENAI_ERRORS)
    def model(model: Annotated[str, PathParam(max_length=1000)]) -> dict[str, Any]:
        """One model the cache answers for (404 `model_not_found` otherwise)."""
        return answers.model(model).to_json()

    def answer(endpoint: str, body: dict[str, Any]) -> Response:
        asked = read_request(endpoint, body)
        found = answers.answer(asked)
        headers = {"x-almanac-key": found.key, "x-almanac-job": found.record["job"]}
        if asked.stream:
            return StreamingResponse(events(found.record, found.model,
                                            include_usage=asked.include_usage),
                                     media_type="text/event-stream",
                                     headers={**headers, "cache-control": "no-cache"})
        return JSONResponse(completion(found.record, found.model), headers=headers)

    @app.post("/v1/completions", tags=["openai"], responses=answered(Completion),
              openapi_extra=request_body(_PROMPT, "OpenAI's completion request."))
    def completions(body: Annotated[dict[str, Any], Body()]) -> Response:
        """A completion from the cache: the answer a run of this model gave this prompt
        with these sampling parameters (OpenAI's defaults: temperature 1, 16 tokens)."""
        return answer(COMPLETIONS, body)

    @app.post("/v1/chat/completions", tags=["openai"], responses=answered(ChatCompletion),
              openapi_extra=request_body(_MESSAGES, "OpenAI's chat completion request."))
    def chat_completions(body: Annotated[dict[str, Any], Body()]) -> Response:
        """A chat completion from the cache, as for /v1/completions."""
        return answer(CHAT, body)
