"""The catalog's endpoints: models (with the filters of `almanac models list`), one
model, and batch runs; over a catalog opened read-only on first use."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Query
from fastapi import Path as PathParam

from almanac.server.limits import (
    MAX_ID,
    MAX_MODELS_PAGE,
    MAX_OFFSET,
    MAX_PAGE,
    MAX_VALUES,
    JobName,
    Text,
)
from almanac.server.payloads import ERRORS, ModelPage
from catalog.filters import Quant, Source, model_filter
from catalog.records import ModelRecord, RunRecord

if TYPE_CHECKING:  # SQLAlchemy loads with the first catalog request, not with the server
    from sqlalchemy.orm import Session, sessionmaker

    from catalog.db import Catalog


class ServedCatalog:
    """The catalog, opened read-only on first use: a server never writes nor migrates. A
    lookup-only host (predictions copied without a catalog) answers 503 here (the
    catalog's errors are UnavailableErrors), and starts answering once a catalog
    appears."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._catalog: Catalog | None = None
        self._lock = threading.Lock()

    def sessions(self) -> sessionmaker[Session]:
        from catalog.db import open_catalog

        with self._lock:
            if self._catalog is None:
                self._catalog = open_catalog(self.path, readonly=True)
            return self._catalog.sessions

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()


def add_catalog_routes(app: FastAPI, catalog: ServedCatalog) -> None:
    @app.get("/models", response_model=ModelPage, tags=["catalog"], responses=ERRORS)
    def models(
        domain: Annotated[list[Text], Query(max_length=MAX_VALUES,
                                            description="Domain slug; includes its children.")] = [],
        language: Annotated[list[Text], Query(max_length=MAX_VALUES, description="ISO 639 code or group (sea).")] = [],
        min_params: Annotated[Text | None, Query(description="At least this many parameters (7B, 350M).")] = None,
        max_params: Annotated[Text | None, Query()] = None,
        licenses: Annotated[list[Text], Query(alias="license", max_length=MAX_VALUES)] = [],
        fits: Annotated[Text | None, Query(description="Weights fit in this memory (24GB), 20% headroom.")] = None,
        quant: Quant | None = None,
        search: Annotated[Text | None, Query(description="Full-text search.")] = None,
        source: Source | None = None,
        sort: Annotated[Text, Query(description="name, params, -params, downloads, likes, updated, "
                                                "license, relevance, or score:JOB (best measured "
                                                "score on that job first).")] = "name",
        limit: Annotated[int, Query(ge=1, le=MAX_MODELS_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> dict[str, Any]:
        """Catalog models, with the filters of `almanac models list`."""
        from catalog.search import count_models, list_models

        f = model_filter(domains=domain, languages=language, min_params=min_params,
                         max_params=max_params, licenses=licenses, fits=fits, quant=quant,
                         search=search, source=source, sort=sort, limit=limit, offset=offset)
        with catalog.sessions()() as s:
            return {"items": list_models(s, f), "total": count_models(s, f),
                    "limit": limit, "offset": offset}

    @app.get("/models/{ref:path}", response_model=ModelRecord, tags=["catalog"], responses=ERRORS)
    def model(ref: Annotated[str, PathParam(max_length=MAX_ID)]) -> ModelRecord:
        """One model: lineage, evals, adapters, measured speed."""
        from catalog.detail import model_detail
        from catalog.lookup import get_model

        with catalog.sessions()() as s:
            return model_detail(s, get_model(s, ref))

    @app.get("/runs", response_model=list[RunRecord], tags=["catalog"], responses=ERRORS)
    def runs(job: Annotated[JobName | None, Query()] = None,
             limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50) -> list[RunRecord]:
        """Batch runs, newest first."""
        from catalog.runs import list_runs

        with catalog.sessions()() as s:
            return list_runs(s, job, limit)
