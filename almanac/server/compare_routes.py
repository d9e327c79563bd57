"""A job's candidates compared: quality with its interval, speed and cost per candidate."""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Query

from almanac.server.catalog_routes import ServedCatalog
from almanac.server.limits import Job
from almanac.server.payloads import ERRORS
from batch.query import CacheReader
from batch.score.compare import MAX_USD_PER_HOUR, CandidateComparison, compare_job


def add_compare_routes(app: FastAPI, reader: CacheReader, catalog: ServedCatalog) -> None:
    @app.get("/jobs/{job}/compare", response_model=list[CandidateComparison], tags=["predictions"],
             responses=ERRORS)
    def compare(
        job: Job,
        usd_per_hour: Annotated[float | None, Query(
            gt=0, le=MAX_USD_PER_HOUR, allow_inf_nan=False,
            description="The hardware's price per hour, over what the runs recorded.")] = None,
    ) -> list[CandidateComparison]:
        """The job's candidates, best score first: rows, failures, mean score with a 95%
        bootstrap interval (`n` rows), output tokens/s, engine start and engine-seconds,
        parameters, cost per 1,000 rows (null when no price is known) and whether the
        candidate is on the quality/cost Pareto front (`pareto`)."""
        return compare_job(catalog.sessions(), reader.job(job), usd_per_hour)
