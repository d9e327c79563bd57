"""What can go wrong reading the cache, worded for the person who asked."""

from __future__ import annotations

from schemas.errors import AlmanacError


class QueryError(AlmanacError):
    """A problem reading the cache; the message says what to do."""


class UnknownJobError(QueryError, LookupError):
    def __init__(self, job: str) -> None:
        super().__init__(f"no cached predictions for job {job!r}")
        self.job = job


class ShardUnavailableError(QueryError):
    """The index points at a shard that is missing or does not hold the expected row,
    even after re-reading the index once (a concurrent gc is retried transparently)."""

    @classmethod
    def of(cls, job: str, cause: Exception) -> ShardUnavailableError:
        return cls(f"job {job!r}: the index points at a shard that is missing or damaged "
                   f"({cause}); run `almanac cache verify {job}`")
