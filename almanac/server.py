"""`almanac serve`: a read-only JSON API over the catalog and the cached predictions.

Built by `make_app(home)`, shared by the CLI and the tests. Every endpoint
reads; the one POST (a batch lookup, whose ids would not fit in a URL) reads
too. Page sizes, batch sizes, string lengths and request bodies are bounded,
and every error is a JSON `Error` with a 4xx status (503 when the cache or
the catalog is unusable), never a traceback. The prediction index is opened
read-only in WAL mode, so a run writing new shards is never blocked and its
shards are visible as soon as its index transaction commits.
"""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Body, FastAPI, HTTPException, Path as PathParam, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StringConstraints, create_model
from starlette.exceptions import HTTPException as StarletteHTTPException

from almanac import __version__
from almanac.paths import Home
from batch.cache.reader import CacheReader, JobInfo, ShardUnavailableError, UnknownJobError, to_json
from batch.cache.schema import arrow_schema
from catalog.records import ModelRecord, RunRecord

log = logging.getLogger("almanac.server")

MAX_PAGE = 500  # predictions or runs per page
MAX_MODELS_PAGE = 100  # models carry their cards: fewer per page
MAX_BATCH = 1000  # ids per batch lookup
MAX_ID = 512  # characters in an input id or key
MAX_TEXT = 100  # characters in a search or filter string
MAX_VALUES = 10  # values of a repeated query parameter
# The request line and headers h11 buffers (uvicorn's default is 16 KiB). The schema's
# bounds keep any valid URL under it, even percent-encoded: longer requests get
# uvicorn's own plain-text 400, which no schema describes.
MAX_HEAD = 64 * 1024
MAX_BODY = 1 << 20  # bytes in a request body: 1,000 ids of MAX_ID fit with room
JOB_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"

Id = Annotated[str, StringConstraints(max_length=MAX_ID)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
Job = Annotated[str, PathParam(pattern=JOB_PATTERN, description="A job (prediction set) name.")]


# -- response models (the OpenAPI schema) -----------------------------------------------------

class Error(BaseModel):
    error: str = Field(description="A short code: not_found, bad_request, invalid, too_large, unavailable…")
    message: str
    details: list[dict[str, Any]] | None = None


def _prediction_model() -> type[BaseModel]:
    """Built from schemas/prediction.schema.json (via the Arrow schema): the one source."""
    kinds = {"string": str, "int32": int, "int64": int, "timestamp[us, tz=UTC]": datetime,
             "list<item: string>": list[str]}
    fields: dict[str, Any] = {}
    for f in arrow_schema():
        kind = kinds[str(f.type)]
        fields[f.name] = (kind | None, None) if f.nullable else (kind, ...)
    return create_model("Prediction", **fields)


Prediction = _prediction_model()


class Health(BaseModel):
    status: Literal["ok"]
    version: str


class JobOut(BaseModel):
    job: str
    rows: int = Field(description="Inputs with a latest prediction.")
    failed: int = Field(description="Of those, how many failed.")
    shards: int
    bytes: int
    last_written: datetime | None


class PredictionPage(BaseModel):
    items: list[Prediction]  # type: ignore[valid-type]
    total: int
    limit: int
    offset: int


Sort = Literal["name", "params", "-params", "downloads", "likes", "updated", "license", "relevance"]


class ModelPage(BaseModel):
    items: list[ModelRecord]
    total: int
    limit: int
    offset: int


class Lookup(BaseModel):
    ids: list[Id] = Field(max_length=MAX_BATCH, description=f"At most {MAX_BATCH} input ids.")


class LookupResult(BaseModel):
    found: dict[str, Prediction]  # type: ignore[valid-type]
    missing: list[str]


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Error} for code in (400, 404, 413, 422, 503)
}


# -- plumbing ---------------------------------------------------------------------------------

class _TooLarge(HTTPException):
    def __init__(self) -> None:
        super().__init__(413, f"request body over {MAX_BODY} bytes")


