"""The Python API over cached predictions (`batch.cache.reader` holds it)."""

from batch.cache.reader import (
    CacheReader, JobInfo, Predictions, QueryError, ShardUnavailableError, UnknownJobError,
    columns, list_jobs, to_json,
)

__all__ = [
    "CacheReader", "JobInfo", "Predictions", "QueryError", "ShardUnavailableError",
    "UnknownJobError", "columns", "list_jobs", "to_json",
]
