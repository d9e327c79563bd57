"""The cached predictions' endpoints: jobs, pages, one input, batch lookups, keys."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, FastAPI, HTTPException, Query
from fastapi import Path as PathParam

from almanac.server.limits import JOB_PATTERN, MAX_ID, MAX_OFFSET, MAX_PAGE, Job, Text
from almanac.server.payloads import ERRORS, JobOut, Lookup, LookupResult, Prediction, PredictionPage
from batch.query import CacheReader, Predictions, UnknownJobError


def add_prediction_routes(app: FastAPI, reader: CacheReader) -> None:
    def job_or_404(job: str) -> Predictions:
        try:
            return reader.job(job)
        except UnknownJobError as exc:
            raise HTTPException(404, str(exc)) from None

    @app.get("/jobs", response_model=list[JobOut], tags=["predictions"], responses=ERRORS)
    def jobs() -> list[dict[str, Any]]:
        """Every job with cached predictions."""
        return [info.to_json() for info in reader.jobs()]

    @app.get("/jobs/{job}", response_model=JobOut, tags=["predictions"], responses=ERRORS)
    def job(job: Job) -> dict[str, Any]:
        """One job's size: inputs, failures, shards, bytes, last write."""
        return job_or_404(job).info().to_json()

    @app.get("/jobs/{job}/predictions", response_model=PredictionPage, tags=["predictions"],
             responses=ERRORS)
    def predictions(
        job: Job,
        contains: Annotated[Text | None, Query(description="Case-insensitive substring of the output.")] = None,
        failed: Annotated[bool | None, Query(description="true: only failures; false: only successes.")] = None,
        model: Annotated[Text | None, Query(description="Only this model reference.")] = None,
        all_versions: Annotated[bool, Query(description="Every version, not only the latest.")] = False,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
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