class _BodyLimit:
    """Refuses bodies over MAX_BODY before they are read: by Content-Length when sent,
    else while streaming (an HTTPException, so FastAPI's body parsing passes it on)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            response = JSONResponse(_error(413, f"request body over {MAX_BODY} bytes"), 413)
            await response(scope, receive, send)
            return
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > MAX_BODY:
                raise _TooLarge()
            return message

        await self.app(scope, limited, send)


CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large",
         422: "invalid", 503: "unavailable"}


def _error(status: int, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"error": CODES.get(status, "error"), "message": message, "details": details}


class _Catalog:
    """The catalog, opened on first use and never migrated: a server only reads. A
    lookup-only host (predictions copied without a catalog) answers 503 here."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self._catalog = None
        self._lock = threading.Lock()

    def sessions(self):  # noqa: ANN201 - a sessionmaker
        from catalog.db import Catalog, CatalogError

        with self._lock:
            if self._catalog is None:
                if not self.home.catalog_db.exists():
                    raise _Unavailable("no catalog in this home: run `almanac init`")
                try:
                    self._catalog = Catalog(self.home.catalog_url, migrate=False)
                except CatalogError as exc:
                    raise _Unavailable(str(exc)) from exc
            return self._catalog.sessions

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()


class _Unavailable(Exception):
    pass


# -- the app ----------------------------------------------------------------------------------

