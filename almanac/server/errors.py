"""Every failure as a JSON `Error` body: HTTP errors, invalid parameters, an unusable
cache or catalog (503), and anything unexpected (500, its traceback in the log only)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from batch.query import ShardUnavailableError, to_json

log = logging.getLogger("almanac.server")

CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large",
         422: "invalid", 503: "unavailable"}


class Unavailable(Exception):
    """What the server needs cannot be used now (no catalog, a newer schema): a 503."""


def error_body(status: int, message: str,
               details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"error": CODES.get(status, "error"), "message": message, "details": details}


def install_handlers(app: FastAPI) -> None:
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(exc.status_code, str(exc.detail)), exc.status_code,
                            headers=getattr(exc, "headers", None))

    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                   for e in exc.errors()]
        return JSONResponse(error_body(422, "invalid request parameters", to_json(details)), 422)

    async def unavailable(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(error_body(503, str(exc)), 503)

    async def internal(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)  # the traceback stays in the server's log
        return JSONResponse({"error": "internal", "message": "internal error", "details": None}, 500)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(ShardUnavailableError, unavailable)
    app.add_exception_handler(Unavailable, unavailable)
    app.add_exception_handler(Exception, internal)
