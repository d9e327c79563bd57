"""Reading cached predictions with explicit paths (`batch.cache.reader` holds it).
Applications that want the home found for them use `almanac.api`."""

from batch.cache.errors import CacheUnavailableError, IndexUnavailableError
from batch.cache.reader import (
    CacheReader,
    JobInfo,
    PredictionRecord,
    Predictions,
    QueryError,
    ShardDamagedError,
    ShardUnavailableError,
    UnknownJobError,
    columns,
    list_jobs,
    to_json,
)

__all__ = [
    "CacheReader", "CacheUnavailableError", "IndexUnavailableError", "JobInfo",
    "PredictionRecord", "Predictions", "QueryError", "ShardDamagedError",
    "ShardUnavailableError", "UnknownJobError", "columns", "list_jobs", "to_json",
]
