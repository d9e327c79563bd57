"""The cached predictions' endpoints: jobs, candidates, pages, one input, batch lookups,
keys. A job with several candidates answers pages with every candidate's rows, and
lookups for the candidate chosen by `candidate`, `model` or `adapter` (400 without)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import Body, FastAPI, HTTPException, Query
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
from batch.query import CacheReader, Predictions, UnknownJobError
from schemas.errors import UsageError

CandidateQ = Annotated[Text | None, Query(description="A candidate's label (GET /jobs/{job}/candidates).")]
ModelQ = Annotated[Text | None, Query(description="The candidates running this model reference.")]
AdapterQ = Annotated[Text | None, Query(description="The candidates with this adapter reference.")]


@contextmanager
def _usage_is_400() -> Iterator[None]:
    """A candidate the job lacks, or a lookup that needs one: the asker's to fix."""
    try:
        yield
    except UsageError as exc:
        raise HTTPException(400, str(exc)) from None


def _one(p: Predictions, candidate: str | None, model: str | None,
         adapter: str | None) -> str | None:
    """The candidate a lookup reads (None: the job's only one)."""
    if candidate is None and model is None and adapter is None:
        return None
    labels = p.select(candidate, model, adapter)
    if not labels:
        raise HTTPException(400, f"job {p.job!r} has no candidate with that model and adapter")
    if len(labels) > 1:
        raise HTTPException(400, f"job {p.job!r}: {len(labels)} candidates match "
                                 f"({', '.join(labels)}): name one by its label")
    return labels[0]


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

    @app.get("/jobs/{job}/candidates", response_model=list[CandidateOut], tags=["predictions"],
             responses=ERRORS)
    def candidates(job: Job) -> list[dict[str, Any]]:
        """The job's current candidates (model, adapter), in order, with their rows."""
        return [c.to_json() for c in job_or_404(job).candidates()]

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
        with _usage_is_400():
            items, total = job_or_404(job).page(
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
        p = job_or_404(job)
        with _usage_is_400():
            found = p.get(input_id, _one(p, candidate, model, adapter))
        if found is None:
            raise HTTPException(404, f"job {job!r} has no prediction for input {input_id!r}")
        return found

    @app.post("/jobs/{job}/lookup", response_model=LookupResult, tags=["predictions"], responses=ERRORS)
    def lookup(job: Job, body: Annotated[Lookup, Body()], candidate: CandidateQ = None,
               model: ModelQ = None, adapter: AdapterQ = None) -> dict[str, Any]:
        """The latest predictions for up to 1,000 inputs; ids not found are listed under
        `missing`. A read, though a POST: that many ids do not fit in a URL."""
        p = job_or_404(job)
        with _usage_is_400():
            found = p.get_many(body.ids, _one(p, candidate, model, adapter))
        return {"found": found, "missing": [i for i in dict.fromkeys(body.ids) if i not in found]}

    @app.get("/keys/{key}", response_model=Prediction, tags=["predictions"], responses=ERRORS)
    def by_key(key: Annotated[str, PathParam(max_length=MAX_ID)],
               job: Annotated[JobName | None, Query()] = None) -> dict[str, Any]:
        """A prediction by its content address (the `key` column), in one job or any."""
        found = reader.by_key(key, job)
        if found is None:
            raise HTTPException(404, f"no prediction has key {key!r}")
        return found
