"""The application: `make_app(home)` and the uvicorn configuration `almanac serve` runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from almanac import __version__
from almanac.paths import Home
from almanac.server.catalog_routes import ServedCatalog, add_catalog_routes
from almanac.server.errors import install_handlers
from almanac.server.limits import MAX_HEAD, BodyLimit
from almanac.server.payloads import Health
from almanac.server.prediction_routes import add_prediction_routes
from batch.query import CacheReader

if TYPE_CHECKING:  # uvicorn loads only when a server actually starts
    import uvicorn


def make_app(home: Path) -> FastAPI:
    """The API for the Almanac home at `home`."""
    layout = Home(Path(home))
    reader = CacheReader(layout.predictions)
    catalog = ServedCatalog(layout.catalog_db)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        reader.close()
        catalog.close()

    app = FastAPI(title="Almanac", version=__version__, lifespan=lifespan,
                  description="Read-only: the model catalog and cached predictions.")
    app.add_middleware(BodyLimit)
    install_handlers(app)

    @app.get("/health", response_model=Health, tags=["meta"])
    def health() -> dict[str, Any]:
        """Liveness: answers while the process serves."""
        return {"status": "ok", "version": __version__}

    add_catalog_routes(app, catalog)
    add_prediction_routes(app, reader)
    return app


def server_config(home: Path, host: str = "127.0.0.1", port: int = 8765, *,
                  access_log: bool = False,
                  log_config: dict[str, Any] | None = None) -> uvicorn.Config:
    """The uvicorn configuration `almanac serve` runs (the tests and the benchmark too)."""
    import uvicorn

    kwargs = {"log_config": log_config} if log_config is not None else {}
    return uvicorn.Config(make_app(home), host=host, port=port, access_log=access_log,
                          h11_max_incomplete_event_size=MAX_HEAD, timeout_keep_alive=30, **kwargs)
