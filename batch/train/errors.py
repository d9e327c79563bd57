"""What stops a training, as the front door reports it (one line, the right exit code)."""

from __future__ import annotations

from schemas.errors import AlmanacError, ExitCode, UnavailableError, UsageError


class TrainError(UsageError, ValueError):
    """Training cannot go as asked: a bad option, data, base or name (exit 2). The
    message names the option or file."""


class TrainUnavailableError(UnavailableError):
    """Something the training needs is out of reach now: the disk is full, the base is
    neither cached nor downloadable (exit 1). Nothing is half-registered."""


class TrainLockedError(AlmanacError):
    """Another process is training the same name (exit 75, as a locked job)."""

    exit_code = ExitCode.LOCKED
    title = "locked"
