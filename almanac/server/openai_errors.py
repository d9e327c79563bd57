"""OpenAI's error shape for every error under `/v1/`, whoever answered it.

The rooms' errors get it from the error handler (server/errors.py, with their own
`code` and `param`). What is answered before or around the routes (the Host check,
the bearer token, the body bound, an unknown path or method, FastAPI's request
validation) is written in Almanac's shape; this middleware, outermost, rewrites those
under `/v1/` into OpenAI's, so that OpenAI's clients raise their own exceptions
(`AuthenticationError`, `UnprocessableEntityError`, …) with the message. Pure ASGI;
only error bodies are held back, never an answer.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from almanac.server.errors import OPENAI_PREFIX, openai_error_body


def reshaped(status: int, body: bytes) -> bytes | None:
    """An Almanac error body as OpenAI's, or None when it is not one."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not (isinstance(data, dict) and isinstance(data.get("error"), str)
            and isinstance(data.get("message"), str)):
        return None
    message, param = data["message"], None
    details: list[dict[str, Any]] = data.get("details") or []
    if details:  # FastAPI's validation: name the field (the body's, without "body")
        fields = []
        for d in details:
            where = "" if d.get("type") == "json_invalid" else \
                ".".join(str(p) for p in d.get("loc", ()) if p != "body")  # not a position
            fields.append(f"{where}: {d.get('msg', '')}" if where else str(d.get("msg", "")))
            param = param or where or None
        message = f"{message}: {'; '.join(fields)}"
    return json.dumps(openai_error_body(status, message, data["error"], param)).encode()


class OpenAIErrorShape:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(OPENAI_PREFIX):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        held: list[bytes] = []

        async def reshaping(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                if message["status"] >= 400 and \
                        headers.get(b"content-type", b"").startswith(b"application/json"):
                    start = message
                    return
            elif message["type"] == "http.response.body" and start is not None:
                held.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = b"".join(held)
                body = reshaped(start["status"], body) or body
                headers = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"]
                await send({**start, "headers": [*headers,
                                                 (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, reshaping)
