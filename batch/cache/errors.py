"""What can go wrong reading the cache, worded for the person who asked."""

from __future__ import annotations

import sqlite3
from pathlib import Path

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


class ShardDamagedError(ShardUnavailableError):
    """A shard's bytes are not those indexed (size, SHA-256, a page checksum, its rows):
    its rows are refused, never served."""

    @classmethod
    def of(cls, job: str, cause: Exception) -> ShardDamagedError:
        return cls(f"job {job!r}: a shard is damaged and its rows are refused ({cause}); run "
                   f"`almanac cache verify {job}`, then `almanac cache repair {job}` (its next "
                   "run generates what was lost)")


class IndexUnavailableError(CacheUnavailableError):
    """`predictions/index.db` cannot be used: not a database, unreadable, read-only for a
    writer, or busy beyond the wait."""

    @classmethod
    def of(cls, path: Path, exc: sqlite3.Error) -> CacheUnavailableError | DiskFullError:
        name = getattr(exc, "sqlite_errorname", "") or ""
        if name.startswith("SQLITE_FULL"):
            return DiskFullError(f"no space left on the device holding {path} ({exc}): free "
                                 "some space and run again; what was written before is kept")
        if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
            why = ("it is damaged (not a readable SQLite database): run `almanac cache repair` "
                   "to set it aside and rebuild it from the shards")
        elif name.startswith("SQLITE_READONLY"):
            why = "it is read-only here, and this command writes to it: check its permissions"
        elif name.startswith(("SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")):
            why = "it cannot be opened: check that it is a file this user may read and write"
        elif name.startswith("SQLITE_IOERR"):
            why = ("it cannot be read or written (an I/O error): check that it is a file this "
                   "user may read and write, on a healthy disk")
        elif name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            why = "another process holds it locked: try again"
        else:
            why = "it cannot be used"
        found = cls(f"prediction index {path}: {why} ({exc})")
        found.damaged = name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT"))
        return found

    damaged: bool = False  # the file itself is bad: repair can set it aside and rebuild


class DiskFullError(UnavailableError):
    """A write found no space left (ENOSPC): nothing half-written was kept or indexed, so
    the next run resumes where this one stopped."""

    title = "disk full"


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
