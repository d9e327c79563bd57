"""The error root every room raises from, and the exit codes DESIGN.md fixes.

It lives at the bottom of the room graph so that every room can derive from
it without importing the front door; the CLI maps an error to its exit code
by the `exit_code` attribute, and the HTTP server by `http_status`. Every room's
errors derive from one of these, so the front door needs no other vocabulary:

    AlmanacError       exit 1   HTTP 500 (a bug, if it reaches the server)
    UsageError         exit 2   HTTP 400   the asker's input is wrong
    NotFoundError      exit 1   HTTP 404   what was asked for is not there
    UnavailableError   exit 1   HTTP 503   a store cannot be used now
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2  # usage error or invalid job spec
    FAILED_ROWS = 3  # the run finished but some rows failed
    LOCKED = 75  # EX_TEMPFAIL: another run holds the job's lock
    INTERRUPTED = 130  # SIGINT, after writing what was finished
    TERMINATED = 143  # SIGTERM, after writing what was finished


class AlmanacError(Exception):
    """A problem the user can act on; the message says what.

    Subclasses set `exit_code` (what the CLI exits with) and `title` (a short
    name for the kind of problem, for the TUI and for JSON error bodies)."""

    exit_code: ExitCode = ExitCode.ERROR
    title: str = "error"
    http_status: int = 500


class UsageError(AlmanacError):
    """Invalid input from the user: a spec, an option, a filter. Exit 2 (HTTP 400)."""

    exit_code = ExitCode.USAGE
    title = "invalid"
    http_status = 400


class NotFoundError(AlmanacError):
    """What was asked for is not there: a job with nothing cached, a model the catalog
    lacks, an input without a prediction. Exit 1 (HTTP 404)."""

    title = "not found"
    http_status = 404


class UnavailableError(AlmanacError):
    """A store Almanac needs cannot be used now: damaged, unreadable, read-only where it
    must write, locked past waiting. Exit 1 (HTTP 503); the message says which and what
    to do."""

    title = "unavailable"
    http_status = 503
