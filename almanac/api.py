"""The Python API over cached predictions, for applications:

    from almanac.api import Predictions, list_jobs

    with Predictions.open(None, "fruit-families") as p:   # None: $ALMANAC_HOME, else the default home
        p.get("plum")                    # the latest record of one input, or None
        p.get_many(["plum", "pear"])     # {input_id: record} for the ids that exist
        p.versions("plum")               # every cached version, oldest first
        p.by_key("3f2a…")                # a record by its content address
        p.search(contains="drupe", limit=20)
        p.candidates()                   # the models (and adapters) that made them
        p.get("plum", candidate="m+lora")   # a job with several candidates needs one chosen
        p.get("plum", model="m")         # (by label, model or adapter)
    list_jobs()                          # every job with cached predictions, with its size

A record is a `PredictionRecord`: a plain dict of the columns of
schemas/prediction.schema.json (`created_at` is a timezone-aware datetime;
`to_json` makes a record JSON-ready). The home is found as the CLI finds it.
"""

from __future__ import annotations

import os
from typing import Self

from almanac.paths import Home, resolve_home
from batch import query
from batch.query import (
    CandidateRequiredError,
    CandidateSummary,
    JobInfo,
    PredictionRecord,
    QueryError,
    ShardUnavailableError,
    UnknownCandidateError,
    UnknownJobError,
    columns,
    to_json,
)

__all__ = [
    "CandidateRequiredError", "CandidateSummary", "JobInfo", "PredictionRecord", "Predictions",
    "QueryError", "ShardUnavailableError", "UnknownCandidateError", "UnknownJobError",
    "columns", "list_jobs", "to_json",
]

HomeArg = str | os.PathLike[str] | None


def _home(home: HomeArg) -> Home:
    return Home(resolve_home(home))


class Predictions(query.Predictions):
    """One job's cached predictions (batch.query.Predictions), opened by home."""

    @classmethod
    def open(cls, home: HomeArg, job: str) -> Self:
        """`home` is an Almanac home (None: $ALMANAC_HOME, else the platform default).
        Raises UnknownJobError if the cache holds nothing for `job`."""
        return cls.at(_home(home).predictions, job)


def list_jobs(home: HomeArg = None) -> list[JobInfo]:
    """Every job with cached predictions in `home` (None: as `Predictions.open`)."""
    return query.list_jobs(_home(home).predictions)