def make_app(home: Path) -> FastAPI:
    """The API for the Almanac home at `home`."""
    layout = Home(Path(home))
    reader = CacheReader(layout.predictions)
    catalog = _Catalog(layout)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # noqa: ANN202
        yield
        reader.close()
        catalog.close()

    app = FastAPI(title="Almanac", version=__version__, lifespan=lifespan,
                  description="Read-only: the model catalog and cached predictions.")
    app.add_middleware(_BodyLimit)
    _handlers(app)

    def job_or_404(job: str):  # noqa: ANN202 - batch.cache.reader.Predictions
        try:
            return reader.job(job)
        except UnknownJobError as exc:
            raise HTTPException(404, str(exc)) from None

    @app.get("/health", response_model=Health, tags=["meta"])
    def health() -> dict[str, Any]:
        """Liveness: answers while the process serves."""
        return {"status": "ok", "version": __version__}

    _catalog_routes(app, catalog)

    @app.get("/jobs", response_model=list[JobOut], tags=["predictions"], responses=ERRORS)
    def jobs() -> list[dict[str, Any]]:
        """Every job with cached predictions."""
        return [_job(info) for info in reader.jobs()]

    @app.get("/jobs/{job}", response_model=JobOut, tags=["predictions"], responses=ERRORS)
    def job(job: Job) -> dict[str, Any]:
        """One job's size: inputs, failures, shards, bytes, last write."""
        return _job(job_or_404(job).info())

    @app.get("/jobs/{job}/predictions", response_model=PredictionPage, tags=["predictions"],
             responses=ERRORS)
    def predictions(
        job: Job,
        contains: Annotated[Text | None, Query(description="Case-insensitive substring of the output.")] = None,
        failed: Annotated[bool | None, Query(description="true: only failures; false: only successes.")] = None,
        model: Annotated[Text | None, Query(description="Only this model reference.")] = None,
        all_versions: Annotated[bool, Query(description="Every version, not only the latest.")] = False,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> dict[str, Any]:
        """A page of a job's predictions, in input id order."""
        items, total = job_or_404(job).page(contains=contains, failed=failed, model=model,
                                            all_versions=all_versions, limit=limit, offset=offset)
        return {"items": items, "total": total, "limit": limit, "offset": offset}

    @app.get("/jobs/{job}/predictions/{input_id:path}", response_model=Prediction,
             tags=["predictions"], responses=ERRORS)
    def prediction(job: Job, input_id: Annotated[str, PathParam(max_length=MAX_ID)]) -> dict[str, Any]:
        """The latest prediction for one input."""
        found = job_or_404(job).get(input_id)
        if found is None:
            raise HTTPException(404, f"job {job!r} has no prediction for input {input_id!r}")
        return found

    @app.post("/jobs/{job}/lookup", response_model=LookupResult, tags=["predictions"], responses=ERRORS)
    def lookup(job: Job, body: Annotated[Lookup, Body()]) -> dict[str, Any]:
        """The latest predictions for up to 1,000 inputs; ids not found are listed under
        `missing`. A read, though a POST: that many ids do not fit in a URL."""
        found = job_or_404(job).get_many(body.ids)
        return {"found": found, "missing": [i for i in dict.fromkeys(body.ids) if i not in found]}

    @app.get("/keys/{key}", response_model=Prediction, tags=["predictions"], responses=ERRORS)
    def by_key(key: Annotated[str, PathParam(max_length=MAX_ID)],
               job: Annotated[str | None, Query(pattern=JOB_PATTERN)] = None) -> dict[str, Any]:
        """A prediction by its content address (the `key` column), in one job or any."""
        found = reader.by_key(key, job)
        if found is None:
            raise HTTPException(404, f"no prediction has key {key!r}")
        return found

    return app


def server_config(home: Path, host: str = "127.0.0.1", port: int = 8765, *,
                  access_log: bool = False, log_config: dict | None = None) -> Any:
    """The uvicorn configuration `almanac serve` runs (the tests and the benchmark too)."""
    import uvicorn

    kwargs = {"log_config": log_config} if log_config is not None else {}
    return uvicorn.Config(make_app(home), host=host, port=port, access_log=access_log,
                          h11_max_incomplete_event_size=MAX_HEAD, timeout_keep_alive=30, **kwargs)


def _job(info: JobInfo) -> dict[str, Any]:
    return info.to_json()


def _catalog_routes(app: FastAPI, catalog: _Catalog) -> None:
    @app.get("/models", response_model=ModelPage, tags=["catalog"], responses=ERRORS)
    def models(
        domain: Annotated[list[Text], Query(max_length=MAX_VALUES, description="Domain slug; includes its children.")] = [],  # noqa: B006
        language: Annotated[list[Text], Query(max_length=MAX_VALUES, description="ISO 639 code or group (sea).")] = [],  # noqa: B006
        min_params: Annotated[Text | None, Query(description="At least this many parameters (7B, 350M).")] = None,
        max_params: Annotated[Text | None, Query()] = None,
        license: Annotated[list[Text], Query(max_length=MAX_VALUES)] = [],  # noqa: A002, B006
        fits: Annotated[Text | None, Query(description="Weights fit in this memory (24GB), 20% headroom.")] = None,
        quant: Literal["int4", "int8", "fp16"] | None = None,
        search: Annotated[Text | None, Query(description="Full-text search.")] = None,
        source: Literal["seed", "hub", "cache", "local"] | None = None,
        sort: Sort = "name",
        limit: Annotated[int, Query(ge=1, le=MAX_MODELS_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> dict[str, Any]:
        """Catalog models, with the filters of `almanac models list`."""
        from catalog import sizes
        from catalog.search import ModelFilter, count_models, list_models

        try:
            f = ModelFilter(
                domains=domain, languages=language,
                min_params=sizes.parse_params(min_params) if min_params else None,
                max_params=sizes.parse_params(max_params) if max_params else None,
                licenses=license, fits_bytes=sizes.parse_memory(fits) if fits else None,
                quant=quant, search=search, source=source, sort=sort, limit=limit, offset=offset)
            with catalog.sessions()() as s:
                return {"items": list_models(s, f), "total": count_models(s, f),
                        "limit": limit, "offset": offset}
        except ValueError as exc:  # unknown domain or language, unparsable size
            raise HTTPException(400, str(exc)) from None

    @app.get("/models/{ref:path}", response_model=ModelRecord, tags=["catalog"], responses=ERRORS)
    def model(ref: Annotated[str, PathParam(max_length=MAX_ID)]) -> Any:
        """One model: lineage, evals, adapters, measured speed."""
        from catalog.models import find_model, to_record

        with catalog.sessions()() as s:
            found = find_model(s, ref)
            if found is None:
                raise HTTPException(404, f"no model {ref!r} in the catalog")
            return to_record(s, found, detail=True)

    @app.get("/runs", response_model=list[RunRecord], tags=["catalog"], responses=ERRORS)
    def runs(job: Annotated[str | None, Query(pattern=JOB_PATTERN)] = None,
             limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50) -> Any:
        """Batch runs, newest first."""
        from catalog.runs import list_runs

        with catalog.sessions()() as s:
            return list_runs(s, job, limit)


def _handlers(app: FastAPI) -> None:
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(_error(exc.status_code, str(exc.detail)), exc.status_code,
                            headers=getattr(exc, "headers", None))

    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                   for e in exc.errors()]
        return JSONResponse(_error(422, "invalid request parameters", to_json(details)), 422)

    async def unavailable(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(_error(503, str(exc)), 503)

    async def internal(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)  # the traceback stays in the server's log
        return JSONResponse({"error": "internal", "message": "internal error", "details": None}, 500)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(ShardUnavailableError, unavailable)
    app.add_exception_handler(_Unavailable, unavailable)
    app.add_exception_handler(Exception, internal)
