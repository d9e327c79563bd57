"""The application: `make_app(home)` and the uvicorn configuration `almanac serve` runs.

In front of the routes (outermost first): OpenAI's error shape under `/v1/`, the Host
check on loopback addresses, the bearer token when one is set, HEAD answered as GET,
and the request body bound. The documentation at `/docs` is one page built here from
the OpenAPI schema (no CDN).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from almanac import __version__
from almanac.paths import Home
from almanac.server.catalog_routes import ServedCatalog, add_catalog_routes
from almanac.server.compare_routes import add_compare_routes
from almanac.server.docs import docs_page
from almanac.server.errors import install_handlers
from almanac.server.guard import BearerToken, HeadAsGet, HostCheck, binds_loopback
from almanac.server.limits import HEADER_TIMEOUT, MAX_HEAD, BodyLimit
from almanac.server.openai_errors import OpenAIErrorShape
from almanac.server.openai_routes import add_openai_routes
from almanac.server.payloads import Health
from almanac.server.prediction_routes import add_prediction_routes
from batch.openai_api.misses import MissRecorder
from batch.openai_api.reading import OpenAIReader
from batch.query import CacheReader

if TYPE_CHECKING:  # uvicorn loads only when a server actually starts
    import uvicorn


def make_app(home: Path, *, token: str | None = None, loopback: bool = True,
             host_names: frozenset[str] = frozenset(), record_misses: bool = True) -> FastAPI:
    """The API for the Almanac home at `home`. With `token`, requests need it as a bearer
    token; `loopback` (the server listens on a loopback address) turns on the Host check
    against DNS rebinding, which also answers the names in `host_names`; `record_misses`
    keeps what `/v1/` could not answer from the cache for `almanac misses run`."""
    layout = Home(Path(home))
    reader = CacheReader(layout.predictions)
    catalog = ServedCatalog(layout.catalog_db)
    answers = OpenAIReader(reader, catalog.sessions,
                           MissRecorder(layout.predictions) if record_misses else None)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        answers.close()
        reader.close()
        catalog.close()

    app = FastAPI(title="Almanac", version=__version__, lifespan=lifespan,
                  description="Read-only: the model catalog and cached predictions; under /v1/ "
                              "the cache as an OpenAI-compatible model server.",
                  docs_url=None, redoc_url=None)
    app.add_middleware(BodyLimit)
    app.add_middleware(HeadAsGet)
    if token:
        app.add_middleware(BearerToken, token=token)
        _document_token(app)
    if loopback:
        app.add_middleware(HostCheck, names=host_names)
    app.add_middleware(OpenAIErrorShape)
    install_handlers(app, layout.root)

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(docs_page(app.openapi()))

    @app.get("/health", response_model=Health, tags=["meta"])
    def health() -> dict[str, Any]:
        """Liveness: answers while the process serves."""
        return {"status": "ok", "version": __version__}

    add_catalog_routes(app, catalog)
    add_prediction_routes(app, reader)
    add_compare_routes(app, reader, catalog)
    add_openai_routes(app, answers)
    return app


def _document_token(app: FastAPI) -> None:
    """The OpenAPI schema says every operation but /health needs the bearer token."""
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = plain()
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"}}
            schema["security"] = [{"bearer": []}]
            for path, ops in schema.get("paths", {}).items():
                for op in ops.values():
                    if path == "/health":
                        op["security"] = []
                    else:
                        shape = "OpenAIError" if path.startswith("/v1/") else "Error"
                        op.setdefault("responses", {})["401"] = {
                            "description": "No bearer token, or not this one",
                            "content": {"application/json": {"schema": {
                                "$ref": f"#/components/schemas/{shape}"}}}}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def server_config(home: Path, host: str = "127.0.0.1", port: int = 8765, *,
                  token: str | None = None, access_log: bool = False,
                  log_config: dict[str, Any] | None = None,
                  header_timeout: float = HEADER_TIMEOUT,
                  loopback: bool | None = None, record_misses: bool = True) -> uvicorn.Config:
    """The uvicorn configuration `almanac serve` runs (the tests and the benchmark too).
    Requests must send their head within `header_timeout` seconds (408 otherwise).
    `loopback`: whether the socket it serves is bound to a loopback address (the Host
    check); by default, whether `host` resolves to one as `almanac serve` binds it."""
    import uvicorn

    from almanac.server.protocol import protocol_with_timeout

    kwargs = {"log_config": log_config} if log_config is not None else {}
    if loopback is None:
        loopback = binds_loopback(host)
    app = make_app(home, token=token, loopback=loopback, host_names=frozenset({host}),
                   record_misses=record_misses)
    return uvicorn.Config(app, host=host, port=port, access_log=access_log,
                          http=protocol_with_timeout(header_timeout),
                          h11_max_incomplete_event_size=MAX_HEAD, timeout_keep_alive=30, **kwargs)
