"""Every failure as a JSON `Error` body: HTTP errors, invalid parameters, the rooms'
errors by their own `http_status` (schemas.errors: a usage error 400, a job or model
not there 404, an unusable cache, catalog or side store 503), and anything unexpected
(500, its traceback in the log only). The server has no error class of its own and no
route translates errors by hand. Under `/v1/` the body is OpenAI's (`{"error": {"message",
"type", "param", "code"}}`, with the error's own `code` and `param`; server/openai_errors.py
reshapes the rest there). Messages never show where the home is: its path reads `<home>`,
the user's home `~`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from batch.query import to_json
from schemas.errors import AlmanacError

log = logging.getLogger("almanac.server")

CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
         408: "timeout", 413: "too_large", 422: "invalid", 431: "too_large",
         503: "unavailable"}


def error_body(status: int, message: str,
               details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"error": CODES.get(status, "error"), "message": message, "details": details}


# Under this prefix the server speaks OpenAI's API, and its errors are in OpenAI's shape.
OPENAI_PREFIX = "/v1/"
_OPENAI_TYPES = {401: "authentication_error", 408: "timeout", 503: "server_error"}


def openai_error_body(status: int, message: str, code: str | None = None,
                      param: str | None = None) -> dict[str, Any]:
    """OpenAI's error body, which its clients read (`openai.NotFoundError` and the like,
    with `code` and `param`)."""
    return {"error": {"message": message,
                      "type": _OPENAI_TYPES.get(status, "invalid_request_error"),
                      "param": param, "code": code or CODES.get(status, "error")}}


class Scrubber:
    """Takes the home's absolute path (and the user's home) out of a message."""

    def __init__(self, home: Path | None) -> None:
        roots = [(str(Path(home).resolve()), "<home>")] if home is not None else []
        user = str(Path.home())
        if user not in ("", "/"):
            roots.append((user, "~"))
        self.roots = sorted(roots, key=lambda r: -len(r[0]))  # the longest first

    def __call__(self, message: str) -> str:
        for root, name in self.roots:
            message = message.replace(root, name)
        return message


def install_handlers(app: FastAPI, home: Path | None = None) -> None:
    scrub = Scrubber(home)

    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(exc.status_code, scrub(str(exc.detail))), exc.status_code,
                            headers=getattr(exc, "headers", None))

    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                   for e in exc.errors()]
        return JSONResponse(error_body(422, "invalid request parameters", to_json(details)), 422)

    async def almanac_error(request: Request, exc: Exception) -> JSONResponse:
        # By the error's own `http_status` (schemas.errors): a usage error 400, what is
        # not there 404, a damaged or unreadable store 503 (never a wrong answer);
        # anything else is a bug, answered as one.
        status = getattr(exc, "http_status", 500)
        if status >= 500 and status != 503:
            return await internal(request, exc)
        if request.url.path.startswith(OPENAI_PREFIX):  # with OpenAI's code and param
            return JSONResponse(openai_error_body(status, scrub(str(exc)), getattr(exc, "code", None),
                                                  getattr(exc, "param", None)), status,
                                headers=getattr(exc, "headers", None))
        return JSONResponse(error_body(status, scrub(str(exc))), status)

    async def internal(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)  # the traceback stays in the server's log
        return JSONResponse({"error": "internal", "message": "internal error", "details": None}, 500)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(AlmanacError, almanac_error)
    app.add_exception_handler(Exception, internal)
