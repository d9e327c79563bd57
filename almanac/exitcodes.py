"""Exit codes, as DESIGN.md fixes them."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2  # usage error or invalid job spec
    FAILED_ROWS = 3  # the run finished but some rows failed
    LOCKED = 75  # EX_TEMPFAIL: another run holds the job's lock
