"""The cached predictions' endpoints: jobs, candidates, pages, one input, batch lookups,
keys. A job with several candidates answers pages with every candidate's rows, and
lookups for the candidate the reader chooses by `candidate`, `model` or `adapter` (400
without one it can choose). Errors leave as the rooms raise them (server/errors.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, FastAPI, Query
from fastapi import Path as PathParam

from almanac.server.limits import MAX_ID, MAX_OFFSET, MAX_PAGE, Job, JobName, Text
from almanac.server.payloads import (
    ERRORS,
    CandidateOut,
    JobOut,
    Lookup,
    LookupResult,
    Prediction,
    PredictionPage,
)
from batch.query import CacheReader
from schemas.errors import NotFoundError

CandidateQ = Annotated[Text | None, Query(description="A candidate's label (GET /jobs/{job}/candidates).")]
ModelQ = Annotated[Text | None, Query(description="The candidates running this model reference.")]
AdapterQ = Annotated[Text | None, Query(description="The candidates with this adapter reference.")]


def add_prediction_routes(app: FastAPI, reader: CacheReader) -> None:
    @app.get("/jobs", response_model=list[JobOut], tags=["predictions"], responses=ERRORS)
    def jobs() -> list[dict[str, Any]]:
        """Every job with cached predictions."""
        return [info.to_json() for info in reader.jobs()]

    @app.get("/jobs/{job}", response_model=JobOut, tags=["predictions"], responses=ERRORS)
    def job(job: Job) -> dict[str, Any]:
        """One job's size: inputs, failures, shards, bytes, last write."""
        return reader.job(job).info().to_json()

    @app.get("/jobs/{job}/candidates", response_model=list[CandidateOut], tags=["predictions"],
             responses=ERRORS)
    def candidates(job: Job) -> list[dict[str, Any]]:
        """The job's current candidates (model, adapter), in order, with their rows."""
        return [c.to_json() for c in reader.job(job).candidates()]

    @app.get("/jobs/{job}/predictions", response_model=PredictionPage, tags=["predictions"],
             responses=ERRORS)
    def predictions(
        job: Job,
        contains: Annotated[Text | None, Query(description="Case-insensitive substring of the output.")] = None,
        failed: Annotated[bool | None, Query(description="true: only failures; false: only successes.")] = None,
        candidate: CandidateQ = None,
        model: ModelQ = None,
        adapter: AdapterQ = None,
        all_versions: Annotated[bool, Query(description="Every version, not only the latest.")] = False,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> dict[str, Any]:
        """A page of a job's predictions, in input id order (then candidate order)."""
        items, total = reader.job(job).page(
            contains=contains, failed=failed, candidate=candidate, model=model,
            adapter=adapter, all_versions=all_versions, limit=limit, offset=offset)
        return {"items": items, "total": total, "limit": limit, "offset": offset}

    @app.get("/jobs/{job}/predictions/{input_id:path}", response_model=Prediction,
             tags=["predictions"], responses=ERRORS)
    def prediction(job: Job, input_id: Annotated[str, PathParam(max_length=MAX_ID)],
                   candidate: CandidateQ = None, model: ModelQ = None,
                   adapter: AdapterQ = None) -> dict[str, Any]:
        """The latest prediction for one input (of the candidate chosen, in a job with
        several)."""
        found = reader.job(job).get(input_id, candidate, model, adapter)
        if found is None:
            raise NotFoundError(f"job {job!r} has no prediction for input {input_id!r}")
        return found

    @app.post("/jobs/{job}/lookup", response_model=LookupResult, tags=["predictions"], responses=ERRORS)
    def lookup(job: Job, body: Annotated[Lookup, Body()], candidate: CandidateQ = None,
               model: ModelQ = None, adapter: AdapterQ = None) -> dict[str, Any]:
        """The latest predictions for up to 1,000 inputs; ids not found are listed under
        `missing`. A read, though a POST: that many ids do not fit in a URL."""
        found = reader.job(job).get_many(body.ids, candidate, model, adapter)
        return {"found": found, "missing": [i for i in dict.fromkeys(body.ids) if i not in found]}

    @app.get("/keys/{key}", response_model=Prediction, tags=["predictions"], responses=ERRORS)
    def by_key(key: Annotated[str, PathParam(max_length=MAX_ID)],
               job: Annotated[JobName | None, Query()] = None) -> dict[str, Any]:
        """A prediction by its content address (the `key` column), in one job or any; or
        by its beginning (8 characters or more) if no other key begins so (400 if several
        do)."""
        found = reader.by_key(key, job)
        if found is None:
            raise NotFoundError(f"no prediction has key {key!r}")
        return found
