"""The one door for reading cached predictions: the CLI, the HTTP server, the TUI and
the Python API for applications (almanac.api, which finds the home) import this
module, never the cache's own (an import-linter contract holds them to it).

    from batch.query import Predictions

    with Predictions.at(home / "predictions", "fruit-families") as p:
        p.get("plum")                    # the latest record of one input, or None
        p.get_many(["plum", "pear"])     # {input_id: record} for the ids that exist
        p.versions("plum")               # every cached version, oldest first
        p.by_key("3f2a…")                # a record by its content address, or its
                                         # beginning (8+ characters, one key's only)
        p.search(contains="drupe", limit=20)
        p.candidates()                   # the models (and adapters) that made them
        p.get("plum", candidate="tiny+lora-a")   # one candidate's, in a job with several
        p.get("plum", model="tiny")      # or the one candidate running a model (adapter=…)

A record is a `PredictionRecord`, a plain dict of the prediction columns
(schemas/prediction.schema.json; `created_at` is a timezone-aware datetime,
`to_json` makes it a string). A server keeps one `CacheReader` and asks
`reader.job(name)` per request; which candidate a lookup reads is the reader's
choice (batch.cache.choice), with one usage error when it cannot choose.
"""

from __future__ import annotations

from pathlib import Path

from batch.cache.errors import (
    AmbiguousKeyError,
    CacheUnavailableError,
    CandidateRequiredError,
    IndexUnavailableError,
    QueryError,
    ShardDamagedError,
    ShardUnavailableError,
    UnknownCandidateError,
    UnknownJobError,
)
from batch.cache.index_rows import MIN_PREFIX, CandidateSummary, JobInfo
from batch.cache.reader import CacheReader, Predictions
from batch.cache.schema import PredictionRecord, arrow_schema, columns
from schemas.jsonable import jsonable as to_json

__all__ = [
    "MIN_PREFIX", "AmbiguousKeyError", "CacheReader", "CacheUnavailableError",
    "CandidateRequiredError", "CandidateSummary",
    "IndexUnavailableError", "JobInfo", "PredictionRecord", "Predictions", "QueryError",
    "ShardDamagedError", "ShardUnavailableError", "UnknownCandidateError", "UnknownJobError",
    "arrow_schema", "columns", "list_jobs", "to_json",
]


def list_jobs(predictions_root: Path) -> list[JobInfo]:
    """Every job with cached predictions, with its size."""
    with CacheReader(predictions_root) as reader:
        return reader.jobs()
