"""How much one request may ask for, and the request body bound enforced before reading."""

from __future__ import annotations

from typing import Annotated

from fastapi import HTTPException
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, StringConstraints, WithJsonSchema
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from almanac.server.errors import error_body
from schemas import is_job_name, job_name_pattern

MAX_PAGE = 500  # predictions or runs per page
MAX_MODELS_PAGE = 100  # models carry their cards: fewer per page
MAX_OFFSET = 10_000_000
MAX_BATCH = 1000  # ids per batch lookup
MAX_ID = 512  # characters in an input id or key
MAX_TEXT = 100  # characters in a search or filter string
MAX_VALUES = 10  # values of a repeated query parameter
# The request line and headers a request may send (uvicorn's default is 16 KiB). The
# schema's bounds keep any valid URL under it, even percent-encoded: longer heads get a
# 431 and the connection closed (almanac/server/protocol.py), which no schema describes.
MAX_HEAD = 64 * 1024
HEADER_TIMEOUT = 10.0  # seconds a client has to send a request line and its headers
MAX_BODY = 1 << 20  # bytes in a request body: 1,000 ids of MAX_ID fit with room
JOB_PATTERN = job_name_pattern()  # schemas/job.schema.json's, the one definition



def _job_name(value: str) -> str:
    if not is_job_name(value):
        raise ValueError(f"not a job name (letters, digits, '.', '_', '-'; at most 128): {value!r}")
    return value


# Checked by `schemas.is_job_name`, the one rule; the schema shows the pattern, which pydantic's
# own regex engine cannot run (its lookahead keeps Python's `$` from taking a final newline).
JobName = Annotated[str, AfterValidator(_job_name),
                    WithJsonSchema({"type": "string", "pattern": JOB_PATTERN})]
Id = Annotated[str, StringConstraints(max_length=MAX_ID)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
Job = Annotated[JobName, PathParam(description="A job (prediction set) name.")]


class BodyLimit:
    """Refuses bodies over MAX_BODY before they are read: by Content-Length when sent,
    else while streaming (an HTTPException, so FastAPI's body parsing passes it on)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            response = JSONResponse(error_body(413, f"request body over {MAX_BODY} bytes"), 413)
            await response(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > MAX_BODY:
                raise HTTPException(413, f"request body over {MAX_BODY} bytes")
            return message

        await self.app(scope, limited, send)
