"""What can go wrong reading the cache, worded for the person who asked."""

from __future__ import annotations

from schemas.errors import AlmanacError, NotFoundError, UnavailableError, UsageError


class QueryError(AlmanacError):
    """A problem reading the cache; the message says what to do."""


class UnknownJobError(QueryError, NotFoundError, LookupError):
    def __init__(self, job: str) -> None:
        super().__init__(f"no cached predictions for job {job!r}")
        self.job = job


class CacheUnavailableError(QueryError, UnavailableError):
    """The cache cannot answer now without risking a wrong answer: the HTTP server says
    503, the CLI exits 1; the message says what to run."""


class ShardUnavailableError(CacheUnavailableError):
    """The index points at a shard that is missing or does not hold the expected row,
    even after re-reading the index once (a concurrent gc is retried transparently)."""

    @classmethod
    def of(cls, job: str, cause: Exception) -> ShardUnavailableError:
        return cls(f"job {job!r}: the index points at a shard that is missing or damaged "
                   f"({cause}); run `almanac cache verify {job}`, then `almanac cache repair "
                   f"{job}` (its next run generates what was lost)")


class JobDirectoryError(CacheUnavailableError):
    """Something other than a directory (a file) stands where a job's shards belong:
    refused, never guessed around; the message says what to do."""

    def __init__(self, job: str, directory: object) -> None:
        super().__init__(f"job {job!r}: {directory} is not a directory, so its shards cannot "
                         f"be read; move it aside, then run `almanac cache repair {job}` (the "
                         "job's next run generates what was lost)")
        self.job = job


class ShardDamagedError(ShardUnavailableError):
    """A shard's bytes are not those indexed (size, SHA-256, a page checksum, its rows):
    its rows are refused, never served."""

    @classmethod
    def of(cls, job: str, cause: Exception) -> ShardDamagedError:
        return cls(f"job {job!r}: a shard is damaged and its rows are refused ({cause}); run "
                   f"`almanac cache verify {job}`, then `almanac cache repair {job}` (its next "
                   "run generates what was lost)")


class RowMismatchError(ShardUnavailableError):
    """The index points a record at a row that holds another one (another job, input,
    candidate or key, or a success the index calls a failure): the index is damaged, and
    the row is refused rather than served under the record's name."""

    @classmethod
    def of(cls, job: str, shard: str, row: int, wanted: str, found: str) -> RowMismatchError:
        return cls(f"job {job!r}: the index is damaged: it points {wanted} at row {row} of "
                   f"{shard}, which holds {found}; the row is refused. Run `almanac cache "
                   f"verify {job}`, then `almanac cache repair {job}`")


class SideStoreError(UnavailableError):
    """A SQLite side store (batch.cache.sidestore) cannot be used: not a database,
    unreadable, read-only for a writer, busy beyond the wait, or in a format this
    version cannot read. Exit 1 (HTTP 503); the message names the file and what to do."""

    damaged: bool = False  # the file itself is bad: it can be set aside and rebuilt


class IndexUnavailableError(CacheUnavailableError, SideStoreError):
    """`predictions/index.db` cannot be used."""


class DiskFullError(UnavailableError):
    """A write found no space left (ENOSPC): nothing half-written was kept or indexed, so
    the next run resumes where this one stopped."""

    title = "disk full"


class AmbiguousKeyError(UsageError, LookupError):
    """The beginning of a key that more than one key has: which? Exit 2 (HTTP 400)."""

    def __init__(self, prefix: str, keys: list[str], shown: int = 10) -> None:
        more = ", and more" if len(keys) > shown else ""
        super().__init__(f"key {prefix!r} is the beginning of {'more than ' if more else ''}"
                         f"{min(len(keys), shown)} keys: {', '.join(keys[:shown])}{more}; "
                         "give more of it")
        self.prefix, self.keys = prefix, keys


class CandidateRequiredError(UsageError):
    """A single lookup that more than one current candidate answers: which one?"""

    def __init__(self, job: str, labels: list[str], matching: str | None = None) -> None:
        running = f" with {matching}" if matching else ""
        super().__init__(f"job {job!r} has {len(labels)} candidates ({', '.join(labels)})"
                         f"{running}: choose one by its candidate label"
                         + ("" if matching else ", model or adapter"))
        self.job, self.labels = job, labels


class UnknownCandidateError(UsageError, LookupError):
    """A candidate the job does not have: a label, or a model or adapter none runs."""

    def __init__(self, job: str, label: str, labels: list[str], *,
                 message: str | None = None) -> None:
        super().__init__(message or f"candidate: job {job!r} has no candidate {label!r} "
                                    f"(its candidates: {', '.join(labels) or 'none'})")
        self.job, self.label, self.labels = job, label, labels

    @classmethod
    def matching(cls, job: str, asked: str, labels: list[str]) -> UnknownCandidateError:
        return cls(job, asked, labels, message=f"job {job!r} has no candidate with {asked} "
                                               f"(its candidates: {', '.join(labels) or 'none'})")
